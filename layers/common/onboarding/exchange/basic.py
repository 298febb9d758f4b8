"""Basic authentication as RFC 7617 says (imports requests: load it lazily).

requests' ``HTTPBasicAuth`` (what exchangelib uses) encodes the user-id and the password in Latin-1: a password
with ``€``, ``ł``, ``ş`` or any non-Latin script raises ``UnicodeEncodeError`` before anything is sent, so the
right password can never work. RFC 7617 section 2.1: the only charset a server may announce in its challenge
(``Basic realm="...", charset="UTF-8"``) is UTF-8, and then the client normalises the user-id
(UsernameCasePreserved profile) and the password (OpaqueString profile, RFC 8265 sections 3.3 and 4.2: both end
in Unicode Normalization Form C) before encoding them; without the parameter the encoding is left open, and
today's browsers send UTF-8. So: UTF-8 always, normalised when the server announced the charset.

Encoding never fails: text that is not valid Unicode (a lone surrogate) is sent as its surrogate bytes, which
the server refuses like any wrong password. Like requests' Basic auth, the header goes with every request: a
refused password is answered 401, which is final (``busy.BudgetedRetry``), never sent again.
"""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Iterable

import requests

from .auth import Challenge


def announces_utf8(challenges: Iterable[Challenge]) -> bool:
    """The server's Basic challenge carries ``charset="UTF-8"`` (RFC 7617 section 2.1; case-insensitive)."""
    return any(c.scheme == "basic" and c.params.get("charset", "").lower() == "utf-8" for c in challenges)


def _username_case_preserved(text: str) -> str:
    """RFC 8265 section 3.3: fullwidth and halfwidth characters mapped to their decompositions, then NFC."""
    mapped = []
    for char in text:
        decomposition = unicodedata.decomposition(char)
        if decomposition.startswith(("<wide>", "<narrow>")):
            mapped.append("".join(chr(int(code, 16)) for code in decomposition.split()[1:]))
        else:
            mapped.append(char)
    return unicodedata.normalize("NFC", "".join(mapped))


def _opaque_string(text: str) -> str:
    """RFC 8265 section 4.2: non-ASCII spaces mapped to SPACE, then NFC."""
    spaced = "".join(" " if unicodedata.category(c) == "Zs" else c for c in text)
    return unicodedata.normalize("NFC", spaced)


def basic_credentials(username: str, password: str, *, utf8_announced: bool) -> str:
    """The ``Authorization`` value: ``Basic`` and base64 of user-id ":" password in UTF-8 (section 2.1)."""
    if utf8_announced:
        username, password = _username_case_preserved(username), _opaque_string(password)
    raw = f"{username}:{password}".encode("utf-8", errors="surrogatepass")
    return "Basic " + base64.b64encode(raw).decode("ascii")


class Rfc7617BasicAuth(requests.auth.AuthBase):
    """A requests auth sending Basic credentials in UTF-8 (see the module docstring)."""

    def __init__(self, username: str, password: str, *, utf8_announced: bool) -> None:
        self.username = username
        self.password = password
        self.utf8_announced = utf8_announced

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = basic_credentials(
            self.username, self.password, utf8_announced=self.utf8_announced
        )
        return request


def install(session: requests.Session, *, utf8_announced: bool) -> requests.Session:
    """Replace exchangelib's Latin-1 ``HTTPBasicAuth`` on ``session`` by ``Rfc7617BasicAuth`` (same login)."""
    auth = session.auth
    if (
        type(auth) is requests.auth.HTTPBasicAuth
        and isinstance(auth.username, str)
        and isinstance(auth.password, str)
    ):
        session.auth = Rfc7617BasicAuth(auth.username, auth.password, utf8_announced=utf8_announced)
    return session

"""NTLM over HTTP in two requests instead of three (imports requests and pyspnego: load it lazily).

requests_ntlm (what exchangelib uses) sends every first request without credentials, waits for the 401, then
runs the NTLM handshake: three requests. When we already know the endpoint speaks NTLM (our unauthenticated
probe saw its challenge, or discovery did), the NEGOTIATE message can go with the first request
("preemptive" NTLM, as Windows' own HTTP stack does on a known intranet server): 401 with the CHALLENGE, then
the AUTHENTICATE with the request body, on the same connection. IIS authenticates the connection, so later
requests on it need no header; a request that lands on a fresh connection gets a 401 and the full handshake.

Channel binding (Extended Protection, on by default since Exchange 2019 CU14) is kept: the AUTHENTICATE
carries the ``tls-server-end-point`` hash of the certificate on the connection that received the CHALLENGE.
The scheme name follows the server: ``NTLM``, or ``Negotiate`` carrying raw NTLM where IIS offers only that.
Like requests_ntlm, the password is sent once per handshake; a refused AUTHENTICATE is final (the 401 is
returned), so a wrong password is never retried.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

import requests
import spnego
from requests.hooks import default_hooks
from requests_ntlm.requests_ntlm import HttpNtlmAuth

from .auth import parse_challenges


def _challenge_token(response: requests.Response, scheme: str) -> str | None:
    raw = response.raw.headers.getlist("WWW-Authenticate") if response.raw is not None else []
    for challenge in parse_challenges(raw):
        if challenge.scheme == scheme.lower() and challenge.token:
            return challenge.token
    return None


def _offers(response: requests.Response, scheme: str) -> bool:
    raw = response.raw.headers.getlist("WWW-Authenticate") if response.raw is not None else []
    return any(c.scheme == scheme.lower() for c in parse_challenges(raw))


class PreemptiveNtlmAuth(requests.auth.AuthBase):
    """A requests auth: NTLM (or raw NTLM inside Negotiate) whose first request already carries NEGOTIATE."""

    def __init__(self, username: str, password: str, *, scheme: str = "NTLM") -> None:
        self.username = username
        self.password = password
        self.scheme = scheme
        self._authenticated_once = False
        self._cert_source = HttpNtlmAuth(username, password)  # only for its certificate-hash helper

    def _client(self, url: str) -> Any:
        return spnego.client(
            self.username,
            self.password,
            hostname=urlsplit(url).hostname or "",
            service="http",
            protocol="ntlm",
            options=spnego.NegotiateOptions.use_ntlm,
        )

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Connection"] = "Keep-Alive"
        client = None
        if not self._authenticated_once:
            client = self._client(request.url or "")
            request.headers["Authorization"] = (
                f"{self.scheme} {base64.b64encode(client.step() or b'').decode()}"
            )
        request.register_hook(
            "response", lambda response, **kwargs: self._on_response(response, client, kwargs)
        )
        return request

    def _send(self, response: requests.Response, header: str, kwargs: dict[str, Any]) -> requests.Response:
        response.content  # noqa: B018 - read the body so the connection can carry the next leg
        response.raw.release_conn()
        request = response.request.copy()
        request.hooks = default_hooks()  # this leg is handled here, not by the hook again
        request.headers["Authorization"] = header
        if response.headers.get("Set-Cookie"):
            request.headers["Cookie"] = response.headers["Set-Cookie"]
        sent: requests.Response = response.connection.send(request, **dict(kwargs, stream=False))
        sent.history.append(response)
        return sent

    def _on_response(
        self, response: requests.Response, client: Any, kwargs: dict[str, Any]
    ) -> requests.Response:
        if response.status_code != 401:
            if client is not None:
                self._authenticated_once = True
            return response
        token = _challenge_token(response, self.scheme) if client is not None else None
        if token is None:
            # A fresh connection (the authenticated one was closed), or the server wants the other scheme name
            # (IIS with NTLM only inside Negotiate): the whole handshake, if the server offers it.
            scheme = next((s for s in (self.scheme, *_OTHER[self.scheme]) if _offers(response, s)), None)
            if scheme is None:
                return response  # the server does not take NTLM here: the 401 is the answer
            self.scheme = scheme
            client = self._client(response.url)
            negotiate = base64.b64encode(client.step() or b"").decode()
            response = self._send(response, f"{self.scheme} {negotiate}", kwargs)
            if response.status_code != 401:
                return response
            token = _challenge_token(response, self.scheme)
            if token is None:
                return response
        _note_domain(token)
        certificate_hash = self._cert_source._get_server_cert(response)
        bindings = (
            spnego.channel_bindings.GssChannelBindings(
                application_data=b"tls-server-end-point:" + certificate_hash
            )
            if certificate_hash
            else None
        )
        authenticate = client.step(base64.b64decode(token), channel_bindings=bindings)
        final = self._send(
            response, f"{self.scheme} {base64.b64encode(authenticate or b'').decode()}", kwargs
        )
        if final.status_code != 401:
            self._authenticated_once = True
        return final


_OTHER = {"NTLM": ("Negotiate",), "Negotiate": ("NTLM",)}


def _note_domain(token: str) -> None:
    """Keep the NetBIOS domain the CHALLENGE names (MsvAvNbDomainName): the login form to suggest when an
    email address was refused as the login."""
    from .guard import current

    try:
        domain = netbios_domain(base64.b64decode(token))
    except ValueError:  # not base64: spnego's step will say so
        return
    if domain and domain.upper() != "WORKSTATION":
        current().observation.ntlm_domain = domain


_MSV_AV_EOL, _MSV_AV_NB_DOMAIN_NAME = 0, 2


def netbios_domain(challenge: bytes) -> str | None:
    """MsvAvNbDomainName from an NTLM CHALLENGE_MESSAGE's TargetInfo (MS-NLMP 2.2.1.2 and 2.2.2.1: the
    TargetInfoFields length and offset at bytes 40-47, then AV_PAIRs of AvId, AvLen and a UTF-16LE value)."""
    if len(challenge) < 48 or challenge[:8] != b"NTLMSSP\x00" or challenge[8:12] != b"\x02\x00\x00\x00":
        return None
    length = int.from_bytes(challenge[40:42], "little")
    offset = int.from_bytes(challenge[44:48], "little")
    info = challenge[offset : offset + length]
    position = 0
    while position + 4 <= len(info):
        av_id = int.from_bytes(info[position : position + 2], "little")
        av_len = int.from_bytes(info[position + 2 : position + 4], "little")
        value = info[position + 4 : position + 4 + av_len]
        if av_id == _MSV_AV_EOL or len(value) < av_len:
            return None
        if av_id == _MSV_AV_NB_DOMAIN_NAME:
            return value.decode("utf-16-le", errors="replace") or None
        position += 4 + av_len
    return None


def install(session: requests.Session, *, offered: tuple[str, ...] = ()) -> requests.Session:
    """Replace exchangelib's requests_ntlm auth on ``session`` by ``PreemptiveNtlmAuth`` (same login)."""
    auth = session.auth
    if isinstance(auth, HttpNtlmAuth) and auth.username and auth.password:
        scheme = "Negotiate" if "negotiate" in offered and "ntlm" not in offered else "NTLM"
        session.auth = PreemptiveNtlmAuth(auth.username, auth.password, scheme=scheme)
    return session

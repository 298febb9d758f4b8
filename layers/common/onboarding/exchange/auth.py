"""``WWW-Authenticate`` as IIS sends it, and the scheme we answer with.

RFC 9110 section 11.6.1: a header holds one or more challenges separated by commas; a challenge is a scheme
followed either by a token68 (``NTLM TlRMTVNTUAAC...==``) or by comma-separated ``name=value`` parameters
whose values may be quoted strings containing commas (Exchange's hybrid modern-auth Bearer challenge:
``trusted_issuers="...@*,...@*"``). Servers may also send several ``WWW-Authenticate`` headers.

IIS with NTLM offered only as a provider of Negotiate sends just ``Negotiate``: a raw NTLM token inside the
Negotiate scheme is accepted (MS-SPNG), which is what requests_ntlm sends for ``Negotiate`` challenges.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

NTLM, BASIC, DIGEST = "NTLM", "basic", "digest"  # exchangelib's auth type names

_HTTP_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # noqa: S105 (RFC 9110 token, not a secret)
_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*")
_SCHEME_START = re.compile(rf"({_HTTP_TOKEN})(?:\s+(.*))?$", re.DOTALL)
_PARAM = re.compile(rf"({_HTTP_TOKEN})\s*=\s*(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower-case
    token: str | None = None  # token68 (an NTLM challenge message, base64)
    params: dict[str, str] = field(default_factory=dict)


def _split_commas(value: str) -> list[str]:
    """Split at commas outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif quoted and char == "\\":
            current.append(char)
            escaped = True
        elif char == '"':
            current.append(char)
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """Every challenge in the given ``WWW-Authenticate`` header values, in order."""
    challenges: list[tuple[str, str | None, dict[str, str]]] = []
    for header in headers:
        for element in _split_commas(header):
            param = _PARAM.match(element)
            start = _SCHEME_START.match(element)
            if param and challenges and not (start and start.group(2) and "=" not in start.group(1)):
                # name=value: a parameter of the current challenge
                challenges[-1][2][param.group(1).lower()] = _unquote(param.group(2))
                continue
            if start is None:
                continue  # not a token: ignore what cannot be parsed
            scheme, rest = start.group(1).lower(), (start.group(2) or "").strip()
            token: str | None = None
            params: dict[str, str] = {}
            if rest:
                first = _PARAM.match(rest)
                if _TOKEN68.fullmatch(rest) and not (first and first.group(2).startswith('"')):
                    token = rest
                elif first:
                    params[first.group(1).lower()] = _unquote(first.group(2))
            challenges.append((scheme, token, params))
    return [Challenge(s, t, p) for s, t, p in challenges]


def schemes(challenges: Iterable[Challenge]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(c.scheme for c in challenges))


def choose_auth_type(offered: Iterable[str]) -> str | None:
    """exchangelib's auth type for the schemes offered: NTLM (also inside Negotiate), then Basic, Digest."""
    names = set(offered)
    if names & {"ntlm", "negotiate"}:
        return NTLM
    if "basic" in names:
        return BASIC
    if "digest" in names:
        return DIGEST
    return None


def is_bearer_only(offered: Iterable[str]) -> bool:
    names = set(offered)
    return bool(names) and names <= {"bearer"}

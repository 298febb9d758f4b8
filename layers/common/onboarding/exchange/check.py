"""The light check of a connected mailbox: one sign-in with the settings onboarding recorded, no discovery.

Two EWS operations on one connection, at most three HTTP requests with NTLM (its handshake included) and
two with Basic:

1. ``GetPasswordExpirationDate`` (MS-OXWSPED; Exchange 2010 SP2 and later): the date the account's
   password expires, absent when it never does. A server without the operation answers an error
   (``ErrorInvalidRequest``, ``ErrorInvalidOperation``, a schema-validation fault): the date is then unknown,
   quietly. Its answer to the credentials (a 401, a 456, a 403) is the check's verdict.
2. ``GetFolder`` of the inbox (``TotalCount``): the mailbox can still be opened by this login.

With NTLM the first request carries the NEGOTIATE (``ntlm.PreemptiveNtlmAuth``), the second the
AUTHENTICATE with the first operation, and IIS keeps the connection authenticated for the third. A refused
AUTHENTICATE is final: the password is sent once per check, never retried. Every connection goes through
the SSRF guard (``guard.GuardedHTTPAdapter``) within the time budget; certificate checks stay on.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from .diagnoses import Diagnosis, ExchangeFailure, without_secret
from .models import ExchangeContext
from .runtime import BASIC, DIGEST, NTLM, host_of, policy_for

if TYPE_CHECKING:
    import requests

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
# A server that does not know the operation (Exchange before 2010 SP2) answers one of these.
NOT_OFFERED = frozenset(
    {
        "ErrorInvalidRequest",
        "ErrorInvalidOperation",
        "ErrorSchemaValidation",
        "ErrorInvalidServerVersion",
        "ErrorInvalidSchemaVersionForMailboxVersion",
        "ErrorUnsupportedOperation",
        "ErrorNotSupported",
    }
)
BUSY = frozenset(
    {
        "ErrorServerBusy",
        "ErrorTimeoutExpired",
        "ErrorInternalServerTransientError",
        "ErrorMailboxMoveInProgress",
    }
)
NO_RIGHTS = frozenset({"ErrorAccessDenied", "ErrorImpersonateUserDenied", "ErrorItemNotFound"})
NO_MAILBOX = frozenset({"ErrorNonExistentMailbox", "ErrorMailRecipientNotFound"})
LOCKED = frozenset({"ErrorAccountDisabled"})


@dataclass(frozen=True)
class MailboxCheck:
    password_expires_at: datetime | None  # None: never, or the server does not say
    expiry_offered: bool  # the server answered GetPasswordExpirationDate
    inbox_item_count: int
    requests: int  # HTTP requests sent (the NTLM handshake's included)


def _envelope(version: str, body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP}" xmlns:m="{M}" xmlns:t="{T}">'
        f'<soap:Header><t:RequestServerVersion Version="{version}"/></soap:Header>'
        f"<soap:Body>{body}</soap:Body></soap:Envelope>"
    ).encode()


def password_expiration_request(email: str) -> bytes:
    # RequestServerVersion Exchange2010_SP2: the operation's schema version (MS-OXWSPED 3.1.4.1).
    return _envelope(
        "Exchange2010_SP2",
        f"<m:GetPasswordExpirationDate><m:MailboxSmtpAddress>{escape(email)}</m:MailboxSmtpAddress>"
        "</m:GetPasswordExpirationDate>",
    )


def inbox_request(email: str) -> bytes:
    return _envelope(
        "Exchange2010_SP2",
        "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties>"
        '<t:FieldURI FieldURI="folder:TotalCount"/></t:AdditionalProperties></m:FolderShape>'
        f'<m:FolderIds><t:DistinguishedFolderId Id="inbox"><t:Mailbox><t:EmailAddress>{escape(email)}'
        "</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId></m:FolderIds></m:GetFolder>",
    )


@dataclass(frozen=True)
class SoapAnswer:
    response_class: str | None  # Success | Warning | Error (None: a SOAP fault or no message)
    code: str | None  # ResponseCode, or the fault's code
    root: ET.Element | None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_answer(content: bytes) -> SoapAnswer:
    """The first response message's class and code (a ``...ResponseMessage`` or a bare ``...Response``), or a
    SOAP fault's code (``ErrorSchemaValidation``, ``ErrorServerBusy``)."""
    try:
        root = ET.fromstring(content)  # noqa: S314 - see the import
    except ET.ParseError:
        return SoapAnswer(None, None, None)
    response_class = code = None
    for element in root.iter():
        name = _local(element.tag)
        if response_class is None and element.get("ResponseClass"):
            response_class = element.get("ResponseClass")
        if name == "ResponseCode" and code is None:
            code = (element.text or "").strip()
        if name == "faultcode" and code is None:
            code = (element.text or "").strip().rpartition(":")[2]
    return SoapAnswer(response_class, code, root)


def _find_text(root: ET.Element | None, name: str) -> str | None:
    if root is None:
        return None
    for element in root.iter():
        if _local(element.tag) == name:
            return (element.text or "").strip() or None
    return None


def _expiry(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # EWS dates without a zone are UTC


def check(email: str, password: str, context: ExchangeContext) -> MailboxCheck:
    """Sign in once with the recorded ``ews_url``, ``auth_type`` and login; raises ``ExchangeFailure``."""
    from .guard import GuardedHTTPAdapter, guarded, is_microsoft_online

    endpoint = context.ews_url or ""
    host = host_of(endpoint)
    if not endpoint.lower().startswith("https://") or not host:
        raise ExchangeFailure(Diagnosis.BLOCKED_ADDRESS, "only https:// EWS URLs are accepted")
    if is_microsoft_online(host):
        raise ExchangeFailure(Diagnosis.MODERN_AUTH_REQUIRED, f"{host} is Exchange Online")
    deadline = time.monotonic() + context.config.verify_timeout
    connections = GuardedHTTPAdapter(max_retries=0)
    try:
        with guarded(policy_for(context.config), deadline=deadline, connections=connections) as obs:
            try:
                return _check(email.strip(), password, endpoint, context, deadline, obs)
            except ExchangeFailure as failure:
                raise without_secret(failure, password) from None
            except Exception as error:  # transport errors, the guard's refusals
                raise without_secret(_failure_of(error, obs), password) from None
    finally:
        connections.close()


def _failure_of(error: BaseException, obs: Any) -> ExchangeFailure:
    from .guard import BlockedAddressError, ModernAuthHostError
    from .probing import transport_code

    kind = type(error).__name__
    if isinstance(error, BlockedAddressError):
        return ExchangeFailure(Diagnosis.BLOCKED_ADDRESS, f"check: refused ({kind})")
    if isinstance(error, ModernAuthHostError):
        return ExchangeFailure(Diagnosis.MODERN_AUTH_REQUIRED, f"check: {kind}")
    return ExchangeFailure(transport_code(obs) or Diagnosis.UNREACHABLE, f"check: {kind}")


def _session(login: str, password: str, auth_type: str) -> requests.Session:
    import requests

    from .basic import Rfc7617BasicAuth
    from .guard import guarded_session
    from .ntlm import PreemptiveNtlmAuth

    session = guarded_session()
    if auth_type == NTLM:
        session.auth = PreemptiveNtlmAuth(login, password)
    elif auth_type == BASIC:
        session.auth = Rfc7617BasicAuth(login, password, utf8_announced=False)
    elif auth_type == DIGEST:
        session.auth = requests.auth.HTTPDigestAuth(login, password)
    else:
        raise ExchangeFailure(Diagnosis.UNREACHABLE, f"check: no way to sign in with {auth_type!r}")
    return session


def _check(
    email: str, password: str, endpoint: str, context: ExchangeContext, deadline: float, obs: Any
) -> MailboxCheck:
    session = _session(context.login(email), password, context.auth_type or NTLM)
    try:
        before = len(obs.statuses)
        answer = _post(session, endpoint, password_expiration_request(email), deadline)
        offered = answer.response_class == "Success"
        expires_at = _expiry(_find_text(answer.root, "PasswordExpirationDate")) if offered else None
        if not offered and answer.code not in NOT_OFFERED:
            _raise_for(answer, "GetPasswordExpirationDate")
        inbox = _post(session, endpoint, inbox_request(email), deadline)
        if inbox.response_class != "Success":
            _raise_for(inbox, "GetFolder")
        try:
            count = int(_find_text(inbox.root, "TotalCount") or "0")
        except ValueError:
            count = 0
        return MailboxCheck(
            password_expires_at=expires_at,
            expiry_offered=offered,
            inbox_item_count=count,
            requests=len(obs.statuses) - before,
        )
    finally:
        session.close()


def _post(session: requests.Session, endpoint: str, body: bytes, deadline: float) -> SoapAnswer:
    left = deadline - time.monotonic()
    if left <= 0:
        raise ExchangeFailure(Diagnosis.TIMEOUT, "check: no verdict within the time budget")
    response = session.post(
        endpoint,
        data=body,
        headers={"Content-Type": "text/xml; charset=utf-8", "Accept": "text/xml"},
        timeout=(min(5.0, left), left),
        allow_redirects=False,
    )
    status = response.status_code
    if status == 401:
        raise ExchangeFailure(Diagnosis.AUTH_FAILED, "check: credentials refused (401)")
    if status == 456:
        raise ExchangeFailure(Diagnosis.ACCOUNT_LOCKED, "check: account locked or password expired (456)")
    if status == 403:
        raise ExchangeFailure(Diagnosis.ACCESS_DENIED, "check: HTTP 403 after signing in (EWS turned off?)")
    if status in (429, 502, 503, 504):
        raise ExchangeFailure(Diagnosis.SERVER_BUSY, f"check: HTTP {status}")
    answer = parse_answer(response.content)
    if status == 200 or (status == 500 and answer.code):
        return answer  # EWS answers its SOAP faults (schema, busy) with a 500
    if status >= 500:
        raise ExchangeFailure(Diagnosis.SERVER_BUSY, f"check: HTTP {status}")
    raise ExchangeFailure(Diagnosis.UNREACHABLE, f"check: HTTP {status} from the EWS URL")


def _raise_for(answer: SoapAnswer, operation: str) -> None:
    code = answer.code or "no answer"
    if code in BUSY:
        raise ExchangeFailure(Diagnosis.SERVER_BUSY, f"check: {operation} {code}")
    if code in NO_RIGHTS:
        raise ExchangeFailure(Diagnosis.ACCESS_DENIED, f"check: {operation} {code}")
    if code in NO_MAILBOX:
        raise ExchangeFailure(Diagnosis.MAILBOX_NOT_FOUND, f"check: {operation} {code}")
    if code in LOCKED:
        raise ExchangeFailure(Diagnosis.ACCOUNT_LOCKED, f"check: {operation} {code}")
    raise ExchangeFailure(Diagnosis.UNREACHABLE, f"check: {operation} answered {code}")

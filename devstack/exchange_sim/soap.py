"""SOAP request parsing and response building for the simulated autodiscover and EWS endpoints.

Responses follow the shapes documented for Exchange 2019 (and parsed by exchangelib 5.6): every answer
carries a ``ServerVersionInfo`` header with the simulated build.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape

SOAPNS = "http://schemas.xmlsoap.org/soap/envelope/"
MNS = "http://schemas.microsoft.com/exchange/services/2006/messages"
TNS = "http://schemas.microsoft.com/exchange/services/2006/types"
ANS = "http://schemas.microsoft.com/exchange/2010/Autodiscover"
WSA = "http://www.w3.org/2005/08/addressing"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


@dataclass(frozen=True)
class SoapRequest:
    operation: str  # local name of the first element in the Body, e.g. "GetFolder"
    body: ET.Element  # that element


def parse_request(data: bytes) -> SoapRequest | None:
    """The operation and its element, or None when the body is not a SOAP envelope."""
    try:
        root = ET.fromstring(data)  # noqa: S314
    except ET.ParseError:
        return None
    body = root.find(f"{{{SOAPNS}}}Body")
    if body is None or len(body) == 0:
        return None
    op = body[0]
    name = op.tag.rsplit("}", 1)[-1]
    if name.endswith("RequestMessage"):  # autodiscover: GetUserSettingsRequestMessage
        name = name[: -len("RequestMessage")]
    return SoapRequest(operation=name, body=op)


def _build_parts(build: str) -> tuple[str, str, str, str]:
    major, minor, major_build, minor_build = build.split(".")
    return major, minor, major_build, minor_build


def _envelope(header: str, body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{SOAPNS}"><s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>'
    ).encode()


def schema_version(build: str) -> str:
    """The ``Version`` a server of this build names in ServerVersionInfo (the newest EWS schema it serves)."""
    major, minor, _, _ = (int(part) for part in _build_parts(build))
    if major == 14:
        return {0: "Exchange2010", 1: "Exchange2010_SP1"}.get(minor, "Exchange2010_SP2")
    if (major, minor) == (15, 0):
        return "Exchange2013_SP1"
    return "V2017_07_11"


def supports_password_expiration(build: str) -> bool:
    """GetPasswordExpirationDate came with Exchange 2010 SP2 (14.2): MS-OXWSPED, and Microsoft Learn's element
    pages; the operation's own page says SP1, but the EWS Managed API asks for Exchange2010_SP2 to send it."""
    major, minor, _, _ = (int(part) for part in _build_parts(build))
    return (major, minor) >= (14, 2)


def ews_header(build: str) -> str:
    major, minor, mb, nb = _build_parts(build)
    return (
        f'<h:ServerVersionInfo MajorVersion="{major}" MinorVersion="{minor}" MajorBuildNumber="{mb}" '
        f'MinorBuildNumber="{nb}" Version="{schema_version(build)}" xmlns:h="{TNS}" xmlns="{TNS}" '
        f'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="{XSI}"/>'
    )


# ---------------------------------------------------------------- autodiscover (GetUserSettings)


def requested_mailboxes(req: SoapRequest) -> list[str]:
    return [(m.text or "").strip() for m in req.body.iter(f"{{{ANS}}}Mailbox")]


def requested_settings(req: SoapRequest) -> list[str]:
    return [(s.text or "").strip() for s in req.body.iter(f"{{{ANS}}}Setting")]


@dataclass(frozen=True)
class UserAnswer:
    """One UserResponse: settings, an error (code, message) or a redirect ("RedirectAddress" | "RedirectUrl",
    target)."""

    email: str
    settings: dict[str, str] | None = None
    error: tuple[str, str] | None = None
    redirect: tuple[str, str] | None = None


def _autodiscover_header(build: str) -> str:
    major, minor, mb, nb = _build_parts(build)
    return (
        f'<a:Action s:mustUnderstand="1" xmlns:a="{WSA}">'
        "http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/GetUserSettingsResponse</a:Action>"
        f'<h:ServerVersionInfo xmlns:h="{ANS}" xmlns:i="{XSI}"><h:MajorVersion>{major}</h:MajorVersion>'
        f"<h:MinorVersion>{minor}</h:MinorVersion><h:MajorBuildNumber>{mb}</h:MajorBuildNumber>"
        f"<h:MinorBuildNumber>{nb}</h:MinorBuildNumber><h:Version>{_autodiscover_version(build)}</h:Version>"
        "</h:ServerVersionInfo>"
    )


def _autodiscover_version(build: str) -> str:
    return "Exchange2010" if build.startswith("14.") else "Exchange2015"


def user_settings_response(build: str, users: list[UserAnswer]) -> bytes:
    """GetUserSettings answer (MS-OXWSADISC 3.1.4.2 GetUserSettingsResponseMessage): per user, settings, an
    ErrorCode (InvalidUser, ...) or a redirect, whose target is in ``RedirectTarget``."""
    parts = []
    for user in users:
        if user.error is not None:
            code, message = user.error
            parts.append(
                f"<UserResponse><ErrorCode>{code}</ErrorCode><ErrorMessage>{escape(message)}</ErrorMessage>"
                '<RedirectTarget i:nil="true"/><UserSettingErrors/><UserSettings/></UserResponse>'
            )
        elif user.redirect is not None:
            code, target = user.redirect
            parts.append(
                f"<UserResponse><ErrorCode>{code}</ErrorCode><ErrorMessage>Redirection address.</ErrorMessage>"
                f"<RedirectTarget>{escape(target)}</RedirectTarget><UserSettingErrors/><UserSettings/>"
                "</UserResponse>"
            )
        else:
            values = "".join(
                f'<UserSetting i:type="StringSetting"><Name>{escape(k)}</Name>'
                f"<Value>{escape(v)}</Value></UserSetting>"
                for k, v in (user.settings or {}).items()
            )
            parts.append(
                "<UserResponse><ErrorCode>NoError</ErrorCode><ErrorMessage>No error.</ErrorMessage>"
                f'<RedirectTarget i:nil="true"/><UserSettingErrors/><UserSettings>{values}</UserSettings>'
                "</UserResponse>"
            )
    body = (
        f'<GetUserSettingsResponseMessage xmlns="{ANS}" xmlns:i="{XSI}"><Response>'
        "<ErrorCode>NoError</ErrorCode><ErrorMessage/>"
        f"<UserResponses>{''.join(parts)}</UserResponses></Response></GetUserSettingsResponseMessage>"
    )
    return _envelope(_autodiscover_header(build), body)


def user_settings_error(build: str, code: str, message: str) -> bytes:
    """A GetUserSettings answer whose Response itself carries the ErrorCode (ServerBusy, InvalidRequest,
    InternalServerError: "Handling Autodiscover error messages", Microsoft Learn)."""
    body = (
        f'<GetUserSettingsResponseMessage xmlns="{ANS}" xmlns:i="{XSI}"><Response>'
        f"<ErrorCode>{code}</ErrorCode><ErrorMessage>{escape(message)}</ErrorMessage>"
        "<UserResponses/></Response></GetUserSettingsResponseMessage>"
    )
    return _envelope(_autodiscover_header(build), body)


def pox_error(code: str, message: str) -> bytes:
    """A POX (Autodiscover.xml) error answer, as Exchange gives to a request it cannot serve."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">'
        f'<Response><Error Time="00:00:00.0000000" Id="1"><ErrorCode>{code}</ErrorCode>'
        f"<Message>{escape(message)}</Message><DebugData /></Error></Response></Autodiscover>"
    ).encode()


# ---------------------------------------------------------------- EWS


def folder_id(email: str, name: str) -> str:
    """A stable opaque folder id."""
    return "AAMk" + hashlib.sha256(f"{email}/{name}".encode()).hexdigest()[:40]


@dataclass(frozen=True)
class FolderRequest:
    folder: str  # distinguished id ("root", "inbox", ...) or an opaque FolderId
    mailbox: str | None  # <t:Mailbox><t:EmailAddress>, if given
    distinguished: bool


def folder_requests(req: SoapRequest) -> list[FolderRequest]:
    out: list[FolderRequest] = []
    ids = req.body.find(f"{{{MNS}}}FolderIds")
    if ids is None:
        return out
    for elem in ids:
        local = elem.tag.rsplit("}", 1)[-1]
        mailbox = elem.find(f"{{{TNS}}}Mailbox/{{{TNS}}}EmailAddress")
        out.append(
            FolderRequest(
                folder=elem.get("Id", ""),
                mailbox=(mailbox.text or "").strip() if mailbox is not None else None,
                distinguished=local == "DistinguishedFolderId",
            )
        )
    return out


_FOLDER_NAMES = {
    "root": ("Top of Information Store", "IPF.Note"),
    "msgfolderroot": ("Top of Information Store", ""),
}


def folder_xml(email: str, name: str, total: int) -> str:
    display, folder_class = _FOLDER_NAMES.get(name, (name.capitalize(), "IPF.Note"))
    fid = folder_id(email, name)
    parent = folder_id(email, "root")
    cls = f"<t:FolderClass>{folder_class}</t:FolderClass>" if folder_class else ""
    return (
        f'<t:Folder><t:FolderId Id="{fid}" ChangeKey="AQAAABYAAA"/>'
        f'<t:ParentFolderId Id="{parent}" ChangeKey="AQAAAA=="/>{cls}'
        f"<t:DisplayName>{escape(display)}</t:DisplayName><t:TotalCount>{total}</t:TotalCount>"
        "<t:ChildFolderCount>0</t:ChildFolderCount><t:UnreadCount>0</t:UnreadCount></t:Folder>"
    )


ERRORS_NS = "http://schemas.microsoft.com/exchange/services/2006/errors"


def server_busy_fault(back_off_ms: int) -> bytes:
    """The SOAP fault EWS answers (with HTTP 500) when a caller is throttled: ``ErrorServerBusy``, and in its
    detail the ``BackOffMilliseconds`` to wait before resubmitting ("EWS throttling in Exchange", Microsoft Learn,
    table 3 and table 4, "HTTP 500 ... The response may contain a back off hint called BackOffMilliseconds")."""
    text = "The server cannot service this request right now. Try again later."
    body = (
        f'<s:Fault><faultcode xmlns:a="{TNS}">a:ErrorServerBusy</faultcode>'
        f'<faultstring xml:lang="en-US">{text}</faultstring><detail>'
        f'<e:ResponseCode xmlns:e="{ERRORS_NS}">ErrorServerBusy</e:ResponseCode>'
        f'<e:Message xmlns:e="{ERRORS_NS}">{text}</e:Message>'
        f'<t:MessageXml xmlns:t="{TNS}"><t:Value Name="BackOffMilliseconds">{back_off_ms}</t:Value></t:MessageXml>'
        "</detail></s:Fault>"
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAPNS}"><s:Body>{body}</s:Body></s:Envelope>'
    ).encode()


def response_messages(operation: str, build: str, messages: list[str]) -> bytes:
    body = (
        f'<m:{operation}Response xmlns:m="{MNS}" xmlns:t="{TNS}"><m:ResponseMessages>'
        f"{''.join(messages)}</m:ResponseMessages></m:{operation}Response>"
    )
    return _envelope(ews_header(build), body)


def success_message(operation: str, inner: str) -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f"{inner}</m:{operation}ResponseMessage>"
    )


def error_message(operation: str, code: str, text: str) -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Error"><m:MessageText>{escape(text)}</m:MessageText>'
        f"<m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>"
        f"</m:{operation}ResponseMessage>"
    )


# ---------------------------------------------------------------- GetPasswordExpirationDate (MS-OXWSPED)


def requested_password_mailbox(req: SoapRequest) -> str | None:
    """``m:MailboxSmtpAddress`` of a GetPasswordExpirationDate request (None when absent or empty)."""
    elem = req.body.find(f"{{{MNS}}}MailboxSmtpAddress")
    text = (elem.text or "").strip() if elem is not None else ""
    return text or None


def _xs_datetime(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def password_expiration_response(build: str, expires: dt.datetime | None) -> bytes:
    """MS-OXWSPED 3.1.4.1: the Body holds ``m:GetPasswordExpirationDateResponse`` itself (a ResponseMessageType:
    ResponseClass, ResponseCode, then ``m:PasswordExpirationDate``, an xs:dateTime of the Messages schema) --
    not wrapped in ResponseMessages. A password that never expires: the element is empty (Microsoft Learn:
    PasswordExpirationDate "Can be Empty: True"; the EWS Managed API returns a null ``DateTime?`` for it)."""
    value = (
        f"<m:PasswordExpirationDate>{_xs_datetime(expires)}</m:PasswordExpirationDate>"
        if expires is not None
        else "<m:PasswordExpirationDate/>"
    )
    body = (
        f'<m:GetPasswordExpirationDateResponse ResponseClass="Success" xmlns:m="{MNS}" xmlns:t="{TNS}">'
        f"<m:ResponseCode>NoError</m:ResponseCode>{value}</m:GetPasswordExpirationDateResponse>"
    )
    return _envelope(ews_header(build), body)


def password_expiration_error(build: str, code: str, text: str) -> bytes:
    body = (
        f'<m:GetPasswordExpirationDateResponse ResponseClass="Error" xmlns:m="{MNS}" xmlns:t="{TNS}">'
        f"<m:MessageText>{escape(text)}</m:MessageText><m:ResponseCode>{code}</m:ResponseCode>"
        "<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey></m:GetPasswordExpirationDateResponse>"
    )
    return _envelope(ews_header(build), body)


def schema_validation_fault(violation: str) -> bytes:
    """What EWS answers (HTTP 500) a request its schema does not describe -- an operation newer than the server:
    the SOAP fault ``ErrorSchemaValidation`` with the violation, line and position in ``MessageXml``."""
    text = "The request failed schema validation."
    body = (
        f'<s:Fault><faultcode xmlns:a="{TNS}">a:ErrorSchemaValidation</faultcode>'
        f'<faultstring xml:lang="en-US">The request failed schema validation: {escape(violation)}</faultstring>'
        f'<detail><e:ResponseCode xmlns:e="{ERRORS_NS}">ErrorSchemaValidation</e:ResponseCode>'
        f'<e:Message xmlns:e="{ERRORS_NS}">{text}</e:Message>'
        f'<t:MessageXml xmlns:t="{TNS}"><t:LineNumber>1</t:LineNumber><t:LinePosition>1</t:LinePosition>'
        f"<t:Violation>{escape(violation)}</t:Violation></t:MessageXml></detail></s:Fault>"
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAPNS}"><s:Body>{body}</s:Body></s:Envelope>'
    ).encode()

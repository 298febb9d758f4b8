"""Microsoft Graph (v1.0): ``/me`` and ``/me/mailFolders/inbox`` as a WSGI app, answering per user behaviour.

Error bodies are Graph's (learn.microsoft.com/graph/errors): ``{"error": {"code", "message", "innerError"}}``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import jwt
from werkzeug.wrappers import Request, Response

from .keys import GRAPH_APP_ID, SigningKey
from .scenarios import Behaviour, User
from .state import State, concerning

USER_PROPERTIES = (
    "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation",
    "preferredLanguage", "surname", "userPrincipalName", "id",
)  # fmt: skip
SELECTABLE = (*USER_PROPERTIES, "proxyAddresses")
READ_USER = {"User.Read", "User.ReadBasic.All", "User.Read.All"}
READ_MAIL = {"Mail.ReadBasic", "Mail.Read", "Mail.ReadWrite"}
ODATA_JSON = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)
WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
    f'client_id="{GRAPH_APP_ID}"'
)


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class Graph:
    def __init__(self, state: State, key: SigningKey) -> None:
        self.state = state
        self.key = key
        self.base_url = ""

    def dispatch(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        headers = {
            "request-id": request_id,
            "client-request-id": request.headers.get("client-request-id", request_id),
            "Cache-Control": "no-store",
        }
        try:
            body = self._handle(request)
        except GraphError as err:
            inner = {
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": headers["client-request-id"],
            }
            payload = {"error": {"code": err.code, "message": err.message, "innerError": inner}}
            return Response(
                json.dumps(payload),
                status=err.status,
                content_type=ODATA_JSON,
                headers={**headers, **err.headers},
            )
        return Response(json.dumps(body), status=200, content_type=ODATA_JSON, headers=headers)

    def _handle(self, request: Request) -> dict[str, Any]:
        segments = [s for s in request.path.split("/") if s]
        if not segments or segments[0] != "v1.0":
            raise GraphError(400, "BadRequest", f"Invalid version: {segments[0] if segments else ''}")
        if request.method != "GET":
            raise GraphError(
                405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target."
            )
        user, scopes = self._authenticate(request)
        concerning(request.environ, user)
        self._behave(user)
        route = [s.lower() for s in segments[1:]]
        if route == ["me"]:
            self._require(scopes, READ_USER)
            return self._me(user, request.args.get("$select"))
        if route == ["me", "mailfolders", "inbox"]:
            self._require(scopes, READ_MAIL)
            return self._inbox(user, request.args.get("$select"))
        unknown = next((s for s in segments[1:] if s.lower() not in ("me", "mailfolders")), segments[-1])
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{unknown}'.")

    def _authenticate(self, request: Request) -> tuple[User, set[str]]:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token is empty.",
                {"WWW-Authenticate": WWW_AUTHENTICATE},
            )
        try:
            claims = self.key.verify(token.strip(), audience=GRAPH_APP_ID)
        except jwt.InvalidAudienceError:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.",
                {"WWW-Authenticate": WWW_AUTHENTICATE},
            ) from None  # fmt: skip
        except jwt.PyJWTError:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure.",
                {"WWW-Authenticate": WWW_AUTHENTICATE},
            ) from None
        if not isinstance(claims.get("exp"), int) or self.state.clock() >= claims["exp"]:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.",
                {"WWW-Authenticate": WWW_AUTHENTICATE},
            )  # fmt: skip
        user = self.state.user_by_oid(str(claims.get("oid", "")))
        if user is None:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure.")
        return user, set(str(claims.get("scp", "")).split())

    def _require(self, granted: set[str], any_of: set[str]) -> None:
        if not granted & any_of:
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")

    def _behave(self, user: User) -> None:
        if user.behaviour is Behaviour.GRAPH_UNAVAILABLE:
            raise GraphError(503, "serviceNotAvailable", "Service Unavailable", {"Retry-After": "10"})
        if user.behaviour is Behaviour.GRAPH_THROTTLED:
            with self.state.lock:
                first = user.address not in self.state.graph_throttled
                self.state.graph_throttled.add(user.address)
            if first:
                raise GraphError(
                    429,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                    {"Retry-After": "1"},
                )

    def _me(self, user: User, select: str | None) -> dict[str, Any]:
        given, _, surname = user.display_name.partition(" ")
        full: dict[str, Any] = {
            "businessPhones": [],
            "displayName": user.display_name,
            "givenName": given,
            "jobTitle": None,
            "mail": user.mail,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": "en-US",
            "surname": surname or None,
            "userPrincipalName": user.address,
            "id": user.oid,
            "proxyAddresses": user.proxy_addresses,
        }
        names = list(USER_PROPERTIES) if select is None else _selected(select, SELECTABLE, "user")
        selection = "" if select is None else f"({','.join(names)})"
        context = f"{self.base_url}/v1.0/$metadata#users{selection}/$entity"
        return {"@odata.context": context, **{n: full[n] for n in names}}

    def _inbox(self, user: User, select: str | None) -> dict[str, Any]:
        if not user.has_mailbox:
            raise GraphError(
                404,
                "MailboxNotEnabledForRESTAPI",
                "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
            )
        if user.behaviour is Behaviour.GRAPH_UNAUTHORIZED:
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        full: dict[str, Any] = {
            "id": "AAMkA" + uuid.uuid5(uuid.UUID(user.oid), "inbox").hex,
            "displayName": "Inbox",
            "parentFolderId": "AAMkA" + uuid.uuid5(uuid.UUID(user.oid), "root").hex,
            "childFolderCount": 0,
            "unreadItemCount": user.inbox.unread,
            "totalItemCount": user.inbox.total,
            "sizeInBytes": user.inbox.total * 48_213,
            "isHidden": False,
        }
        names = list(full) if select is None else ["id", *_selected(select, tuple(full), "mailFolder")]
        names = list(dict.fromkeys(names))  # Outlook entities always carry their id
        selection = "" if select is None else f"({','.join(n for n in names if n != 'id')})"
        context = f"{self.base_url}/v1.0/$metadata#users('{user.oid}')/mailFolders{selection}/$entity"
        return {"@odata.context": context, **{n: full[n] for n in names}}


def _selected(select: str, known: tuple[str, ...], entity: str) -> list[str]:
    """``$select`` names, case-insensitive as Graph matches them, in Graph's spelling."""
    out = []
    for name in (n.strip() for n in select.split(",") if n.strip()):
        match = next((p for p in known if p.lower() == name.lower()), None)
        if match is None:
            raise GraphError(
                400,
                "BadRequest",
                f"Could not find a property named '{name}' on type 'microsoft.graph.{entity}'.",
            )
        out.append(match)
    return out

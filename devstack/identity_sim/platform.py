"""The Microsoft identity platform (Entra ID v2.0 endpoints) as a WSGI app.

Endpoints and shapes follow Microsoft's docs: OpenID Connect discovery, JWKS, the authorization code flow with
PKCE (learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow), the admin consent endpoint,
home realm discovery (userrealm / getuserrealm.srf).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import threading
import uuid
from typing import Any
from urllib.parse import urlencode

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException, NotFound, abort
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from . import aadsts, pages
from .aadsts import Aadsts
from .keys import GRAPH_APP_ID, SigningKey
from .scenarios import Behaviour, Tenant, User
from .state import (
    ACCESS_TOKEN_LIFETIME,
    CODE_LIFETIME,
    ID_TOKEN_LIFETIME,
    REFRESH_TOKEN_INACTIVITY,
    Flow,
    IssuedCode,
    RefreshGrant,
    RegisteredApp,
    State,
    concerning,
)

MULTI_TENANT = ("organizations", "common")
OIDC_SCOPES = ("openid", "profile", "email", "offline_access")
GRAPH_RESOURCE = "https://graph.microsoft.com/"
# Microsoft Graph delegated permissions the simulated Graph knows (enough for our app and its mistakes).
GRAPH_SCOPES = (
    "User.Read",
    "User.ReadBasic.All",
    "Mail.ReadBasic",
    "Mail.Read",
    "Mail.ReadWrite",
    "Mail.Send",
)
SESSION_COOKIE = "ESTSAUTH"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def s256(verifier: str) -> str:
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        content_type="application/json; charset=utf-8",
        headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache", **(headers or {})},
    )


def _html(body: str, status: int = 200) -> Response:
    return Response(
        body, status=status, content_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"}
    )


def normalise_scopes(raw: str) -> tuple[tuple[str, ...], str | None]:
    """Split a ``scope`` parameter into known scopes (Graph ones in their short form); the first unknown one."""
    out: list[str] = []
    for item in raw.split():
        name = item[len(GRAPH_RESOURCE) :] if item.lower().startswith(GRAPH_RESOURCE) else item
        if name.lower() in (s.lower() for s in OIDC_SCOPES):
            name = name.lower()
        elif name == ".default":
            out.extend(s for s in ("User.Read", "Mail.ReadBasic") if s not in out)
            continue
        else:
            match = next((s for s in GRAPH_SCOPES if s.lower() == name.lower()), None)
            if match is None:
                return (), item
            name = match
        if name not in out:
            out.append(name)
    return tuple(out), None


def _consent_action(flow: Flow) -> str:
    """Where the consent and "Need admin approval" pages post the person's decision."""
    return f"{flow.root}/{flow.tenant_path}/Consent/Set"


def _wants_client_info(request: Request) -> bool:
    """Microsoft adds ``client_info`` (``{"uid", "utid"}``) only when the request asks ``client_info=1``."""
    return request.form.get("client_info") == "1"


class IdentityPlatform:
    """The login service. ``base_url`` is where it is reached (stands in for https://login.microsoftonline.com)."""

    def __init__(self, state: State, key: SigningKey, stopping: threading.Event) -> None:
        self.state = state
        self.key = key
        self.stopping = stopping
        self.base_url = ""
        # Where people's browsers reach the sign-in pages (authorize, sign-in, consent, sign-out): the
        # discovery document's `authorization_endpoint` / `end_session_endpoint`. Empty: `base_url`. The
        # local stack serves them on its own origin (http://127.0.0.1:3000/_local/login), so any browser
        # signs in without a warning about the throw-away CA, across restarts; tokens, keys and the issuer
        # stay on `base_url` (HTTPS, what MSAL talks to from the functions).
        self.browser_base_url = ""
        self.url_map = Map(
            [
                Rule("/getuserrealm.srf", endpoint="getuserrealm", methods=["GET"]),
                Rule("/common/userrealm/<path:login>", endpoint="userrealm", methods=["GET"]),
                Rule("/<tenant>/v2.0/.well-known/openid-configuration", endpoint="openid_configuration"),
                Rule("/<tenant>/discovery/v2.0/keys", endpoint="keys", methods=["GET"]),
                Rule("/<tenant>/oauth2/v2.0/authorize", endpoint="authorize", methods=["GET", "POST"]),
                Rule("/<tenant>/oauth2/v2.0/token", endpoint="token", methods=["POST"]),
                Rule("/<tenant>/oauth2/v2.0/logout", endpoint="logout", methods=["GET", "POST"]),
                Rule("/<tenant>/adminconsent", endpoint="adminconsent", methods=["GET"]),
                Rule("/<tenant>/login", endpoint="login", methods=["POST"]),
                Rule("/<tenant>/Consent/Set", endpoint="consent", methods=["POST"]),
            ],
            strict_slashes=False,
        )

    # ------------------------------------------------------------------ plumbing

    def dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except NotFound:
            return _json({"error": "not_found", "error_description": f"No endpoint at {request.path}"}, 404)
        except HTTPException as exc:
            return _json({"error": "invalid_request", "error_description": exc.description}, exc.code or 400)
        handler = getattr(self, f"on_{endpoint}")
        try:
            response: Response = handler(request, **args)
        except HTTPException as exc:
            if exc.response is None:
                raise
            return exc.get_response()  # a check refused the request: ``abort(<error page or JSON error>)``
        return response

    def issuer(self, tenant_id: str) -> str:
        return f"{self.base_url}/{tenant_id}/v2.0"

    def resolve(self, tenant_path: str) -> Tenant | str | None:
        """``"multi"`` for organizations/common, the Tenant for an id or domain, None when unknown."""
        if tenant_path.lower() in MULTI_TENANT:
            return "multi"
        return self.state.world.resolve_tenant(tenant_path)

    def _invalid_tenant(self, tenant_path: str) -> Response:
        return _json(aadsts.body(aadsts.INVALID_TENANT, tenant=tenant_path), 400)

    # ------------------------------------------------------------------ discovery

    def on_openid_configuration(self, request: Request, tenant: str) -> Response:
        resolved = self.resolve(tenant)
        if resolved is None:
            return self._invalid_tenant(tenant)
        if isinstance(resolved, Tenant):
            path, issuer, region = resolved.id, self.issuer(resolved.id), "EU"
        else:
            path, issuer, region = tenant.lower(), self.issuer("{tenantid}"), None
        base = f"{self.base_url}/{path}"
        browser = f"{self.browser_base_url or self.base_url}/{path}"
        return _json(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": issuer,
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
                "authorization_endpoint": f"{browser}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{browser}/oauth2/v2.0/logout",
                "claims_supported": [
                    "sub",
                    "iss",
                    "cloud_instance_name",
                    "cloud_instance_host_name",
                    "cloud_graph_host_name",
                    "msgraph_host",
                    "aud",
                    "exp",
                    "iat",
                    "auth_time",
                    "acr",
                    "nonce",
                    "preferred_username",
                    "name",
                    "tid",
                    "ver",
                    "at_hash",
                    "c_hash",
                    "email",
                ],
                "kerberos_endpoint": f"{base}/kerberos",
                "tenant_region_scope": region,
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
                "rbac_url": "https://pas.windows.net",
            }
        )

    def on_keys(self, request: Request, tenant: str) -> Response:
        resolved = self.resolve(tenant)
        if resolved is None:
            return self._invalid_tenant(tenant)
        issuer = self.issuer(resolved.id if isinstance(resolved, Tenant) else "{tenantid}")
        return _json({"keys": [self.key.jwk(issuer)]})

    def _realm(self, login: str) -> tuple[Tenant | None, str]:
        domain = login.rpartition("@")[2].lower()
        return self.state.world.tenant_for_domain(domain), domain

    def on_getuserrealm(self, request: Request) -> Response:
        return _json(self._realm_srf(request.args.get("login", "")))

    def on_userrealm(self, request: Request, login: str) -> Response:
        if request.args.get("api-version", "1.0") == "1.0":
            return _json(self._realm_v1(login))  # what MSAL reads
        return _json(self._realm_v2(login))

    def _realm_srf(self, login: str) -> dict[str, Any]:
        """``getuserrealm.srf?json=1``: the login page's own home realm discovery."""
        tenant, domain = self._realm(login)
        if tenant is None:
            return {"State": 4, "UserState": 1, "Login": login, "NameSpaceType": "Unknown"}
        federated = tenant.federation is not None
        out: dict[str, Any] = {
            "State": 3 if federated else 4,
            "UserState": 2 if federated else 1,
            "Login": login,
            "NameSpaceType": tenant.namespace,
            "DomainName": domain,
            "FederationBrandName": tenant.brand_name,
            "CloudInstanceName": "microsoftonline.com",
            "CloudInstanceIssuerUri": "urn:federation:MicrosoftOnline",
        }
        if tenant.federation is not None:
            out["FederationGlobalVersion"] = -1
            out["AuthURL"] = tenant.federation.auth_url + login
        return out

    def _realm_v2(self, login: str) -> dict[str, Any]:
        """``/common/userrealm/{login}?api-version=2.0|2.1``."""
        tenant, domain = self._realm(login)
        if tenant is None:
            return {"NameSpaceType": "Unknown", "Login": login, "cloud_instance_name": "microsoftonline.com"}
        out: dict[str, Any] = {
            "NameSpaceType": tenant.namespace,
            "Login": login,
            "DomainName": domain,
            "FederationBrandName": tenant.brand_name,
            "TenantBrandingInfo": None,
            "cloud_instance_name": "microsoftonline.com",
        }
        if tenant.federation is not None:
            out["federation_protocol"] = tenant.federation.protocol
            out["AuthURL"] = tenant.federation.auth_url + login
        return out

    def _realm_v1(self, login: str) -> dict[str, Any]:
        tenant, domain = self._realm(login)
        if tenant is None:
            return {"ver": "1.0", "account_type": "Unknown", "cloud_instance_name": "microsoftonline.com"}
        out: dict[str, Any] = {
            "ver": "1.0",
            "account_type": tenant.namespace,
            "domain_name": domain,
            "cloud_instance_name": "microsoftonline.com",
            "cloud_audience_urn": "urn:federation:MicrosoftOnline",
        }
        if tenant.federation is not None:
            out["federation_protocol"] = tenant.federation.protocol
            out["federation_active_auth_url"] = tenant.federation.auth_url.split("?")[0]
        return out

    # ------------------------------------------------------------------ authorize

    def _error_page(self, title: str, err: Aadsts, status: int = 400, **values: str) -> Response:
        return _html(
            pages.error(
                title=title, message=err.message.format(**values), code=err.code, trace=str(uuid.uuid4())
            ),
            status,
        )

    def _respond(self, flow: Flow, params: dict[str, str]) -> Response:
        """Send the authorization response to the app's redirect URI, as ``response_mode`` says."""
        if flow.state is not None:
            params["state"] = flow.state
        with self.state.lock:
            self.state.flows.pop(flow.ctx, None)  # one response per flow
        if flow.response_mode == "form_post":
            return _html(pages.form_post(flow.redirect_uri, params))
        sep = "#" if flow.response_mode == "fragment" else ("&" if "?" in flow.redirect_uri else "?")
        return Response(status=302, headers={"Location": flow.redirect_uri + sep + urlencode(params)})

    def _redirect_error(self, flow: Flow, err: Aadsts, **values: str) -> Response:
        """The error goes back to the app's redirect URI: ``error``, ``error_description`` and ``error_uri`` as
        the token endpoint's JSON body words them (plus ``state``, and ``admin_consent`` on that flow)."""
        body = aadsts.body(err, **values)
        params = {name: body[name] for name in ("error", "error_description", "error_uri")}
        if flow.admin_consent:
            params["admin_consent"] = "True"
        return self._respond(flow, params)

    def _params(self, request: Request) -> MultiDict[str, str]:
        return request.form if request.method == "POST" else request.args

    def on_authorize(self, request: Request, tenant: str) -> Response:
        params = self._params(request)
        app = self._registered_app(params, tenant)
        flow = Flow(
            ctx=self.state.new_id(),
            tenant_path=tenant,
            app=app,
            redirect_uri=params["redirect_uri"],
            scopes=(),
            state=params.get("state"),
            nonce=params.get("nonce"),
            code_challenge=params.get("code_challenge"),
            response_mode=params.get("response_mode", "query"),
            prompt=params.get("prompt"),
            login_hint=params.get("login_hint"),
            client_info=params.get("client_info") == "1",
            root=request.script_root,
        )
        if flow.response_mode not in ("query", "fragment", "form_post"):
            flow.response_mode = "query"
            return self._redirect_error(flow, aadsts.MISSING_PARAMETER, name="response_mode")
        if params.get("response_type") != "code":
            return self._redirect_error(
                flow, aadsts.UNSUPPORTED_RESPONSE_TYPE, response_type=params.get("response_type", "")
            )
        if not params.get("scope"):
            return self._redirect_error(flow, aadsts.MISSING_PARAMETER, name="scope")
        scopes, unknown = normalise_scopes(params["scope"])
        if unknown is not None:
            return self._redirect_error(flow, aadsts.INVALID_SCOPE, scope=unknown)
        flow.scopes = scopes
        # Stricter than Microsoft (which also takes ``plain``, and no PKCE from confidential clients): our app
        # must send S256 PKCE, so the simulator refuses anything less.
        if not flow.code_challenge:
            return self._redirect_error(flow, aadsts.PKCE_REQUIRED)
        if params.get("code_challenge_method") != "S256":
            return self._redirect_error(flow, aadsts.INVALID_CODE_CHALLENGE_METHOD)
        with self.state.lock:
            self.state.flows[flow.ctx] = flow
        return self._start_sign_in(request, flow)

    def _registered_app(self, params: MultiDict[str, str], tenant: str) -> RegisteredApp:
        """Tenant, client_id and redirect_uri are checked before anything is sent back: a wrong one gets a page
        (``abort``), never a redirect to a URI not known to be the app's."""
        if self.resolve(tenant) is None:
            abort(self._error_page("Sign in", aadsts.INVALID_TENANT, tenant=tenant))
        client_id = params.get("client_id", "")
        if not client_id:
            abort(self._error_page("Sign in", aadsts.MISSING_PARAMETER, name="client_id"))
        app = self.state.apps.get(client_id)
        if app is None:
            abort(self._error_page("Sign in", aadsts.UNKNOWN_CLIENT, client_id=client_id, tenant=tenant))
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri:
            abort(self._error_page("Sign in", aadsts.MISSING_PARAMETER, name="redirect_uri"))
        if redirect_uri not in app.redirect_uris:
            abort(
                self._error_page(
                    "Sign in", aadsts.REDIRECT_MISMATCH, redirect_uri=redirect_uri, client_id=client_id
                )
            )
        return app

    def _start_sign_in(self, request: Request, flow: Flow) -> Response:
        session_user = self._session_user(request)
        hint = (flow.login_hint or "").lower()
        reuse = session_user is not None and (not hint or hint == session_user.address)
        if flow.prompt == "none":
            if session_user is None or not reuse:
                return self._redirect_error(flow, aadsts.LOGIN_REQUIRED)
            if not self.state.consented(session_user, flow.app, flow.scopes):
                err = aadsts.NOT_CONSENTED
                return self._redirect_error(
                    flow,
                    Aadsts(err.code, "consent_required", err.message),
                    client_id=flow.app.client_id,
                    app_name=flow.app.display_name,
                )
            return self._signed_in(flow, session_user)
        if reuse and session_user is not None and flow.prompt not in ("login", "select_account"):
            return self._signed_in(flow, session_user)
        return self._sign_in_page(flow, login=flow.login_hint or "")

    def _sign_in_page(
        self, flow: Flow, *, login: str, error: str | None = None, code: int | None = None
    ) -> Response:
        action = f"{flow.root}/{flow.tenant_path}/login"
        return _html(
            pages.sign_in(
                action=action, ctx=flow.ctx, login=login, error=error, code=code, trace=flow.ctx[:8]
            )
        )

    def _session_user(self, request: Request) -> User | None:
        sid = request.cookies.get(SESSION_COOKIE)
        if not sid:
            return None
        with self.state.lock:
            address = self.state.sessions.get(sid)
        return self.state.world.user(address) if address else None

    def _flow(self, request: Request) -> Flow | None:
        with self.state.lock:
            return self.state.flows.get(request.form.get("ctx", ""))

    def _expired_flow(self) -> Response:
        return self._error_page("Sign in", aadsts.MISSING_PARAMETER, name="ctx")

    def on_login(self, request: Request, tenant: str) -> Response:
        flow = self._flow(request)
        if flow is None:
            return self._expired_flow()
        login = request.form.get("login", "").strip()
        user = self.state.world.user(login)
        if user is None:
            return self._sign_in_page(
                flow,
                login=login,
                error="We couldn't find an account with that username. Try another, or get a new account.",
                code=aadsts.UNKNOWN_USER.code,
            )
        if user.address in self.state.locked:  # Smart Lockout: refused whatever the password, on the page
            return self._sign_in_page(
                flow,
                login=login,
                error="Your account is locked. Contact your support person to unlock it, then try again.",
                code=aadsts.ACCOUNT_LOCKED.code,
            )
        if request.form.get("passwd", "") != user.password:
            return self._sign_in_page(
                flow,
                login=login,
                error="Your account or password is incorrect. If you don't remember your password, reset it now.",
                code=aadsts.WRONG_PASSWORD.code,
            )
        sid = self.state.new_id()
        with self.state.lock:
            self.state.sessions[sid] = user.address
        response = self._signed_in(flow, user)
        # Microsoft's cookie is Secure and SameSite=None; on the local stack's plain-HTTP loopback origin a
        # browser would drop a Secure cookie, and SameSite=None needs Secure: Lax there (same site anyway).
        secure = request.scheme == "https"
        response.set_cookie(
            SESSION_COOKIE,
            sid,
            secure=secure,
            httponly=True,
            samesite="None" if secure else "Lax",
            path=f"{flow.root}/" if flow.root else "/",
        )
        return response

    def _signed_in(self, flow: Flow, user: User) -> Response:
        """The password is right (or a session exists): the directory's checks, then consent, then the code."""
        flow.user = user
        resolved = self.resolve(flow.tenant_path)
        if isinstance(resolved, Tenant) and resolved.id != user.tenant.id:
            return self._redirect_error(
                flow,
                aadsts.WRONG_TENANT,
                user_tenant=user.tenant.id,
                tenant=resolved.id,
                client_id=flow.app.client_id,
            )
        if user.behaviour is Behaviour.TENANT_DISABLED:
            return self._redirect_error(flow, aadsts.TENANT_BLOCKED)
        if user.behaviour is Behaviour.USER_DISABLED or user.address in self.state.disabled:
            return self._redirect_error(flow, aadsts.USER_DISABLED)
        if user.behaviour is Behaviour.CONDITIONAL_ACCESS_BLOCKED:
            return self._redirect_error(flow, aadsts.CONDITIONAL_ACCESS)
        if flow.admin_consent:
            if not user.admin:
                return self._redirect_error(flow, aadsts.ADMIN_APPROVAL_NEEDED)
            return self._consent_page(flow, user, admin=True)
        if self.state.consented(user, flow.app, flow.scopes) and flow.prompt != "consent":
            return self._issue_code(flow, user)
        if user.behaviour is Behaviour.ADMIN_CONSENT_REQUIRED:
            return _html(
                pages.admin_approval(
                    action=_consent_action(flow),
                    ctx=flow.ctx,
                    app_name=flow.app.display_name,
                    user=user,
                    trace=flow.ctx[:8],
                )
            )
        return self._consent_page(flow, user, admin=False)

    def _consent_page(self, flow: Flow, user: User, *, admin: bool) -> Response:
        """The "Permissions requested" page: for the user alone, or (``admin``) for the whole organization."""
        return _html(
            pages.consent(
                action=_consent_action(flow),
                ctx=flow.ctx,
                app_name=flow.app.display_name,
                user=user,
                scopes=flow.scopes,
                admin=admin,
            )
        )

    def on_consent(self, request: Request, tenant: str) -> Response:
        flow = self._flow(request)
        if flow is None or flow.user is None:
            return self._expired_flow()
        user, decision = flow.user, request.form.get("decision")
        if decision == "return":  # "Need admin approval" -> back to the app without consent
            return self._redirect_error(flow, aadsts.ADMIN_APPROVAL_NEEDED)
        if decision != "accept":
            return self._redirect_error(flow, aadsts.CONSENT_DECLINED)
        if flow.admin_consent:
            with self.state.lock:
                self.state.admin_consents.add((user.tenant.id, flow.app.client_id))
            return self._respond(
                flow, {"admin_consent": "True", "tenant": user.tenant.id, "scope": " ".join(flow.scopes)}
            )
        if user.behaviour is Behaviour.ADMIN_CONSENT_REQUIRED:  # a forged post past the approval page
            return self._redirect_error(flow, aadsts.ADMIN_APPROVAL_NEEDED)
        with self.state.lock:
            self.state.consents.setdefault((user.address, flow.app.client_id), set()).update(flow.scopes)
        return self._issue_code(flow, user)

    def _issue_code(self, flow: Flow, user: User) -> Response:
        code = self.state.new_id("1.A")
        with self.state.lock:
            self.state.codes[code] = IssuedCode(
                app=flow.app,
                redirect_uri=flow.redirect_uri,
                user=user,
                scopes=flow.scopes,
                code_challenge=flow.code_challenge,
                nonce=flow.nonce,
                issued_at=self.state.clock(),
            )
        params = {"code": code}
        if flow.client_info:
            params["client_info"] = self._client_info(user)
        params["session_state"] = str(uuid.uuid5(uuid.UUID(user.tenant.id), flow.ctx))
        return self._respond(flow, params)

    def on_adminconsent(self, request: Request, tenant: str) -> Response:
        app = self._registered_app(request.args, tenant)
        flow = Flow(
            ctx=self.state.new_id(),
            tenant_path=tenant,
            app=app,
            redirect_uri=request.args["redirect_uri"],
            scopes=("User.Read", "Mail.ReadBasic", "offline_access"),  # the app's configured permissions
            state=request.args.get("state"),
            nonce=None,
            code_challenge=None,
            response_mode="query",
            prompt="login",
            login_hint=None,
            client_info=False,
            root=request.script_root,
            admin_consent=True,
        )
        with self.state.lock:
            self.state.flows[flow.ctx] = flow
        return self._sign_in_page(flow, login="")

    def on_logout(self, request: Request, tenant: str) -> Response:
        """Sign-out: the session ends; back to ``post_logout_redirect_uri`` when it is a registered URI."""
        sid = request.cookies.get(SESSION_COOKIE)
        with self.state.lock:
            self.state.sessions.pop(sid or "", None)
        target = self._params(request).get("post_logout_redirect_uri", "")
        registered = any(target in app.redirect_uris for app in self.state.apps.values())
        if target and registered:
            response = Response(status=302, headers={"Location": target})
        else:
            response = _html(pages.signed_out())
        response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="None")
        return response

    # ------------------------------------------------------------------ token

    def _client_info(self, user: User) -> str:
        return _b64url(json.dumps({"uid": user.oid, "utid": user.tenant.id}).encode())

    def _token_error(self, err: Aadsts, **values: str) -> Response:
        return _json(aadsts.body(err, **values), err.status)

    def _authenticate_client(self, request: Request) -> RegisteredApp:
        """The confidential client's id and secret (in the body or as Basic): a wrong one ends the request."""
        client_id = request.form.get("client_id", "")
        secret = request.form.get("client_secret")
        if request.authorization is not None and request.authorization.type == "basic":
            client_id = request.authorization.username or client_id
            secret = request.authorization.password
        if not client_id:
            abort(self._token_error(aadsts.MISSING_PARAMETER, name="client_id"))
        app = self.state.apps.get(client_id)
        if app is None:
            abort(self._token_error(aadsts.UNKNOWN_CLIENT, client_id=client_id, tenant="organizations"))
        if not secret:
            abort(self._token_error(aadsts.MISSING_CLIENT_SECRET))
        if secret != app.client_secret:
            abort(self._token_error(aadsts.WRONG_CLIENT_SECRET, client_id=client_id))
        return app

    def on_token(self, request: Request, tenant: str) -> Response:
        if self.resolve(tenant) is None:
            return self._invalid_tenant(tenant)
        grant_type = request.form.get("grant_type", "")
        if not grant_type:
            return self._token_error(aadsts.MISSING_PARAMETER, name="grant_type")
        if grant_type not in ("authorization_code", "refresh_token"):
            return self._token_error(aadsts.UNSUPPORTED_GRANT, grant_type=grant_type)
        app = self._authenticate_client(request)
        if grant_type == "authorization_code":
            return self._redeem_code(request, app)
        return self._redeem_refresh_token(request, app)

    def _hang(self) -> Response:
        """``token_timeout``: never answer (until the simulator stops)."""
        self.stopping.wait()
        return Response(status=503)

    def _redeem_code(self, request: Request, app: RegisteredApp) -> Response:
        code = request.form.get("code", "")
        if not code:
            return self._token_error(aadsts.MISSING_PARAMETER, name="code")
        if self.state.out_for(None):
            return self._token_error(aadsts.TEMPORARILY_UNAVAILABLE)
        with self.state.lock:
            issued = self.state.codes.get(code)
            if issued is None or issued.app.client_id != app.client_id:
                return self._token_error(aadsts.BAD_GRANT)
            if issued.redeemed:
                return self._token_error(aadsts.CODE_REDEEMED)
            if self.state.clock() - issued.issued_at > CODE_LIFETIME:
                return self._token_error(aadsts.CODE_EXPIRED)
            redirect_uri = request.form.get("redirect_uri", "")
            if not redirect_uri:
                return self._token_error(aadsts.MISSING_PARAMETER, name="redirect_uri")
            if redirect_uri != issued.redirect_uri:
                return self._token_error(
                    aadsts.TOKEN_REDIRECT_MISMATCH, redirect_uri=redirect_uri, expected=issued.redirect_uri
                )
            verifier = request.form.get("code_verifier", "")
            if issued.code_challenge and (not verifier or s256(verifier) != issued.code_challenge):
                return self._token_error(aadsts.CODE_VERIFIER_MISMATCH)
            issued.redeemed = True
        concerning(request.environ, issued.user)
        if issued.user.behaviour is Behaviour.TOKEN_TIMEOUT:
            return self._hang()
        return self._tokens(
            app, issued.user, issued.scopes, nonce=issued.nonce, client_info=_wants_client_info(request)
        )

    def _redeem_refresh_token(self, request: Request, app: RegisteredApp) -> Response:
        token = request.form.get("refresh_token", "")
        if not token:
            return self._token_error(aadsts.MISSING_PARAMETER, name="refresh_token")
        with self.state.lock:
            grant = self.state.grants.get(token)
        if grant is None:
            return self._token_error(aadsts.BAD_GRANT)
        concerning(request.environ, grant.user)
        if self.state.out_for(grant.user.address):
            return self._token_error(aadsts.TEMPORARILY_UNAVAILABLE)
        if grant.app.client_id != app.client_id:
            return self._token_error(aadsts.CLIENT_MISMATCH)
        if grant.revoked:
            return self._token_error(aadsts.GRANT_REVOKED)
        if grant.user.address in self.state.disabled or grant.user.behaviour is Behaviour.USER_DISABLED:
            return self._token_error(aadsts.USER_DISABLED_GRANT)
        if grant.user.address in self.state.locked:
            return self._token_error(aadsts.ACCOUNT_LOCKED)
        if grant.consent_withdrawn:
            return self._token_error(aadsts.NOT_CONSENTED, client_id=app.client_id, app_name=app.display_name)
        if self.state.clock() - grant.issued_at > REFRESH_TOKEN_INACTIVITY:
            issued = dt.datetime.fromtimestamp(grant.issued_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
            return self._token_error(aadsts.REFRESH_TOKEN_INACTIVE, issued=issued)
        scopes, unknown = normalise_scopes(request.form.get("scope", ""))
        if unknown is not None:
            return self._token_error(aadsts.INVALID_SCOPE, scope=unknown)
        if not set(scopes) <= set(grant.scopes):
            return self._token_error(aadsts.NOT_CONSENTED, client_id=app.client_id, app_name=app.display_name)
        if grant.user.behaviour is Behaviour.TOKEN_TIMEOUT:
            return self._hang()
        return self._tokens(
            app, grant.user, grant.scopes, nonce=None, client_info=_wants_client_info(request)
        )

    def _tokens(
        self, app: RegisteredApp, user: User, scopes: tuple[str, ...], *, nonce: str | None, client_info: bool
    ) -> Response:
        now = int(self.state.clock())
        graph_scopes = [s for s in scopes if s not in OIDC_SCOPES]
        oidc = [s for s in scopes if s in ("openid", "profile", "email")]
        granted = " ".join(graph_scopes + oidc)
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": granted,
            "expires_in": ACCESS_TOKEN_LIFETIME,
            "ext_expires_in": ACCESS_TOKEN_LIFETIME,
            "access_token": self._access_token(app, user, granted, now),
        }
        if "offline_access" in scopes:
            refresh = self.state.new_id("1.AR")
            with self.state.lock:
                self.state.grants[refresh] = RefreshGrant(app=app, user=user, scopes=scopes, issued_at=now)
            body["refresh_token"] = refresh
        if "openid" in scopes:
            body["id_token"] = self._id_token(app, user, scopes, now, nonce)
        if client_info:
            body["client_info"] = self._client_info(user)
        return _json(body)

    def _access_token(self, app: RegisteredApp, user: User, scp: str, now: int) -> str:
        """A v1.0 access token for Microsoft Graph (Graph's tokens are v1.0, whatever endpoint issued them)."""
        given, _, family = user.display_name.partition(" ")
        return self.key.sign(
            {
                "aud": GRAPH_APP_ID,
                "iss": f"https://sts.windows.net/{user.tenant.id}/",
                "iat": now,
                "nbf": now,
                "exp": now + ACCESS_TOKEN_LIFETIME,
                "acr": "1",
                "amr": ["pwd"],
                "app_displayname": app.display_name,
                "appid": app.client_id,
                "appidacr": "1",
                "family_name": family,
                "given_name": given,
                "idtyp": "user",
                "ipaddr": "127.0.0.1",
                "name": user.display_name,
                "oid": user.oid,
                "scp": scp,
                "sub": _b64url(hashlib.sha256(f"{user.oid}:{GRAPH_APP_ID}".encode()).digest()),
                "tid": user.tenant.id,
                "unique_name": user.address,
                "upn": user.address,
                "uti": self.state.new_id()[:22],
                "ver": "1.0",
            }
        )

    def _id_token(
        self, app: RegisteredApp, user: User, scopes: tuple[str, ...], now: int, nonce: str | None
    ) -> str:
        claims: dict[str, Any] = {
            "aud": app.client_id,
            "iss": self.issuer(user.tenant.id),
            "iat": now,
            "nbf": now,
            "exp": now + ID_TOKEN_LIFETIME,
            "name": user.display_name,
            "oid": user.oid,
            "preferred_username": user.address,
            "sub": _b64url(hashlib.sha256(f"{user.oid}:{app.client_id}".encode()).digest()),
            "tid": user.tenant.id,
            "uti": self.state.new_id()[:22],
            "ver": "2.0",
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if "email" in scopes and user.mail:
            claims["email"] = user.mail
        return self.key.sign(claims)

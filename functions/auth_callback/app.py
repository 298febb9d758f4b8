"""The hosted connect page: the invite link lands here. HTML in, HTML out; a thin adapter over
`onboarding.connect.forms` (logic) and `onboarding.connect.pages` (rendering, security headers, CSRF)."""

from __future__ import annotations

import base64
import functools
import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from onboarding import deps as wiring
from onboarding.agents.models import AgentStatus
from onboarding.connect import admin_consent, pages
from onboarding.connect.forms import (
    AllowServerForm,
    ConnectService,
    ConnectView,
    CredentialsForm,
    SettingsForm,
)
from onboarding.core import aws
from onboarding.core.errors import (
    CsrfError,
    FormError,
    InviteError,
    InviteNotFoundError,
    InviteUsedError,
    NotNowError,
    UseMicrosoftSignInError,
)
from onboarding.core.observability import logger, metrics
from onboarding.exchange import Diagnosis
from onboarding.invites.tokens import looks_like_token
from onboarding.m365 import outcomes as m365_outcomes
from onboarding.m365.config import CALLBACK_PATH, M365Config
from onboarding.m365.routing import Router
from onboarding.settings import AuthCallbackSettings, auth_callback_settings

if TYPE_CHECKING:  # msal and requests load only on the two routes that sign in with Microsoft
    from onboarding.connect.microsoft import SignInService

auth_callback_settings()  # validated at cold start: a missing variable fails the init, naming it

app = APIGatewayHttpResolver()
MODERN_AUTH_REQUIRED = Diagnosis.MODERN_AUTH_REQUIRED.value  # an Exchange server that accepts only OAuth

# The page each link problem shows (the status comes from the error: `InviteError.status`).
LINK_PAGES: dict[str, tuple[str, str]] = {
    "link_not_found": (
        "This link is not valid",
        "We could not find an invite for this link. Check that you opened the whole link from the email.",
    ),
    "link_expired": ("This link has expired", "Invite links work for a limited time."),
    "link_used": (
        "This link was already used",
        "Your mailbox is already connected; there is nothing more to do here.",
    ),
    "link_revoked": (
        "This link is no longer valid",
        "A newer invite replaced it, or the invite was withdrawn. Use the link in the newest email.",
    ),
    "link_locked": (
        "This link is locked",
        "There were too many wrong passwords with this link, so we locked it to protect your account.",
    ),
}


@dataclass
class Deps:
    settings: AuthCallbackSettings
    service: ConnectService
    m365: M365Config

    @property
    def csrf_key(self) -> bytes:
        """The form-nonce signing key through Powertools Parameters, which caches it for its own max age
        (CSRF_KEY_MAX_AGE_SECONDS), so a rotated key is seen. Imported on the first page that needs the
        key, not at init (the utility imports boto3), and given our botocore client."""
        settings = self.settings
        return str(
            self.secrets_provider.get(settings.csrf_key_secret_arn, max_age=settings.csrf_key_max_age_seconds)
        ).encode()

    @functools.cached_property
    def secrets_provider(self) -> Any:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        return SecretsProvider(boto3_client=aws.client("secretsmanager"))

    @functools.cached_property
    def signin(self) -> SignInService:
        """ "Sign in with Microsoft", built on its first use (it brings msal and requests)."""
        from onboarding.connect.microsoft import SignInService
        from onboarding.m365.oauth import FlowStore, OAuthClient, client_secret_reader

        oauth = OAuthClient(self.m365, client_secret_reader(self.m365.client_secret_arn))
        flows = FlowStore(self.settings.agents_table_name, aws.client("dynamodb"))
        return SignInService(self.service, flows, lambda: oauth, self.m365)


@wiring.cached
def deps() -> Deps:
    settings = auth_callback_settings()
    m365 = settings.m365
    service = ConnectService(
        wiring.agent_repository(settings.agents_table_name),
        wiring.invite_repository(settings.agents_table_name),
        wiring.credential_store(settings.credentials_table_name, settings.credentials_key_arn),
        aws.LazyClient("stepfunctions"),
        state_machine_arn=settings.state_machine_arn,
        settings_timeout_seconds=settings.settings_timeout_seconds,
        router=Router(m365) if m365.enabled else None,
        remaining_seconds=lambda: app.lambda_context.get_remaining_time_in_millis() / 1000,
    )
    return Deps(settings=settings, service=service, m365=m365)


def _service() -> ConnectService:
    return deps().service


def _csrf_key() -> bytes:
    return deps().csrf_key


def _html(body: str, status: HTTPStatus = HTTPStatus.OK, **headers: str) -> Response[str]:
    return Response(
        status_code=status.value,
        content_type="text/html; charset=utf-8",
        body=body,
        headers={**pages.SECURITY_HEADERS, **_microsoft_form_action(), **headers},
    )


@functools.cache
def _form_action_csp(authority_host: str) -> str:
    """Browsers apply `form-action` to the redirect after a form post too: the "Sign in with Microsoft"
    form posts to us and is redirected to Microsoft's sign-in page, so that origin is allowed as well."""
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(authority_host))
    csp = pages.SECURITY_HEADERS["Content-Security-Policy"]
    return csp.replace("form-action 'self'", f"form-action 'self' {origin}")


def _microsoft_form_action() -> dict[str, str]:
    m365 = deps().m365
    if not m365.enabled:
        return {}
    return {"Content-Security-Policy": _form_action_csp(m365.authority_host)}


def _redirect(location: str) -> Response[str]:
    return Response(
        status_code=HTTPStatus.SEE_OTHER.value,
        body="",
        headers={**pages.SECURITY_HEADERS, "Location": location},
    )


def _base_url() -> str:
    """PUBLIC_BASE_URL, or the address this request came to (API Gateway's domain and stage)."""
    configured = deps().settings.public_base_url.rstrip("/")
    if configured:
        return configured
    context = app.current_event.request_context
    stage = "" if context.stage == "$default" else f"/{context.stage}"
    return f"https://{context.domain_name}{stage}"


def _context(view: ConnectView, **extra: Any) -> dict[str, Any]:
    return {
        "base_url": _base_url(),
        "token": view.token,
        "inviter": view.tenant_name,
        "email": view.email,
        "nonce": pages.csrf_nonce(_csrf_key(), view.token),
        "username": view.record.connection.conn_username,
        "server": view.record.connection.conn_server,
        **extra,
    }


# The forms have at most 7 fields of at most ~1 KB (password 1024, server 300): anything far bigger is not
# a person filling them in, and is refused before it is parsed.
MAX_FORM_BYTES = 8 * 1024
MAX_FORM_FIELDS = 16


class UnreadableFormError(Exception):
    """A body that is not a form we can read (too big, too many fields, not UTF-8): a 400, never a 500."""


def _form() -> dict[str, str]:
    event = app.current_event
    raw = event.body or ""
    if len(raw) > MAX_FORM_BYTES * 4 // 3 + 4:  # base64 of the limit, before decoding anything
        raise UnreadableFormError("too large")
    if not event.is_base64_encoded and "\ufffd" in raw:
        # A urlencoded body is ASCII (browsers percent-encode everything else): U+FFFD is where the gateway
        # put bytes that were not UTF-8. Read on, the password would be a mangled one.
        raise UnreadableFormError("not UTF-8")
    try:
        data = base64.b64decode(raw, validate=True) if event.is_base64_encoded else raw.encode("utf-8")
        if len(data) > MAX_FORM_BYTES:
            raise UnreadableFormError("too large")
        text = data.decode("utf-8")
        pairs = parse_qs(
            text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, encoding="utf-8", errors="strict"
        )
    except (ValueError, UnicodeError) as error:  # binascii.Error and too many fields are ValueErrors
        raise UnreadableFormError(type(error).__name__) from None
    return {key: values[0] for key, values in pairs.items()}


def _check_post(token: str, form: dict[str, str]) -> None:
    headers = app.current_event.headers
    pages.check_origin(_base_url(), headers.get("origin"), headers.get("sec-fetch-site"))
    pages.check_csrf_nonce(_csrf_key(), token, form.get("nonce"))


def _problems(error: ValidationError) -> str:
    names = {"email": "Email address", "password": "Password", "username": "Username", "server": "Server"}
    parts = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "form"
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{names.get(field, field)}: {message}")
    return "; ".join(parts)


def _status_url(token: str) -> str:
    return f"{_base_url()}/connect/{token}/status"


def _wants_json() -> bool:
    return "application/json" in (app.current_event.headers.get("accept") or "")


def _valid_token(token: str) -> str:
    if not looks_like_token(token):
        raise InviteNotFoundError("No such invite")
    return token


def _provider(view: ConnectView) -> str:
    """Which form the page opens with: the owner's choice, else Microsoft 365 when routing says so."""
    if not deps().m365.enabled:
        return "exchange"
    chosen = app.current_event.get_query_string_value("provider") or ""
    if chosen in {"m365", "exchange"}:
        return chosen
    return "m365" if _service().routes_to_microsoft_365(view.email) else "exchange"


def _login_suggestion(view: ConnectView) -> dict[str, Any]:
    """The Windows sign-in to offer after a refusal in doubt; with ?login=suggested (its button, without
    JavaScript) the form comes back with it as the username, the advanced settings open."""
    login = view.suggested_login
    if not login:
        return {}
    if app.current_event.get_query_string_value("login") == "suggested":
        return {"suggested_login": login, "login_applied": True, "username": login, "open_advanced": True}
    return {"suggested_login": login}


@app.get("/connect/<token>")
def show(token: str) -> Response[str]:
    view = _service().view(_valid_token(token))
    if not view.can_start:
        return _redirect(_status_url(token))
    if view.reconnecting:
        return _reconnect_page(view)
    # Back after a failed attempt: say what went wrong (and the tries left) above the form.
    failed = view.status is AgentStatus.FAILED
    page = pages.render(
        "connect/connect.html",
        **_context(
            view,
            problem=view.message if failed else None,
            tries_left=view.tries_left if failed else None,
            provider=_provider(view),
            m365_available=deps().m365.enabled,
            **(_login_suggestion(view) if failed else {}),
        ),
    )
    return _html(page)


def _reconnect_page(view: ConnectView, status: HTTPStatus = HTTPStatus.OK) -> Response[str]:
    """The connect page in reconnect mode: what happened in plain words, and only what is needed (the new
    password with the settings that worked kept, or Sign in with Microsoft again)."""
    failed = view.status is AgentStatus.FAILED
    m365 = deps().m365.enabled and view.is_m365
    page = pages.render(
        "connect/reconnect.html",
        **_context(
            view,
            reconnect=view.reconnect,
            problem=view.message if failed else None,
            tries_left=view.tries_left if failed else None,
            provider="m365" if m365 else "exchange",
            **(_login_suggestion(view) if failed else {}),
        ),
    )
    return _html(page, status)


# -- Sign in with Microsoft ------------------------------------------------------------------------
def _callback_url() -> str:
    return f"{_base_url()}{CALLBACK_PATH}"


def _signin_cookie(value: str, *, max_age: int) -> Cookie:
    """Binds the answer from Microsoft to this browser. Lax: sent on the top-level GET back from Microsoft."""
    from onboarding.connect.microsoft import COOKIE_NAME

    base = urlsplit(_base_url())
    return Cookie(
        COOKIE_NAME,
        value,
        path=f"{base.path.rstrip('/')}{CALLBACK_PATH}",
        secure=base.scheme == "https",
        http_only=True,
        max_age=max_age,
        same_site=SameSite.LAX_MODE,
    )


@app.post("/connect/<token>/microsoft")
def start_microsoft_sign_in(token: str) -> Response[str]:
    from onboarding.connect.microsoft import SignInFailed

    form = _form()
    _check_post(_valid_token(token), form)
    try:
        begun = deps().signin.begin(token, redirect_uri=_callback_url())
    except NotNowError:
        return _redirect(_status_url(token))
    except SignInFailed as failed:
        return _m365_outcome(failed.reason, failed.view)
    return Response(
        status_code=HTTPStatus.SEE_OTHER.value,
        body="",
        headers={**pages.SECURITY_HEADERS, "Location": begun.authorize_url},
        cookies=[_signin_cookie(begun.cookie_value, max_age=deps().m365.flow_ttl_seconds)],
    )


@app.get(CALLBACK_PATH)
def microsoft_callback() -> Response[str]:
    """Where Microsoft sends the browser back: redeem the code, then the status page follows the check."""
    from onboarding.connect.microsoft import COOKIE_NAME, SignInFailed

    params = {k: v for k, v in (app.current_event.query_string_parameters or {}).items() if v is not None}
    consent = admin_consent.answer(params, _csrf_key())
    if consent is not None:
        return _admin_consent_page(granted=consent.granted, verified=consent.verified)
    cookie = next(
        (
            c.partition("=")[2]
            for c in app.current_event.cookies
            if c.partition("=")[0].strip() == COOKIE_NAME
        ),
        None,
    )
    forget = _signin_cookie("", max_age=0)  # single use, like the state it binds
    try:
        view = deps().signin.finish(params, cookie)
    except SignInFailed as failed:
        response = _m365_outcome(failed.reason, failed.view)
    except NotNowError:
        token = (cookie or "").partition(".")[2]
        response = _redirect(_status_url(token))
    else:
        response = _redirect(_status_url(view.token))
    response.cookies.append(forget)
    return response


def _m365_outcome(
    reason: m365_outcomes.M365Reason | str, view: ConnectView | None, *, status_code: HTTPStatus | None = None
) -> Response[str]:
    outcome = m365_outcomes.outcome_for(str(reason))
    if outcome is None:
        raise ValueError(f"not a Microsoft 365 reason: {reason}")
    email = view.email if view else ""
    values = {
        "signed_in": (view.record.connection.m365_signed_in_as if view else None) or "another account",
        "invited": email or "the invited mailbox",
    }
    m365 = deps().m365
    context: dict[str, Any] = {
        "base_url": _base_url(),
        "reason": str(reason),
        "title": outcome.title,
        "message": outcome.message.format(**values),
        "next_step": outcome.next_step.format(**values),
        "for_it": outcome.for_it,
        "admin_consent_url": m365.admin_consent_url(
            email.rpartition("@")[2], _callback_url(), admin_consent.new_state(_csrf_key())
        )
        if outcome.admin_consent_link and email
        else None,
        "retry": outcome.retry and view is not None and view.can_start,
        "offer_exchange_form": outcome.offer_exchange_form,
        "token": view.token if view else None,
        "email": email,
        "nonce": pages.csrf_nonce(_csrf_key(), view.token) if view else "",
    }
    invalid = {m365_outcomes.M365Reason.SIGN_IN_INVALID, m365_outcomes.M365Reason.SIGN_IN_EXPIRED}
    code = status_code or (HTTPStatus.BAD_REQUEST if reason in invalid else HTTPStatus.OK)
    return _html(pages.render("connect/m365_outcome.html", **context), code)


def _admin_consent_page(*, granted: bool, verified: bool) -> Response[str]:
    if not verified:  # not the answer to a link we issued: say nothing about an approval
        heading = "We could not confirm this answer"
        message = (
            "This page was not opened from an approval link we sent. If you approved the app in Microsoft's "
            'admin centre, people in your organisation can connect their mailbox with "Sign in with Microsoft".'
        )
    elif granted:
        heading = "Thank you: the app is approved"
        message = (
            'People in your organisation can now connect their mailbox with "Sign in with Microsoft" from '
            "their invite link."
        )
    else:
        heading = "The app was not approved"
        message = "Nothing changed. The people who asked can tell you more about the app."
    page = pages.render(
        "connect/link_problem.html",
        heading=heading,
        message=message,
        base_url=_base_url(),
        ask_for_new_invite=False,
    )
    return _html(page)


@app.post("/connect/<token>")
def submit(token: str) -> Response[str]:
    form = _form()
    _check_post(_valid_token(token), form)
    try:
        parsed = CredentialsForm.model_validate(form)
        _service().submit_credentials(token, parsed)
    except ValidationError as error:
        return _form_again(token, _problems(error), typed=form, status=HTTPStatus.UNPROCESSABLE_ENTITY)
    except NotNowError:
        pass
    return _redirect(_status_url(token))


@app.post("/connect/<token>/settings")
def submit_settings(token: str) -> Response[str]:
    form = _form()
    _check_post(_valid_token(token), form)
    try:
        _service().submit_settings(token, SettingsForm.model_validate(form))
    except ValidationError as error:
        return _form_again(token, _problems(error), typed=form, status=HTTPStatus.UNPROCESSABLE_ENTITY)
    except NotNowError:
        pass
    return _redirect(_status_url(token))


@app.post("/connect/<token>/allow")
def allow_server(token: str) -> Response[str]:
    form = _form()
    _check_post(_valid_token(token), form)
    try:
        _service().allow_server(token, AllowServerForm.model_validate(form))
    except ValidationError as error:
        return _form_again(token, _problems(error), status=HTTPStatus.UNPROCESSABLE_ENTITY)
    except NotNowError:
        pass
    return _redirect(_status_url(token))


@app.get("/connect/<token>/report.txt")
def report(token: str) -> Response[str]:
    """The IT admin's trace as a text file the owner can forward (no secrets in it)."""
    view = _service().view(_valid_token(token), for_status=True)
    trace = view.trace
    body = trace.to_text() if trace else "No connection attempt has been recorded yet.\n"
    return Response(
        200,
        "text/plain; charset=utf-8",
        body,
        headers={
            **pages.SECURITY_HEADERS,
            "Content-Disposition": 'attachment; filename="mailbox-connection-report.txt"',
            "Cache-Control": "no-store",
        },
    )


@app.get("/connect/<token>/status")
def status(token: str) -> Response[str]:
    view = _service().view(_valid_token(token), for_status=True)
    settings = deps().settings
    if _wants_json():
        body = {"status": view.status.value, "reason": view.reason, "message": view.message}
        return Response(
            200, content_types.APPLICATION_JSON, json.dumps(body), headers=dict(pages.SECURITY_HEADERS)
        )
    if view.reconnecting and view.status is AgentStatus.FAILED and not view.is_m365:
        return _reconnect_page(view)  # what went wrong above the reconnect form, tries left
    if (
        view.status is AgentStatus.FAILED
        and view.is_m365
        and m365_outcomes.is_m365_reason(view.reason)
        and deps().m365.enabled
    ):
        return _m365_outcome(str(view.reason), view)
    titles = {
        AgentStatus.VERIFIED: "Mailbox connected",
        AgentStatus.NEEDS_SETTINGS: "More details needed",
        AgentStatus.FAILED: "Could not connect",
    }
    presented: dict[str, Any] = {
        "open_advanced": bool(view.record.connection.conn_server),
        **_login_suggestion(view),
    }
    page = pages.render(
        "connect/status.html",
        **_context(
            view,
            status=view.status.value,
            title=titles.get(view.status, "Checking your mailbox"),
            message=view.message,
            refresh=view.status is AgentStatus.CONNECTING,
            dashboard_url=settings.dashboard_url,
            can_retry=view.status is AgentStatus.FAILED,
            tries_left=view.tries_left,
            settings_problem=view.settings_problem,
            confirm_host=view.confirm_host,
            trace_text=view.trace.to_text()
            if view.trace and view.status is not AgentStatus.VERIFIED
            else None,
            # Microsoft 365 agents retry with Microsoft; so does a mailbox Exchange found to be in Exchange
            # Online (autodiscovery led to a server that accepts only OAuth, e.g. a moved hybrid mailbox).
            m365=deps().m365.enabled and (view.is_m365 or view.reason == MODERN_AUTH_REQUIRED),
            m365_available=deps().m365.enabled,
            provider="m365" if view.is_m365 else "exchange",
            **presented,
        ),
    )
    return _html(page)


@app.get("/connect-static/<name>")
def static(name: str) -> Response[str]:
    found = pages.static_file(name)
    if found is None:
        return _html("Not found", HTTPStatus.NOT_FOUND)
    data, content_type = found
    headers = {**pages.SECURITY_HEADERS, "Cache-Control": "public, max-age=300"}
    return Response(200, content_type, data.decode(), headers=headers)


def _form_again(
    token: str,
    problem: str,
    *,
    typed: dict[str, str] | None = None,
    status: HTTPStatus = HTTPStatus.BAD_REQUEST,
) -> Response[str]:
    """The form again with what is wrong above it: a value we cannot use (422) or a form that cannot apply
    (400). What the owner typed is kept (the password excepted: it is never sent back)."""
    view = _service().view(token, for_status=True)
    template = "connect/status.html" if view.status is AgentStatus.NEEDS_SETTINGS else "connect/connect.html"
    if view.reconnecting and template == "connect/connect.html":
        template = "connect/reconnect.html"
    kept = {k: v for k, v in (typed or {}).items() if k in ("username", "server")}
    context = _context(
        view,
        **kept,
        open_advanced=bool(kept.get("username") or kept.get("server")),
        problem=problem,
        status=view.status.value,
        message=problem,
        settings_problem=True,  # what they typed on the settings form is the problem here
        title="Check your details",
        provider="exchange",
        m365_available=deps().m365.enabled,
        reconnect=view.reconnect,
    )
    return _html(pages.render(template, **context), status)


@app.exception_handler(InviteError)
def _link_problem(error: InviteError) -> Response[str]:
    status_code = error.status
    heading, message = LINK_PAGES[error.page]
    if _wants_json():
        body = {"status": "link_invalid", "reason": type(error).__name__, "message": heading}
        return Response(
            status_code.value,
            content_types.APPLICATION_JSON,
            json.dumps(body),
            headers=dict(pages.SECURITY_HEADERS),
        )
    base_url = _base_url()
    return _html(
        pages.render(
            "connect/link_problem.html",
            heading=heading,
            message=message,
            base_url=base_url,
            # A used link means the mailbox is connected: nothing to ask for.
            ask_for_new_invite=not isinstance(error, InviteUsedError),
        ),
        status_code,
    )


@app.exception_handler(CsrfError)
def _csrf(error: CsrfError) -> Response[str]:
    logger.warning("Refused a form post", extra={"reason": str(error)})
    base_url = _base_url()
    page = pages.render(
        "connect/link_problem.html",
        heading="Please try again",
        message="This form was open for too long or came from another page. Open the link from the email again.",
        base_url=base_url,
    )
    return _html(page, error.status)


@app.exception_handler(UseMicrosoftSignInError)
def _use_microsoft(error: UseMicrosoftSignInError) -> Response[str]:
    """The password is dropped; the page offers "Sign in with Microsoft" with the reason beside it."""
    token = app.current_event.path_parameters.get("token", "")
    view = _service().view(token, for_status=True)
    context = _context(
        view, problem=error.message, provider="m365", m365_available=True, title="Use Sign in with Microsoft"
    )
    return _html(pages.render("connect/connect.html", **context), HTTPStatus.BAD_REQUEST)


@app.exception_handler(UnreadableFormError)
def _unreadable_form(error: UnreadableFormError) -> Response[str]:
    logger.warning("Refused a form post", extra={"reason": f"unreadable: {error}"})
    page = pages.render(
        "connect/link_problem.html",
        heading="We could not read this form",
        message="Open the link from the email again and fill in the form there.",
        base_url=_base_url(),
    )
    return _html(page, HTTPStatus.BAD_REQUEST)


@app.exception_handler(FormError)
def _form_error(error: FormError) -> Response[str]:
    token = app.current_event.path_parameters.get("token", "")
    return _form_again(token, error.message)


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True, log_event=False
)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

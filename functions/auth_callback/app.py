"""The hosted connect page: the invite link lands here. HTML in, HTML out; a thin adapter over
`onboarding.connect` (logic) and `onboarding.pages` (rendering, security headers, CSRF)."""

from __future__ import annotations

import base64
import functools
import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from onboarding import aws, pages
from onboarding import deps as wiring
from onboarding.connect import AllowServerForm, ConnectService, ConnectView, CredentialsForm, SettingsForm
from onboarding.errors import (
    CsrfError,
    FormError,
    InviteError,
    InviteNotFoundError,
    InviteUsedError,
    NotNowError,
)
from onboarding.invite_tokens import looks_like_token
from onboarding.models import AgentStatus
from onboarding.observability import logger, metrics
from onboarding.settings import AuthCallbackSettings, auth_callback_settings

auth_callback_settings()  # validated at cold start: a missing variable fails the init, naming it

app = APIGatewayHttpResolver()

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


@wiring.cached
def deps() -> Deps:
    settings = auth_callback_settings()
    service = ConnectService(
        wiring.agent_repository(settings.agents_table_name),
        wiring.invite_repository(settings.agents_table_name),
        wiring.credential_store(settings.credentials_table_name, settings.credentials_key_arn),
        aws.client("stepfunctions"),
        state_machine_arn=settings.state_machine_arn,
        settings_timeout_seconds=settings.settings_timeout_seconds,
    )
    return Deps(settings=settings, service=service)


def _service() -> ConnectService:
    return deps().service


def _csrf_key() -> bytes:
    return deps().csrf_key


def _html(body: str, status: HTTPStatus = HTTPStatus.OK, **headers: str) -> Response[str]:
    return Response(
        status_code=status.value,
        content_type="text/html; charset=utf-8",
        body=body,
        headers={**pages.SECURITY_HEADERS, **headers},
    )


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


@app.get("/connect/<token>")
def show(token: str) -> Response[str]:
    view = _service().view(_valid_token(token))
    if view.status is not AgentStatus.INVITED and view.status is not AgentStatus.FAILED:
        return _redirect(_status_url(token))
    # Back after a failed attempt: say what went wrong (and the tries left) above the form.
    failed = view.status is AgentStatus.FAILED
    page = pages.render(
        "connect/connect.html",
        **_context(
            view, problem=view.message if failed else None, tries_left=view.tries_left if failed else None
        ),
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
        return _form_again(token, _problems(error))
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
        return _form_again(token, _problems(error))
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
        return _form_again(token, _problems(error))
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
    titles = {
        AgentStatus.VERIFIED: "Mailbox connected",
        AgentStatus.NEEDS_SETTINGS: "More details needed",
        AgentStatus.FAILED: "Could not connect",
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
            open_advanced=bool(view.record.connection.conn_server),
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


def _form_again(token: str, problem: str) -> Response[str]:
    view = _service().view(token, for_status=True)
    template = "connect/status.html" if view.status is AgentStatus.NEEDS_SETTINGS else "connect/connect.html"
    context = _context(
        view,
        problem=problem,
        status=view.status.value,
        message=problem,
        settings_problem=True,  # what they typed on the settings form is the problem here
        title="Check your details",
    )
    return _html(pages.render(template, **context), HTTPStatus.BAD_REQUEST)


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

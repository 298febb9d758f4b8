"""Use cases of the hosted connect page: show the invite, take the credentials, resume the workflow.

A GET never changes anything (mail scanners open links before people do). A POST moves the agent with a
conditional write first, so of two racing submissions exactly one starts a workflow; then the password
goes to the credential store and the workflow starts with references only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from onboarding.agents.models import (
    DISCOVERY_TIMEOUT,
    INTERNAL_ERROR,
    SETTINGS_TIMEOUT,
    VERIFICATION_TIMEOUT,
    AgentRecord,
    AgentStatus,
    Attr,
)
from onboarding.agents.problems import ProblemKind, problem_for
from onboarding.agents.start_watch import MAX_FUNCTION_SECONDS, StartWatch, start_deadline
from onboarding.agents.store import AgentRepository
from onboarding.core.credentials import CredentialStore, Purpose
from onboarding.core.email_address import EmailAddress
from onboarding.core.errors import (
    ConcurrentModificationError,
    IllegalTransitionError,
    InviteRevokedError,
    NotNowError,
    UseMicrosoftSignInError,
    WrongMailboxError,
    error_code,
)
from onboarding.core.executions import execution_name, workflow_input
from onboarding.core.observability import logger, metrics
from onboarding.exchange.diagnoses import Diagnosis, message_for
from onboarding.exchange.trace import ExchangeTrace
from onboarding.invites import delivery as invites
from onboarding.invites.models import LinkPurpose
from onboarding.invites.store import InviteRepository
from onboarding.m365 import outcomes as m365_outcomes
from onboarding.m365.routing import Evidence, Router

EWS, GRAPH = "ews", "graph"  # how a mailbox is verified (Attr.VERIFY_METHOD, the workflow's `method`)
SIGN_IN = "signIn"  # the stored name of the public `Agent.sign_in` (password | microsoft)
_USERNAME = re.compile(r"^(?:[^\s@\\]+@[^\s@\\]+|[^\s@\\]+\\[^\s@\\]+)$")
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$")


def _username(value: str | None) -> str | None:
    if not value:
        return None
    if not _USERNAME.match(value):
        raise ValueError(r"enter it as user@domain.com or DOMAIN\user")
    return value


_LABEL = re.compile(r"^[A-Za-z0-9-]+$")


def dns_name_problem(host: str) -> str | None:
    """What keeps `host` from being a DNS name, in the owner's words; None for a DNS name or an IP literal.

    The limits resolvers apply (RFC 1035 2.3.4, RFC 1123 2.1): parts between dots (labels) of 1 to 63
    letters, digits or hyphens, not starting or ending with a hyphen; 253 characters in all."""
    if host.startswith("["):
        return None
    labels = host.split(".")
    if not all(labels):
        return "the name has an empty part between dots (two dots in a row, or a dot at the start or end)"
    if len(host) > 253:
        return f"a server name has at most 253 characters; this one has {len(host)}"
    longest = max(labels, key=len)
    if len(longest) > 63:
        return f"each part between dots has at most 63 characters; one has {len(longest)}"
    if not all(_LABEL.match(label) for label in labels):
        return "use only letters, digits, hyphens and dots, as in mail.example.com"
    if any(label.startswith("-") or label.endswith("-") for label in labels):
        return "a part between dots cannot start or end with a hyphen"
    return None


def _server(value: str | None) -> str | None:
    """Accept what people paste (`https://mail.example.com/owa/`) and keep the host name."""
    if not value:
        return None
    text = value.strip()
    host = urlsplit(text if "://" in text else f"https://{text}").hostname or ""
    if text.startswith("[") or (":" in host and not host.startswith("[")):
        host = f"[{host}]" if ":" in host else host
    if not host:
        raise ValueError("enter the server's name, e.g. mail.example.com")
    problem = dns_name_problem(host)
    if problem:
        raise ValueError(problem)
    if not _HOST.match(host):
        raise ValueError("enter the server's name, e.g. mail.example.com")
    return host.lower()


Username = Annotated[
    str | None, StringConstraints(strip_whitespace=True, max_length=256), AfterValidator(_username)
]
Server = Annotated[
    str | None, StringConstraints(strip_whitespace=True, max_length=300), AfterValidator(_server)
]
Password = Annotated[SecretStr, Field(min_length=1, max_length=1024)]


class _Form(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    nonce: str = Field(default="", max_length=200)


class CredentialsForm(_Form):
    email: EmailAddress
    password: Password
    username: Username = None
    server: Server = None


class SettingsForm(_Form):
    username: Username = None
    server: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300), AfterValidator(_server)
    ]
    password: Annotated[SecretStr | None, Field(max_length=1024)] = None


class AllowServerForm(_Form):
    """The owner allows the server in another domain that discovery named (Outlook's "Allow this website to
    configure server settings?")."""

    host: Annotated[
        str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=253)
    ]


EXTRA_MESSAGES = {
    SETTINGS_TIMEOUT: "We waited too long for the advanced settings. Enter your details again to retry.",
    DISCOVERY_TIMEOUT: "Finding your mail server took too long. Enter your details again, or add the server "
    "under advanced settings.",
    VERIFICATION_TIMEOUT: "Your mail server took too long to answer. Check that it is reachable from the "
    "internet (not only over VPN), then try again.",
    INTERNAL_ERROR: "Something went wrong on our side while checking your mailbox. Please try again.",
}


def _day(value: str | None) -> str | None:
    """An ISO time as the pages say a day: "3 March 2026"."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return f"{moment.day} {moment:%B %Y}"


def reason_message(code: str | None) -> str:
    if not code:
        return ""
    if code in EXTRA_MESSAGES:
        return EXTRA_MESSAGES[code]
    try:
        return message_for(Diagnosis(code))
    except ValueError:
        return EXTRA_MESSAGES[INTERNAL_ERROR]


# Where an owner may start an attempt: with an invite, before the mailbox connected (or after a failure) ...
INVITE_STARTS = frozenset({AgentStatus.INVITED, AgentStatus.FAILED})
# ... and with a reconnect link, a mailbox that connected once: broken, out of reach, still connected (a
# password about to expire), or after a failed reconnect.
RECONNECT_STARTS = frozenset(
    {AgentStatus.VERIFIED, AgentStatus.NEEDS_RECONNECT, AgentStatus.DISCONNECTED, AgentStatus.FAILED}
)


@dataclass(frozen=True)
class Reconnect:
    """What the connect page says in reconnect mode: what happened, in plain words."""

    heading: str
    lead: str
    for_it: str | None
    kept_server: str | None  # the settings that worked, kept (shown; the workflow uses them)
    kept_login: str | None


@dataclass(frozen=True)
class ConnectView:
    token: str
    token_hash: str  # the invite's key (SHA-256 of the token): kept on the agent for the workflow
    record: AgentRecord  # the agent with its invite and connection state (never the password)
    failed_passwords: int = 0  # wrong passwords counted against this invite (it locks at the maximum)
    purpose: LinkPurpose = LinkPurpose.INVITE  # an invite, or a reconnect link

    @property
    def reconnecting(self) -> bool:
        return self.purpose is not LinkPurpose.INVITE

    @property
    def can_start(self) -> bool:
        """May the owner start an attempt with this link now (the form is shown, a POST is taken)?"""
        return self.status in (RECONNECT_STARTS if self.reconnecting else INVITE_STARTS)

    @property
    def reconnect(self) -> Reconnect | None:
        """The reconnect mode's words (None for an invite)."""
        if not self.reconnecting:
            return None
        health, connection, email = self.record.health, self.record.connection, self.email
        problem = problem_for(health.check_problem, email=email)
        since = _day(health.problem_since or health.failing_since)
        kept_server = connection.conn_server or (
            urlsplit(connection.ews_url).hostname if connection.ews_url else None
        )
        kept_login = connection.conn_username or connection.exchange_username or None
        kept = {"kept_server": kept_server, "kept_login": kept_login}
        if self.status is AgentStatus.VERIFIED and self.purpose is LinkPurpose.PASSWORD_EXPIRY:
            expires = _day(health.password_expires_at)
            when = f"expires on {expires}" if expires else "expires soon"
            return Reconnect(
                "Keep your mailbox connected",
                f"The password of {email} {when}. After you change it, enter the new password here, so "
                "your mailbox stays connected. The settings that work now are kept.",
                None,
                **kept,
            )
        if self.status is AgentStatus.VERIFIED:
            return Reconnect(
                "Your mailbox is connected",
                f"{email} connects again. If you changed its password, enter the new one here.",
                None,
                **kept,
            )
        if self.is_m365:
            ask = "Sign in with Microsoft again to reconnect it: nothing else is needed."
        elif problem.kind is ProblemKind.UNREACHABLE:
            ask = (
                "Nothing needs to be entered if your password is unchanged: the mailbox connects again by "
                "itself once the server can be reached. If your password changed, enter the new one here."
            )
        else:
            ask = (
                "Enter your new password to reconnect it: the server and the other settings that worked are "
                "kept. We will not try the old password again."
            )
        opening = (
            f"Your mailbox {email} could not be reached since {since}: {problem.what}."
            if problem.kind is ProblemKind.UNREACHABLE and since
            else f"Your mailbox {email} stopped connecting{f' on {since}' if since else ''}: {problem.what}."
        )
        return Reconnect("Reconnect your mailbox", f"{opening} {ask}", problem.for_it, **kept)

    @property
    def tenant_name(self) -> str | None:
        """Who invites, as the dashboard named them (or their token's display-name claim); None: the pages
        say "the person who invited you" (never the tenant id, which is an identifier, not a name)."""
        return self.record.invite.tenant_name

    @property
    def status(self) -> AgentStatus:
        return self.record.agent.status

    @property
    def email(self) -> str:
        return self.record.agent.email

    @property
    def reason(self) -> str | None:
        return self.record.agent.status_reason or None

    @property
    def is_m365(self) -> bool:
        """Connected (or being connected) with "Sign in with Microsoft"."""
        return self.record.connection.verify_method == GRAPH

    @property
    def message(self) -> str:
        """What went wrong, naming only what the owner typed: the username only if they entered one."""
        if m365_outcomes.is_m365_reason(self.reason):
            text = m365_outcomes.message_for(
                str(self.reason), signed_in=self.record.connection.m365_signed_in_as, invited=self.email
            )
            return text or reason_message(INTERNAL_ERROR)
        typed = self.record.connection.conn_username
        if self.reason == Diagnosis.AUTH_FAILED.value:
            login = self.suggested_login
            if login and not typed:
                return (
                    f"The email server did not accept the password for {self.email} with your email address "
                    f"as the login. Either the password is wrong, or the server wants its Windows sign-in, "
                    f"{login}, instead of your email address."
                )
            if login:
                return (
                    f"The email server did not accept the password with {typed} as the username. Either the "
                    f"password is wrong, or the server wants its Windows sign-in, {login}, instead."
                )
            if not typed:
                return (
                    f"The email server did not accept the password for {self.email}. Check it and try again. "
                    "If your account uses two-step verification, create an app password and use it here."
                )
        return reason_message(self.reason)

    @property
    def suggested_login(self) -> str | None:
        """The Windows sign-in to offer (one button fills it in), only when the last verdict supports it:
        the email address was refused as the login and the server named its Windows domain
        (`invites.windows_login_in_doubt`). Nothing is guessed: a server that named no domain gets no
        suggestion."""
        if self.reason != Diagnosis.AUTH_FAILED.value:
            return None
        return invites.windows_login_in_doubt(self.record.connection.login_hint)

    @property
    def tries_left(self) -> int | None:
        """Wrong passwords this link still takes before it locks; None when the last try was not one."""
        if self.reason != Diagnosis.AUTH_FAILED.value:
            return None
        return max(0, invites.MAX_FAILED_ATTEMPTS - self.failed_passwords)

    @property
    def settings_problem(self) -> bool:
        """Settings were asked for again because the ones sent did not work (not the routine first ask)."""
        return self.status is AgentStatus.NEEDS_SETTINGS and self.reason not in (
            None,
            Diagnosis.AUTODISCOVER_FAILED.value,
        )

    @property
    def confirm_host(self) -> str | None:
        """The server in another domain waiting for the owner's permission, if any."""
        if self.status is AgentStatus.NEEDS_SETTINGS and self.reason == Diagnosis.CONFIRM_SERVER.value:
            return self.record.connection.confirm_host
        return None

    @property
    def trace(self) -> ExchangeTrace | None:
        """The IT admin's trace of the last attempt (secret-free)."""
        text = self.record.connection.exchange_trace
        try:
            return ExchangeTrace.model_validate_json(text) if text else None
        except ValueError:
            return None


class ConnectService:
    def __init__(
        self,
        repo: AgentRepository,
        invites: InviteRepository,
        credentials: CredentialStore,
        sfn: Any,
        *,
        state_machine_arn: str,
        settings_timeout_seconds: int,
        router: Router | None = None,
        remaining_seconds: Callable[[], float] = lambda: MAX_FUNCTION_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.router = router  # decides "Microsoft 365 or Exchange" before a password is taken
        self.repo = repo
        self.invites = invites
        self.credentials = credentials
        self.sfn = sfn
        self.state_machine_arn = state_machine_arn
        self.settings_timeout_seconds = settings_timeout_seconds
        # How long this function may still run (Lambda's remaining time): bounds an attempt's start.
        self.remaining_seconds = remaining_seconds
        self.clock = clock

    @property
    def watch(self) -> StartWatch:
        """Settles attempts whose starter died between `connecting` and the workflow start."""
        return StartWatch(self.repo, self.credentials, self.sfn, self.state_machine_arn, self.clock)

    # -- reads (GET) -------------------------------------------------------------------------
    def view(self, token: str, *, for_status: bool = False) -> ConnectView:
        """The invite and its agent. Raises the invite errors (-> friendly 404/410 pages). No writes."""
        invite, _ = invites.resolve_invite(self.repo, self.invites, token, allow_used=for_status)
        record = self.repo.get_record(invite.tenant_id, invite.agent_id)
        if record is None:
            raise InviteRevokedError("The agent was removed")
        record = self.watch.settle(record)
        return ConnectView(
            token=token,
            token_hash=invite.token_hash,
            record=record,
            failed_passwords=invite.failed_attempts,
            purpose=invite.purpose,
        )

    # -- writes (POST) -----------------------------------------------------------------------
    def submit_credentials(self, token: str, form: CredentialsForm) -> ConnectView:
        view = self.view(token)
        if form.email.lower() != view.email.lower():
            raise WrongMailboxError(f"This invite is for {view.email}. Sign in with that mailbox.")
        if not view.can_start:
            raise NotNowError(f"The mailbox is {view.status.value}")
        self._refuse_password_for_microsoft_365(view, form)
        manual = {Attr.USERNAME: form.username, Attr.SERVER: form.server}
        attempt = self._begin_attempt(
            view,
            EWS,
            set_attributes={k: v for k, v in manual.items() if v},
            # A reconnect keeps the settings that worked unless the owner typed new ones.
            remove_attributes=() if view.reconnecting else tuple(k for k, v in manual.items() if not v),
        )
        self._start(view, attempt, form.password)
        return self.view(token)

    def _begin_attempt(
        self,
        view: ConnectView,
        method: str,
        *,
        set_attributes: Mapping[str, Any],
        remove_attributes: tuple[str, ...],
    ) -> int:
        """Move the agent to `connecting` for its next attempt, recording the attempt, how it is verified
        and when its start must be done by."""
        attempt = view.record.connection.connect_attempt + 1
        self._to_connecting(
            view,
            "Another sign-in for this mailbox is already being checked",
            set_attributes={
                Attr.ATTEMPT: attempt,
                Attr.ROUNDS: 0,
                Attr.INVITE_HASH: view.token_hash,
                Attr.VERIFY_METHOD: method,
                SIGN_IN: "microsoft" if method == GRAPH else "password",  # the dashboard's word for it
                Attr.START_DEADLINE: start_deadline(self.clock(), self.remaining_seconds()),
                **set_attributes,
            },
            remove_attributes=(Attr.M365_SIGNED_IN_AS, *remove_attributes),
        )
        return attempt

    def routes_to_microsoft_365(self, email: str, server: str | None = None) -> bool:
        """Should this mailbox get "Sign in with Microsoft"? Bounded, no credentials; doubt -> False."""
        return self.router is not None and self.router.decide(email, server).is_m365

    def _refuse_password_for_microsoft_365(self, view: ConnectView, form: CredentialsForm) -> None:
        """A Microsoft 365 mailbox is never sent a password: refuse before storing or sending it.

        An owner who names an on-premises server keeps the Exchange path (hybrid organisations whose
        mailbox still lives on their own Exchange); an Exchange Online server never does."""
        if self.router is None:
            return
        decision = self.router.decide(view.email, form.server)
        if decision.is_m365 and (decision.evidence is Evidence.EXCHANGE_ONLINE_SERVER or not form.server):
            logger.info(
                "Password refused for a Microsoft 365 mailbox",
                extra={"agent_id": view.record.agent.agent_id, "evidence": decision.evidence.value},
            )
            raise UseMicrosoftSignInError(
                f'{view.email} is a Microsoft 365 mailbox: use "Sign in with Microsoft" below. '
                "Your password was not stored or sent anywhere."
            )

    def connect_with_microsoft(self, view: ConnectView, refresh_token: SecretStr) -> None:
        """After "Sign in with Microsoft": `connecting`, the refresh token stored, the workflow started."""
        if not view.can_start:
            raise NotNowError(f"The mailbox is {view.status.value}")
        attempt = self._begin_attempt(
            view, GRAPH, set_attributes={}, remove_attributes=(Attr.USERNAME, Attr.SERVER)
        )
        self._start(view, attempt, refresh_token, purpose="refresh_token", method=GRAPH)

    def submit_settings(self, token: str, form: SettingsForm) -> ConnectView:
        view = self.view(token)
        if view.status is not AgentStatus.NEEDS_SETTINGS:
            raise NotNowError(f"The mailbox is {view.status.value}")
        task_token = view.record.connection.task_token
        tenant_id, agent_id = view.record.agent.tenant_id, view.record.agent.agent_id
        self._to_connecting(
            view,
            "These settings were already sent",
            set_attributes={
                Attr.SERVER: form.server,
                **({Attr.USERNAME: form.username} if form.username else {}),
            },
            remove_attributes=(Attr.START_DEADLINE, *(() if form.username else (Attr.USERNAME,))),
        )
        try:
            if form.password is not None and form.password.get_secret_value():
                self.credentials.put(tenant_id, agent_id, form.password)
        except Exception:  # any failure at all: never `connecting` with nothing to move it on
            logger.exception("Could not store the new password", extra={"agent_id": agent_id})
            self._abandon(tenant_id, agent_id, INTERNAL_ERROR)
            return self.view(token)
        self._hand_over(task_token, tenant_id, agent_id)
        return self.view(token)

    def allow_server(self, token: str, form: AllowServerForm) -> ConnectView:
        """The owner allows the server discovery named: the waiting workflow discovers again, allowed to send
        the password there."""
        view = self.view(token)
        if view.confirm_host is None or form.host != view.confirm_host:
            raise NotNowError("No server waits for permission")
        task_token = view.record.connection.task_token
        tenant_id, agent_id = view.record.agent.tenant_id, view.record.agent.agent_id
        self._to_connecting(
            view,
            "This answer was already sent",
            set_attributes={Attr.CONFIRMED_HOST: form.host},
            remove_attributes=(Attr.START_DEADLINE, Attr.CONFIRM_HOST, Attr.SERVER),
        )
        self._hand_over(task_token, tenant_id, agent_id)
        return self.view(token)

    def _hand_over(self, task_token: str | None, tenant_id: str, agent_id: str) -> None:
        """Resume the waiting workflow with the owner's answer. When none waits any more (the wait timed out,
        the execution ended) or the answer cannot be handed over, the attempt ends here: the agent `failed`
        (the page says why and offers the form again), its secrets deleted, since nothing will read them.
        So no path leaves the agent `connecting` with nothing to move it on."""
        try:
            resumed = self._resume(task_token, agent_id)
        except Exception:  # timeouts, endpoint errors, bugs: the workflow was not (surely) resumed
            logger.exception("Could not resume the workflow", extra={"agent_id": agent_id})
            self._abandon(tenant_id, agent_id, INTERNAL_ERROR)
            return
        if not resumed:
            self._abandon(tenant_id, agent_id, SETTINGS_TIMEOUT)

    def _to_connecting(
        self,
        view: ConnectView,
        refusal: str,
        *,
        set_attributes: Mapping[str, Any],
        remove_attributes: tuple[str, ...],
    ) -> None:
        """Move the agent as viewed to `connecting`, its task token taken: a conditional write, so of two
        racing submissions one wins and the other gets NotNowError(refusal)."""
        agent = view.record.agent
        try:
            self.repo.transition(
                agent.tenant_id,
                agent.agent_id,
                AgentStatus.CONNECTING,
                expected_version=agent.version,
                set_attributes=set_attributes,
                remove_attributes=(Attr.TASK_TOKEN, *remove_attributes),
            )
        except (ConcurrentModificationError, IllegalTransitionError) as error:
            raise NotNowError(refusal) from error

    def _resume(self, task_token: str | None, agent_id: str) -> bool:
        """Hand the settings to the waiting workflow; False when none waits for them."""
        if not task_token:
            logger.warning("No workflow waits for these settings", extra={"agent_id": agent_id})
            return False
        try:
            self.sfn.send_task_success(taskToken=task_token, output=json.dumps({"settings": "received"}))
        except ClientError as error:
            logger.warning(
                "Could not resume the workflow", extra={"agent_id": agent_id, "error": error_code(error)}
            )
            return False
        return True

    def _abandon(self, tenant_id: str, agent_id: str, reason: str) -> None:
        """End a connection that cannot go on: the agent `failed` (the page says why and offers the form
        again), its secrets deleted. Each part is tried even if the other fails."""
        try:
            self.repo.transition(
                tenant_id,
                agent_id,
                AgentStatus.FAILED,
                reason=reason,
                remove_attributes=(Attr.TASK_TOKEN, Attr.START_DEADLINE),
            )
        except Exception:
            logger.exception(
                "Could not mark the agent failed", extra={"agent_id": agent_id, "reason": reason}
            )
        try:
            self.credentials.delete(tenant_id, agent_id)
        except Exception:
            logger.exception("Could not delete the secrets of a failed start", extra={"agent_id": agent_id})

    def _start(
        self,
        view: ConnectView,
        attempt: int,
        secret: SecretStr,
        *,
        purpose: Purpose = "password",
        method: str = EWS,
    ) -> None:
        tenant_id, agent_id = view.record.agent.tenant_id, view.record.agent.agent_id
        try:
            self.credentials.put(tenant_id, agent_id, secret, purpose=purpose)
            self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=execution_name(agent_id, attempt),
                input=workflow_input(
                    tenant_id,
                    agent_id,
                    attempt,
                    settings_timeout_seconds=self.settings_timeout_seconds,
                    method=method,
                ),
            )
        except Exception as error:  # any failure at all (timeouts, endpoint errors, bugs): no half-done start
            extra = {
                "agent_id": agent_id,
                "error": error_code(error) if isinstance(error, ClientError) else "",
            }
            logger.exception("Could not start the verification", extra=extra)
            self._abandon(tenant_id, agent_id, INTERNAL_ERROR)
            return
        try:
            self.watch.started(tenant_id, agent_id, attempt)
        except Exception:  # the workflow runs; a reader past the deadline finds it and clears the deadline
            logger.exception("Could not clear the start deadline", extra={"agent_id": agent_id})
        metrics.add_metric(name="ConnectionStarted", unit="Count", value=1)
        logger.info("Verification started", extra={"agent_id": agent_id, "attempt": attempt})

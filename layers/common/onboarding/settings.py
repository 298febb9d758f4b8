"""Configuration of each function: one pydantic model per function, read from the environment once, at cold
start (each handler module calls its loader at import), and validated there.

Each field is the environment variable of the same name in upper case. No field has a default: the values
(defaults included) live in one place, the function's `Environment` in template.yaml, and the local stack
and the tests give each function that environment read from the template. A function deployed without a
variable fails its init with `ConfigurationError` naming the variable, not mid-request with a 500.

Plain `BaseModel`s read from `os.environ`: pydantic-settings measured 0.16x slower at cold start.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from email.utils import formataddr
from typing import TYPE_CHECKING, Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from onboarding.exchange import ExchangeConfig
    from onboarding.health.models import HealthPolicy
    from onboarding.m365.config import M365Config

_HTTP_URL = r"^https?://[^\s]+$"
_HTTPS_URL = r"^https://[^\s]+$"
# HTTPS, or plain HTTP on loopback only (the local stack serves the simulator's sign-in pages there); empty.
_SIGN_IN_HOST = r"^(https://[^\s]+|http://(127\.0\.0\.1|localhost)(:\d+)?(/[^\s]*)?)?$"
_OPTIONAL_HTTP_URL = r"^(https?://[^\s]+)?$"
TableName = Annotated[str, StringConstraints(min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_.-]+$")]
StateMachineArn = Annotated[
    str, StringConstraints(pattern=r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:")
]
# The alias new attempts start (SAM's AutoPublishAlias): an execution runs the version the alias points at.
StateMachineAliasArn = Annotated[
    str,
    StringConstraints(
        pattern=r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]+:[A-Za-z_][A-Za-z0-9_-]*$"
    ),
]
KmsKeyArn = Annotated[
    str, StringConstraints(pattern=r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
]


class ConfigurationError(RuntimeError):
    """The function's environment is missing a variable or has a malformed one."""


class _FunctionSettings(BaseModel):
    """What every function's settings share."""

    # defer_build: this module holds every function's settings; each function builds only its own (0.05x).
    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True, defer_build=True)

    agents_table_name: TableName = Field(description="DynamoDB table holding agents and invites")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        names = {name: name.upper() for name in cls.model_fields}
        try:
            return cls.model_validate({name: env[var] for name, var in names.items() if var in env})
        except ValidationError as error:
            problems = []
            for item in error.errors():
                field = str(item["loc"][0]) if item["loc"] else ""
                variable = names.get(field, field.upper())
                message = (
                    "not set" if item["type"] == "missing" else item["msg"].removeprefix("Value error, ")
                )
                problems.append(f"{variable}: {message}")
            raise ConfigurationError(f"{cls.__name__}: " + "; ".join(problems)) from None


class _Microsoft365Settings(_FunctionSettings):
    """What "Sign in with Microsoft" needs in the connect page and in the verification. The local stack points
    the hosts and the CA bundle at its simulators; an empty M365_CLIENT_ID offers the Exchange form only."""

    m365_client_id: str = Field(description="The Entra app's client id; empty: not set up")
    m365_client_secret_arn: str = Field(
        pattern=r"^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[^\s]+)?$",
        description="Secrets Manager secret with the app's client secret; empty: none",
    )
    m365_tenant: str = Field(min_length=1, description="organizations, or the single tenant's id")
    m365_authority_host: str = Field(pattern=_HTTPS_URL, description="Microsoft's identity platform")
    m365_ca_bundle: str = Field(description="Extra CA bundle to trust (local stack only); empty: none")
    m365_token_timeout: float = Field(gt=0, description="Seconds per call to the token endpoint")

    @field_validator("m365_client_secret_arn")
    @classmethod
    def _secret_with_the_client_id(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("m365_client_id") and not value:
            raise ValueError("empty while M365_CLIENT_ID is set")
        return value

    def _m365(self, **for_this_function: Any) -> M365Config:
        from onboarding.m365.config import M365Config  # only these two functions load the Microsoft code

        return M365Config(
            client_id=self.m365_client_id,
            client_secret_arn=self.m365_client_secret_arn,
            tenant=self.m365_tenant,
            authority_host=self.m365_authority_host,
            ca_bundle=self.m365_ca_bundle or None,
            token_timeout=self.m365_token_timeout,
            **for_this_function,
        )


class AgentsApiSettings(_FunctionSettings):
    """The dashboard API function (`functions/add_agent`)."""

    checks_queue_url: str = Field(pattern=_HTTP_URL, description="POST /agents/{agentId}/check queues here")
    manual_check_interval_seconds: int = Field(ge=10, le=3600, description="POST /check per agent at most")

    tenant_claim: str = Field(min_length=1, description="JWT claim naming the tenant")
    tenant_name_claim: str = Field(min_length=1, description="JWT claim with the tenant's display name")
    default_page_size: int = Field(ge=1, le=100)
    credentials_table_name: TableName = Field(description="Mailbox secrets: this function only deletes")
    state_machine_arn: StateMachineArn = Field(description="Verification workflow (to stop it)")
    reconnect_email_interval_hours: int = Field(
        ge=1, le=720, description="At most one reconnect email per agent in this many hours"
    )


class _MailboxReaderSettings(_Microsoft365Settings):
    """What the two functions that sign in to mailboxes share (the workflow's task and the checker): the
    sealed secrets, the Exchange SSRF guard's local exceptions, Microsoft Graph."""

    credentials_table_name: TableName
    exchange_allow_networks: str = Field(description="CIDRs the SSRF guard lets through (local stack only)")
    exchange_ca_bundle: str = Field(description="Extra CA bundle to trust (local stack only); empty: none")
    graph_base_url: str = Field(pattern=_HTTPS_URL, description="Microsoft Graph")
    graph_timeout: float = Field(gt=0, description="Seconds per Graph call")
    graph_budget: float = Field(gt=0, description="Seconds for the whole Graph check, retries included")

    def _exchange(self, discovery_timeout: float, verify_timeout: float) -> ExchangeConfig:
        """The typed value the Exchange code takes (it never reads the environment itself)."""
        from onboarding.exchange import ExchangeConfig  # loaded by the functions that sign in, only

        return ExchangeConfig(
            discovery_timeout=discovery_timeout,
            verify_timeout=verify_timeout,
            allow_networks=self.exchange_allow_networks,  # split into a tuple by its validator
            ca_bundle=self.exchange_ca_bundle or None,
        )

    @property
    def m365(self) -> M365Config:
        """The typed value the Microsoft 365 code takes (it never reads the environment itself)."""
        return self._m365(
            graph_base_url=self.graph_base_url,
            graph_timeout=self.graph_timeout,
            graph_budget=self.graph_budget,
        )


class VerifyMailboxSettings(_MailboxReaderSettings):
    """The workflow's task function (`functions/verify_mailbox`)."""

    credentials_key_arn: KmsKeyArn = Field(description="KMS key that unwraps the secrets' data keys")
    max_settings_rounds: int = Field(ge=1, le=10)
    # Whole seconds from 1 to 50: each task's TimeoutSeconds (60) must outlast its budget. The template's
    # parameters carry the same bounds (tests/test_template_parameters.py).
    exchange_discovery_timeout: float = Field(ge=1, le=50)
    exchange_verify_timeout: float = Field(ge=1, le=50)
    # ge=1: the template keeps 15 (MinValue) on AWS; the local stack goes lower (CHECK_INTERVAL)
    check_interval_minutes: int = Field(ge=1, le=1440, description="Between two health checks of a mailbox")

    @property
    def exchange(self) -> ExchangeConfig:
        return self._exchange(self.exchange_discovery_timeout, self.exchange_verify_timeout)


class _HealthSettings(_FunctionSettings):
    """What the health checks' rules need (onboarding.health.models.HealthPolicy), in the three functions
    that apply them (the dispatcher, the checker and the dashboard API's POST /agents/{agentId}/check)."""

    checks_queue_url: str = Field(pattern=_HTTP_URL, description="The checks queue (SQS)")
    # ge=1: the template keeps 15 (MinValue) on AWS; the local stack goes lower (CHECK_INTERVAL)
    check_interval_minutes: int = Field(ge=1, le=1440, description="Between two checks of a mailbox")
    lockout_window_minutes: int = Field(ge=5, le=1440, description="A locked account is not tried before")
    disconnect_after_hours: int = Field(
        ge=1, le=720, description="Transient failures this long: disconnected"
    )
    expiry_warning_days: int = Field(ge=1, le=60, description="Warn this long before the password expires")
    reconnect_email_interval_hours: int = Field(ge=1, le=720, description="At most one reconnect email per")
    reconnect_max_emails: int = Field(ge=1, le=10, description="Reconnect emails per problem (+ reminders)")
    manual_check_interval_seconds: int = Field(ge=10, le=3600, description="POST /check per agent at most")

    @property
    def health(self) -> HealthPolicy:
        from datetime import timedelta

        from onboarding.health.models import HealthPolicy
        from onboarding.invites.reconnect import ReconnectPolicy

        return HealthPolicy(
            interval=timedelta(minutes=self.check_interval_minutes),
            lockout_window=timedelta(minutes=self.lockout_window_minutes),
            disconnect_after=timedelta(hours=self.disconnect_after_hours),
            expiry_warning=timedelta(days=self.expiry_warning_days),
            manual_min_interval=timedelta(seconds=self.manual_check_interval_seconds),
            reconnect=ReconnectPolicy(
                min_interval=timedelta(hours=self.reconnect_email_interval_hours),
                max_emails=self.reconnect_max_emails,
            ),
        )


class DispatchChecksSettings(_HealthSettings):
    """The scheduled dispatcher of due checks (`functions/dispatch_checks`)."""


class CheckMailboxSettings(_HealthSettings, _MailboxReaderSettings):
    """The checker (`functions/check_mailbox`, SQS): signs in to Exchange or Microsoft 365 once per check."""

    credentials_key_arn: KmsKeyArn = Field(description="KMS key that unwraps (and reseals) the secrets")
    exchange_check_timeout: float = Field(ge=1, le=50, description="Seconds for one Exchange check")

    @property
    def exchange(self) -> ExchangeConfig:
        return self._exchange(self.exchange_check_timeout, self.exchange_check_timeout)


class AuthCallbackSettings(_Microsoft365Settings):
    """The hosted connect page (`functions/auth_callback`)."""

    credentials_table_name: TableName
    credentials_key_arn: KmsKeyArn = Field(description="KMS key that wraps the secrets' data keys")
    state_machine_arn: StateMachineAliasArn = Field(
        description="The verification workflow's alias (not a version)"
    )
    public_base_url: str = Field(
        pattern=_OPTIONAL_HTTP_URL, description="Connect pages' base URL; empty: as requested"
    )
    dashboard_url: str = Field(pattern=_HTTP_URL, description="Where the owner goes after success")
    csrf_key_secret_arn: str = Field(
        pattern=r"^arn:aws[a-z-]*:secretsmanager:", description="Form-nonce signing key"
    )
    csrf_key_max_age_seconds: int = Field(ge=0, le=86400, description="How long the key is cached")
    settings_timeout_seconds: int = Field(ge=60, le=31_536_000)  # a Standard workflow lives a year at most
    m365_flow_ttl_seconds: int = Field(ge=60, le=3600, description="How long a started sign-in may take")
    m365_sign_in_host: str = Field(
        pattern=_SIGN_IN_HOST,
        description="Where owners' browsers sign in (admin-consent link); empty: M365_AUTHORITY_HOST",
    )

    @property
    def m365(self) -> M365Config:
        """The typed value the Microsoft 365 code takes (it never reads the environment itself)."""
        return self._m365(flow_ttl_seconds=self.m365_flow_ttl_seconds, sign_in_host=self.m365_sign_in_host)


def _address_only(value: str) -> str:
    if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", value):
        raise ValueError(
            "must be the sender's address only, e.g. invites@example.com; its display name is "
            "INVITE_SENDER_NAME (template parameters InviteSender and InviteSenderName)"
        )
    return value


class SendInviteSettings(_FunctionSettings):
    """The invite sender (`functions/send_invite/app.py`, DynamoDB stream consumer)."""

    invite_sender: Annotated[str, AfterValidator(_address_only)] = Field(
        description="Verified SES address invites come from"
    )
    invite_sender_name: str = Field(pattern=r"^[^<>\"\r\n]{1,64}$", description="Its display name")
    public_base_url: str = Field(
        pattern=_OPTIONAL_HTTP_URL, description="Connect pages' base URL; empty: the API's"
    )
    api_base_url: str = Field(pattern=_OPTIONAL_HTTP_URL, description="The HTTP API's own URL")
    invite_valid_days: int = Field(ge=1, le=30, description="How long an invite link works")
    ses_configuration_set: str = Field(description="Publishes bounces and complaints; empty: none")
    invite_max_send_attempts: int = Field(ge=1, le=20, description="Sends before invite_failed")

    @property
    def sender(self) -> str:
        """The From header: `Name <address>`."""
        return formataddr((self.invite_sender_name, self.invite_sender))

    @property
    def link_base_url(self) -> str:
        return self.public_base_url or self.api_base_url

    @model_validator(mode="after")
    def _has_link_base(self) -> Self:
        if not self.link_base_url:
            raise ValueError("PUBLIC_BASE_URL or API_BASE_URL must be set: invite links need a base URL")
        return self


class InviteEventsSettings(_FunctionSettings):
    """The bounce and complaint handler (`functions/send_invite/bounces.py`)."""


class WorkflowEventsSettings(_FunctionSettings):
    """Settles the agents of dead workflows (`functions/workflow_events`, EventBridge)."""

    credentials_table_name: TableName = Field(description="Mailbox secrets: this function only deletes")


class PublishStatusSettings(_FunctionSettings):
    """Publishes every change of an agent's status to the stack's bus (`functions/publish_status`, stream)."""

    event_bus_name: str = Field(
        pattern=r"^[/.\-_A-Za-z0-9]{1,256}$", description="The EventBridge bus of the stack (its name)"
    )


# One cached loader per function: each handler module calls its own at import (cold start).
@functools.cache
def agents_api_settings() -> AgentsApiSettings:
    return AgentsApiSettings.from_environ()


@functools.cache
def verify_mailbox_settings() -> VerifyMailboxSettings:
    return VerifyMailboxSettings.from_environ()


@functools.cache
def auth_callback_settings() -> AuthCallbackSettings:
    return AuthCallbackSettings.from_environ()


@functools.cache
def send_invite_settings() -> SendInviteSettings:
    return SendInviteSettings.from_environ()


@functools.cache
def invite_events_settings() -> InviteEventsSettings:
    return InviteEventsSettings.from_environ()


@functools.cache
def workflow_events_settings() -> WorkflowEventsSettings:
    return WorkflowEventsSettings.from_environ()


@functools.cache
def publish_status_settings() -> PublishStatusSettings:
    return PublishStatusSettings.from_environ()


@functools.cache
def dispatch_checks_settings() -> DispatchChecksSettings:
    return DispatchChecksSettings.from_environ()


@functools.cache
def check_mailbox_settings() -> CheckMailboxSettings:
    return CheckMailboxSettings.from_environ()

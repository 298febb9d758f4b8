"""Configuration read from the environment once per cold start, validated by pydantic.

A missing or malformed variable fails the function at init with the variable's name, not mid-request.
"""

from __future__ import annotations

import functools

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class _FunctionSettings(BaseSettings):
    """What every function's settings share: read from the environment, names case-insensitive."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    agents_table_name: str = Field(min_length=3, description="DynamoDB table holding agents and invites")


class AgentsApiSettings(_FunctionSettings):
    """Settings of the dashboard API function (`functions/add_agent`)."""

    tenant_claim: str = Field(default="custom:tenant_id", description="JWT claim naming the tenant")
    default_page_size: int = Field(default=25, ge=1, le=100)
    tenant_name_claim: str = Field(
        default="custom:tenant_name", description="JWT claim with the tenant's display name (invites)"
    )
    credentials_prefix: str = Field(min_length=1, description="Secrets Manager name prefix of passwords")
    state_machine_arn: str = Field(pattern=r"^arn:aws[a-z-]*:states:", description="Verification workflow")


@functools.cache
def agents_api_settings() -> AgentsApiSettings:
    return AgentsApiSettings()


class VerifyMailboxSettings(_FunctionSettings):
    """Settings of the workflow's task function (`functions/verify_mailbox`)."""

    credentials_prefix: str = Field(min_length=1, description="Secrets Manager name prefix of passwords")
    credentials_kms_key_id: str | None = Field(default=None, description="KMS key encrypting the secrets")
    max_settings_rounds: int = Field(default=3, ge=1, le=10)


@functools.cache
def verify_mailbox_settings() -> VerifyMailboxSettings:
    return VerifyMailboxSettings()


class AuthCallbackSettings(_FunctionSettings):
    """Settings of the hosted connect page (`functions/auth_callback`)."""

    credentials_prefix: str = Field(min_length=1)
    credentials_kms_key_id: str | None = None
    state_machine_arn: str = Field(pattern=r"^arn:aws[a-z-]*:states:")
    public_base_url: str = Field(
        default="",
        pattern=r"^(https?://.*)?$",
        description="Base URL of the connect pages; empty: as requested",
    )
    dashboard_url: str = Field(pattern=r"^https?://", description="Where the owner goes after success")
    csrf_key_secret_arn: str = Field(min_length=1, description="Secret holding the form-nonce signing key")
    settings_timeout_seconds: int = Field(default=86400, ge=60)


@functools.cache
def auth_callback_settings() -> AuthCallbackSettings:
    return AuthCallbackSettings()


class SendInviteSettings(_FunctionSettings):
    """Settings of the invite sender (`functions/send_invite/app.py`, DynamoDB stream consumer)."""

    invite_sender: str = Field(
        pattern=r"^([^<>]*<)?[^@\s<>]+@[^@\s<>]+(>)?$",
        description="Verified SES identity the invites come from (`Name <address>` or an address)",
    )
    public_base_url: str = Field(
        default="", pattern=r"^(https?://.*)?$", description="Base URL of the connect pages; empty: the API's"
    )
    api_base_url: str = Field(default="", pattern=r"^(https?://.*)?$", description="The HTTP API's own URL")
    invite_valid_days: int = Field(default=7, ge=1, le=30, description="How long an invite link works")
    ses_configuration_set: str | None = Field(default=None, description="Publishes bounces and complaints")
    invite_max_send_attempts: int = Field(default=4, ge=1, le=20, description="Sends before invite_failed")

    @property
    def link_base_url(self) -> str:
        base = self.public_base_url or self.api_base_url
        if not base:
            raise ValueError("Set PUBLIC_BASE_URL or API_BASE_URL: invite links need a base URL")
        return base


@functools.cache
def send_invite_settings() -> SendInviteSettings:
    settings = SendInviteSettings()
    _ = settings.link_base_url  # fail at cold start, not on the first record
    return settings


class InviteEventsSettings(_FunctionSettings):
    """Settings of the bounce and complaint handler (`functions/send_invite/bounces.py`)."""


@functools.cache
def invite_events_settings() -> InviteEventsSettings:
    return InviteEventsSettings()

"""Configuration read from the environment once per cold start, validated by pydantic.

A missing or malformed variable fails the function at init with the variable's name, not mid-request.
"""

from __future__ import annotations

import functools

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AgentsApiSettings(BaseSettings):
    """Settings of the dashboard API function (`functions/add_agent`)."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    agents_table_name: str = Field(min_length=3, description="DynamoDB table holding agents")
    tenant_claim: str = Field(default="custom:tenant_id", description="JWT claim naming the tenant")
    default_page_size: int = Field(default=25, ge=1, le=100)


@functools.cache
def agents_api_settings() -> AgentsApiSettings:
    return AgentsApiSettings()


class VerifyMailboxSettings(BaseSettings):
    """Settings of the workflow's task function (`functions/verify_mailbox`)."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    agents_table_name: str = Field(min_length=3)
    credentials_prefix: str = Field(min_length=1, description="Secrets Manager name prefix of passwords")
    credentials_kms_key_id: str | None = Field(default=None, description="KMS key encrypting the secrets")
    max_settings_rounds: int = Field(default=3, ge=1, le=10)


@functools.cache
def verify_mailbox_settings() -> VerifyMailboxSettings:
    return VerifyMailboxSettings()

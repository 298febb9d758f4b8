"""Where Microsoft is and who we are to it: read from the environment once (no simulator branches).

Production leaves the hosts at their defaults; the local stack points them at the identity and Graph
simulators and trusts the simulators' CA through `M365_CA_BUNDLE`, as `EXCHANGE_CA_BUNDLE` does for the
Exchange simulator. An empty `M365_CLIENT_ID` means the Microsoft 365 sign-in is not set up: the connect
page then offers the Exchange form only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

SCOPES = ("offline_access", "User.Read", "Mail.ReadBasic")
# MSAL adds openid/profile/offline_access itself and refuses them in `scopes`; what we pass it:
MSAL_SCOPES = ["User.Read", "Mail.ReadBasic"]
CALLBACK_PATH = "/connect/oauth/callback"


@dataclass(frozen=True)
class M365Config:
    client_id: str = ""
    client_secret_arn: str = ""
    tenant: str = "organizations"
    authority_host: str = "https://login.microsoftonline.com"
    graph_base_url: str = "https://graph.microsoft.com"
    ca_bundle: str | None = None
    flow_ttl_seconds: int = 600
    routing_budget: float = 3.0  # seconds for the whole "is this Microsoft 365?" decision
    token_timeout: float = 10.0  # seconds per call to the token endpoint
    graph_timeout: float = 10.0  # seconds per Graph call
    graph_budget: float = 25.0  # seconds for the whole Graph verification, retries included

    @property
    def enabled(self) -> bool:
        return bool(self.client_id)

    @property
    def authority(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{self.tenant}"

    @property
    def verify(self) -> str | bool:
        """What `requests` takes as `verify`: the extra CA file, or True (certifi's bundle)."""
        return self.ca_bundle or True

    def admin_consent_url(self, domain: str, redirect_uri: str) -> str:
        """Microsoft's admin-consent page for the owner's organisation (by its domain name)."""
        return (
            f"{self.authority_host.rstrip('/')}/{quote(domain, safe='')}/adminconsent"
            f"?client_id={quote(self.client_id, safe='')}&redirect_uri={quote(redirect_uri, safe='')}"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> M365Config:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for key, name, kind in (
            ("client_id", "M365_CLIENT_ID", str),
            ("client_secret_arn", "M365_CLIENT_SECRET_ARN", str),
            ("tenant", "M365_TENANT", str),
            ("authority_host", "M365_AUTHORITY_HOST", str),
            ("graph_base_url", "GRAPH_BASE_URL", str),
            ("ca_bundle", "M365_CA_BUNDLE", str),
            ("flow_ttl_seconds", "M365_FLOW_TTL_SECONDS", int),
            ("token_timeout", "M365_TOKEN_TIMEOUT", float),
            ("graph_timeout", "GRAPH_TIMEOUT", float),
            ("graph_budget", "GRAPH_BUDGET", float),
        ):
            if env.get(name):
                values[key] = kind(env[name])
        config = cls(**values)  # type: ignore[arg-type]
        for url in (config.authority_host, config.graph_base_url):
            if not url.startswith("https://"):
                raise ValueError(f"Microsoft endpoints must be https:// URLs, got {url!r}")
        if not 60 <= config.flow_ttl_seconds <= 3600:
            raise ValueError("M365_FLOW_TTL_SECONDS must be between 60 and 3600")
        if config.enabled and not config.client_secret_arn:
            raise ValueError("M365_CLIENT_ID is set but M365_CLIENT_SECRET_ARN is not")
        return config

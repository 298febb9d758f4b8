"""Where Microsoft is and who we are to it, as the Microsoft 365 code takes it (no simulator branches).

The functions build it from their settings (`onboarding.settings`: `AuthCallbackSettings.m365`,
`VerifyMailboxSettings.m365`), read at cold start from the M365_* / GRAPH_* variables template.yaml gives
them; this code never reads the environment. Production leaves the hosts at Microsoft's; the local stack
points them at the identity and Graph simulators and trusts the simulators' CA through `M365_CA_BUNDLE`, as
`EXCHANGE_CA_BUNDLE` does for the Exchange simulator. An empty `client_id` means the Microsoft 365 sign-in
is not set up: the connect page then offers the Exchange form only.
"""

from __future__ import annotations

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
    # Where people's browsers sign in, when not at `authority_host` (the local stack serves the simulator's
    # sign-in pages on its own origin); links we show (admin consent) point there.
    sign_in_host: str = ""
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

    def admin_consent_url(self, domain: str, redirect_uri: str, state: str) -> str:
        """Microsoft's admin-consent page for the owner's organisation (by its domain name). `state` comes
        back with the answer (Microsoft identity platform: "Request the permissions from a directory admin"):
        it binds the answer to a link we issued."""
        return (
            f"{(self.sign_in_host or self.authority_host).rstrip('/')}/{quote(domain, safe='')}/adminconsent"
            f"?client_id={quote(self.client_id, safe='')}&redirect_uri={quote(redirect_uri, safe='')}"
            f"&state={quote(state, safe='')}"
        )

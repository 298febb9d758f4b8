"""The workflow's verification of a Microsoft 365 mailbox (the `verify` task when `method` is graph).

The refresh token the connect page stored is redeemed for an access token (Microsoft may rotate the
refresh token: the new one replaces the old, encrypted the same way), then Graph is asked who signed in
and how big the inbox is. Nothing here returns or logs a token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from onboarding.core.credentials import CredentialStore
from onboarding.core.observability import logger
from onboarding.m365.graph import GraphClient, GraphFailure, GraphMailbox
from onboarding.m365.oauth import OAuthClient, SignInError
from onboarding.m365.outcomes import M365Reason

REFRESH_TOKEN: Final = "refresh_token"  # noqa: S105  (the credential store's purpose, not a token)


class GraphVerifier:
    def __init__(
        self, credentials: CredentialStore, oauth: Callable[[], OAuthClient], graph: Callable[[], GraphClient]
    ) -> None:
        self.credentials = credentials
        self._oauth = oauth
        self._graph = graph

    def verify(self, tenant_id: str, agent_id: str, email: str) -> GraphMailbox:
        """The mailbox as Graph sees it, or GraphFailure with a reason code."""
        stored = self.credentials.read(tenant_id, agent_id, purpose=REFRESH_TOKEN)
        refresh_token = stored.secret
        try:
            tokens = self._oauth().refresh(refresh_token)
        except SignInError as error:
            raise GraphFailure(error.reason) from error
        rotated = tokens.refresh_token
        if rotated is not None and rotated.get_secret_value() != refresh_token.get_secret_value():
            # Only over the one read: a removal (or a failed attempt) that deleted it, or a newer sign-in that
            # sealed another, meanwhile stands (CredentialChangedError, a CredentialNotFoundError, as for a
            # token that is gone).
            self.credentials.replace(
                tenant_id, agent_id, rotated, purpose=REFRESH_TOKEN, if_version=stored.version
            )
        graph = self._graph()
        # Graph's `mail` and proxy addresses are set by the account's own tenant: any organisation can give
        # one of its users someone else's address (nOAuth). The account must belong to the tenant that owns
        # the invited address's domain before its addresses mean anything.
        owner = graph.tenant_of_domain(email.rpartition("@")[2])
        if owner is None or tokens.tenant_id is None or tokens.tenant_id.lower() != owner.lower():
            logger.warning(
                "Signed in to another tenant than the one of the invited domain",
                extra={"signed_in_tenant": tokens.tenant_id, "domain_tenant": owner},
            )
            raise GraphFailure(M365Reason.WRONG_ACCOUNT, signed_in=tokens.username)
        return graph.verify_mailbox(email, tokens.access_token)

"""One check of a mailbox, as a verdict: Exchange (EWS with the stored password) and Microsoft 365 (the stored
refresh token redeemed, one Graph call).

Classification, and why:

* refused -- Exchange: a 401 to the stored login (`auth_failed`); a 403 after signing in (`access_denied`: EWS
  turned off for the mailbox or the login's rights removed: the server answers the same to every try, so
  only the owner or IT can fix it, and they reconnect when they have); the mailbox gone
  (`mailbox_not_found`); the mailbox moved to Exchange Online (`modern_auth_required`: Sign in with
  Microsoft). Microsoft 365: a revoked or expired refresh token (AADSTS 50173, 50132, 70008, 700082), a
  disabled account (50057) or tenant, consent withdrawn (65001), Conditional Access (53003...), Graph's 401
  or 403, no mailbox any more;
* locked -- a 456 from Exchange (account locked out, or its password expired), AADSTS 50053;
* transient -- timeouts, unreachable servers, DNS, TLS (a certificate being replaced), 5xx, throttling, and
  anything not understood: retried with back-off, and only a failure lasting longer than the disconnect
  threshold disconnects the agent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from onboarding.agents.models import AgentRecord
from onboarding.core.credentials import CredentialStore
from onboarding.core.observability import logger
from onboarding.exchange.diagnoses import Diagnosis
from onboarding.exchange.models import ExchangeConfig, ExchangeContext
from onboarding.health.models import ProbeResult, Verdict
from onboarding.m365.outcomes import M365Reason

if TYPE_CHECKING:  # msal and requests load only when a Microsoft 365 mailbox is checked
    from onboarding.m365.graph import GraphClient
    from onboarding.m365.oauth import OAuthClient, SignInError

REFUSED_EXCHANGE = frozenset(
    {
        Diagnosis.AUTH_FAILED,
        Diagnosis.ACCESS_DENIED,
        Diagnosis.MAILBOX_NOT_FOUND,
        Diagnosis.MODERN_AUTH_REQUIRED,
    }
)
LOCKED_EXCHANGE = frozenset({Diagnosis.ACCOUNT_LOCKED})

REFUSED_M365 = frozenset(
    {
        M365Reason.TOKEN_REJECTED,
        M365Reason.SIGN_IN_EXPIRED,
        M365Reason.ACCOUNT_DISABLED,
        M365Reason.TENANT_DISABLED,
        M365Reason.ADMIN_CONSENT_REQUIRED,
        M365Reason.CONSENT_DECLINED,
        M365Reason.CONDITIONAL_ACCESS,
        M365Reason.ACCESS_DENIED,
        M365Reason.NO_MAILBOX,
        M365Reason.PERSONAL_ACCOUNT,
    }
)
LOCKED_M365 = frozenset({M365Reason.ACCOUNT_LOCKED})


def exchange_verdict(code: Diagnosis) -> Verdict:
    if code in REFUSED_EXCHANGE:
        return Verdict.REFUSED
    if code in LOCKED_EXCHANGE:
        return Verdict.LOCKED
    return Verdict.TRANSIENT


def m365_verdict(reason: M365Reason) -> Verdict:
    if reason in REFUSED_M365:
        return Verdict.REFUSED
    if reason in LOCKED_M365:
        return Verdict.LOCKED
    return Verdict.TRANSIENT  # unavailable, timeout, throttled, an error not understood


class ExchangeProbe:
    """EWS with the recorded settings and the sealed password (no autodiscovery)."""

    def __init__(self, credentials: CredentialStore, config: ExchangeConfig) -> None:
        self.credentials = credentials
        self.config = config

    def probe(self, record: AgentRecord) -> ProbeResult:
        from onboarding.exchange.check import check
        from onboarding.exchange.diagnoses import ExchangeFailure

        connection, agent = record.connection, record.agent
        if not connection.ews_url or not connection.auth_type:
            return ProbeResult(Verdict.TRANSIENT, problem=Diagnosis.AUTODISCOVER_FAILED.value)
        password = self.credentials.get(agent.tenant_id, agent.agent_id)
        context = ExchangeContext(
            config=self.config,
            username=connection.exchange_username,
            ews_url=connection.ews_url,
            auth_type=connection.auth_type,
            server_build=connection.server_build,
        )
        try:
            found = check(agent.email, password.get_secret_value(), context)
        except ExchangeFailure as failure:
            logger.info("Exchange check failed", extra={"code": failure.code.value, "detail": failure.detail})
            return ProbeResult(exchange_verdict(failure.code), problem=failure.code.value)
        return ProbeResult(
            Verdict.HEALTHY,
            password_expires_at=found.password_expires_at,
            inbox_item_count=found.inbox_item_count,
            requests=found.requests,
        )


CONSENT_MISSING: Final = 65001  # AADSTS65001 DelegationDoesNotExist (consent_required)


def refresh_reason(error: SignInError) -> M365Reason:
    """The reason of a refused refresh. AADSTS65001 on a sign-in means "consent first" (an administrator's, when
    users may not consent); on the refresh of a token that was granted, it means the grant is gone: the owner
    removed the app from their apps, or an administrator its consent. Its words are "the permission was
    withdrawn" (`m365_consent_declined`), and the reconnect's sign-in asks for consent again."""
    if error.aadsts == CONSENT_MISSING:
        return M365Reason.CONSENT_DECLINED
    return error.reason


REFRESH_TOKEN: Final = "refresh_token"  # noqa: S105 (the credential store's purpose, not a token)


class MicrosoftProbe:
    """The sealed refresh token redeemed (MSAL), one Graph call; the rotated token sealed in its place, only
    over the token read (`if_version`): a token the owner sealed meanwhile by reconnecting stands.

    Requests: 2 per check in steady state (token + Graph). The OAuthClient, and with it MSAL's app holding the
    authority's metadata, is built once per process (the checker's `deps()`), so only a cold start adds one
    GET of `{authority}/v2.0/.well-known/openid-configuration`: 3 for the first check of a new instance
    (tests/layer/health/test_microsoft_check.py)."""

    def __init__(
        self, credentials: CredentialStore, oauth: Callable[[], OAuthClient], graph: Callable[[], GraphClient]
    ) -> None:
        self.credentials = credentials
        self._oauth = oauth
        self._graph = graph

    def probe(self, record: AgentRecord) -> ProbeResult:
        from onboarding.m365.graph import GraphFailure
        from onboarding.m365.oauth import SignInError

        agent = record.agent
        stored = self.credentials.read(agent.tenant_id, agent.agent_id, purpose=REFRESH_TOKEN)
        token = stored.secret
        oauth = self._oauth()
        graph = self._graph()
        try:
            tokens = oauth.refresh(token)
        except SignInError as error:
            reason = refresh_reason(error)
            logger.info(
                "Microsoft refused the refresh", extra={"reason": reason.value, "aadsts": error.aadsts}
            )
            return ProbeResult(m365_verdict(reason), problem=reason.value)
        rotated = tokens.refresh_token
        if rotated is not None and rotated.get_secret_value() != token.get_secret_value():
            # In place of the old one, only while the old one is still the one stored: the owner's reconnect
            # (a new token sealed while this one was redeemed) or a removal meanwhile stands
            # (CredentialChangedError, a CredentialNotFoundError: the check is stale, nothing re-created).
            self.credentials.replace(
                agent.tenant_id, agent.agent_id, rotated, purpose=REFRESH_TOKEN, if_version=stored.version
            )
        try:
            count = graph.inbox_count(tokens.access_token)
        except GraphFailure as failure:
            logger.info(
                "Graph check failed", extra={"reason": failure.reason.value, "detail": failure.detail}
            )
            return ProbeResult(m365_verdict(failure.reason), problem=failure.reason.value)
        return ProbeResult(Verdict.HEALTHY, inbox_item_count=count)

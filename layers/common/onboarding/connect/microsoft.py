"""Use cases of "Sign in with Microsoft" on the connect page: begin (POST) and finish (the callback).

Begin: a new MSAL flow for the invited address, stored server-side and bound to the invite and to a
random secret the browser keeps in a cookie; the browser goes to Microsoft. Finish: the pending flow is
taken once; it must belong to this browser and this invite and still be fresh; then the code is
redeemed, the refresh token goes to the credential store (encrypted, like a password) and the same
verification workflow starts with references only (`method: graph`), as for an Exchange mailbox.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from onboarding.connect.forms import ConnectService, ConnectView, NotNowError
from onboarding.core.observability import logger, metrics
from onboarding.invites.tokens import looks_like_token
from onboarding.m365.config import M365Config
from onboarding.m365.oauth import (
    FlowStore,
    ForeignSignInError,
    OAuthClient,
    PendingSignIn,
    SignInError,
    digest,
    same,
)
from onboarding.m365.outcomes import M365Reason

COOKIE_NAME = "m365_signin"


class SignInFailed(Exception):
    """The sign-in ended without a connection: the page shows `reason` in plain words."""

    def __init__(
        self, reason: M365Reason, *, view: ConnectView | None = None, signed_in: str | None = None
    ) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.view = view  # the invite it was for, when known (the page then offers to try again)
        self.signed_in = signed_in


@dataclass(frozen=True)
class BegunSignIn:
    authorize_url: str
    cookie_value: str  # "<browser secret>.<invite token>": HttpOnly, for the callback only


class SignInService:
    def __init__(
        self,
        connect: ConnectService,
        flows: FlowStore,
        oauth: Callable[[], OAuthClient],
        config: M365Config,
    ) -> None:
        self.connect = connect
        self.flows = flows
        self._oauth = oauth
        self.config = config

    def begin(self, token: str, *, redirect_uri: str) -> BegunSignIn:
        view = self.connect.view(token)
        if not view.can_start:
            raise NotNowError(f"The mailbox is {view.status.value}")
        if not self.config.enabled:
            raise SignInFailed(M365Reason.NOT_CONFIGURED, view=view)
        try:
            flow = self._oauth().start(login_hint=view.email, redirect_uri=redirect_uri)
        except SignInError as error:
            raise SignInFailed(error.reason, view=view) from error
        browser_secret = secrets.token_urlsafe(32)
        agent = view.record.agent
        self.flows.put(
            PendingSignIn(
                tenant_id=agent.tenant_id,
                agent_id=agent.agent_id,
                invite_hash=view.token_hash,
                browser_hash=digest(browser_secret),
                expires_at=int(time.time()) + self.config.flow_ttl_seconds,
                flow=flow,
            )
        )
        logger.info("Microsoft sign-in started", extra={"agent_id": agent.agent_id})
        return BegunSignIn(authorize_url=str(flow["auth_uri"]), cookie_value=f"{browser_secret}.{token}")

    def finish(self, params: Mapping[str, str], cookie: str | None) -> ConnectView:
        """Redeem the answer Microsoft sent the browser back with; the agent is `connecting` after it."""
        browser_secret, _, token = (cookie or "").partition(".")
        view = self._view_or_none(token)
        state = params.get("state") or ""
        if not state or not browser_secret or view is None:
            raise SignInFailed(M365Reason.SIGN_IN_INVALID, view=view)
        # Single use, and only by this browser for this invite: a replayed state (or code) finds nothing,
        # and one held by anyone else leaves the pending sign-in for the browser that started it.
        try:
            pending = self.flows.take(state, browser_hash=digest(browser_secret), invite_hash=view.token_hash)
        except ForeignSignInError as error:
            logger.warning(
                "Sign-in answer for another browser or invite", extra={"agent_id": view.record.agent.agent_id}
            )
            raise SignInFailed(M365Reason.SIGN_IN_INVALID, view=view) from error
        if pending is None:
            raise SignInFailed(M365Reason.SIGN_IN_EXPIRED, view=view)
        agent = view.record.agent
        if not (
            same(pending.browser_hash, digest(browser_secret))
            and same(pending.invite_hash, view.token_hash)
            and (pending.tenant_id, pending.agent_id) == (agent.tenant_id, agent.agent_id)
        ):
            logger.warning("Sign-in answer for another browser or invite", extra={"agent_id": agent.agent_id})
            raise SignInFailed(M365Reason.SIGN_IN_INVALID, view=view)
        if pending.expires_at < time.time():
            raise SignInFailed(M365Reason.SIGN_IN_EXPIRED, view=view)
        if not view.can_start:
            raise NotNowError(f"The mailbox is {view.status.value}")
        try:
            grant = self._oauth().redeem(pending.flow, params)
        except SignInError as error:
            metrics.add_metric(name="MicrosoftSignInRefused", unit="Count", value=1)
            raise SignInFailed(error.reason, view=view) from error
        self.connect.connect_with_microsoft(view, grant.refresh_token)
        return view

    def _view_or_none(self, token: str) -> ConnectView | None:
        if not looks_like_token(token):
            return None
        return self.connect.view(token)  # invite problems (expired, revoked...) -> their own pages

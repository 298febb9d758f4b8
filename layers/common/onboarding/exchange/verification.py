"""Verification: open the mailbox with the settings found or typed (inbox item count and server build).

Runs exchangelib's ``Account`` over ``exchange_guard.GuardedHTTPAdapter`` (SSRF guard, time budget), with
``busy.BudgetedRetry`` as its retry policy: a throttled or unavailable server is waited out within the budget, a
401 is final, a 403 after signing in is ACCESS_DENIED.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .diagnoses import Diagnosis, ExchangeFailure
from .discovery import Walk, preemptive_sessions, settings_for
from .models import ExchangeContext, ExchangeSettings, VerificationResult
from .probing import classify, with_login_hint
from .runtime import (
    EWS_PATH,
    clear_exchangelib_caches,
    configure_exchangelib,
    domain_of,
    host_of,
    policy_for,
    run_with_deadline,
)
from .trace import traced

if TYPE_CHECKING:
    from .guard import GuardedHTTPAdapter


def ews_endpoint(server: str) -> str:
    """``https://<host>/EWS/Exchange.asmx`` from what an owner typed as the server: a host name, or any URL
    of the server (the Outlook on the web address ``https://mail.x.com/owa/`` included): only its host is
    used, unless it is the EWS URL itself."""
    value = server.strip()
    if "://" in value:
        parts = urlsplit(value)
        if parts.path.rstrip("/").lower().endswith("/" + EWS_PATH.lower()):
            return f"https://{parts.netloc}{parts.path.rstrip('/')}"
        value = parts.netloc
    else:
        value = value.split("/", 1)[0]
    value = value.strip("/")
    if not value or "@" in value or " " in value:
        raise ExchangeFailure(Diagnosis.UNREACHABLE, "not a server name")
    return f"https://{value}/{EWS_PATH}"


def verify(email: str, password: str, context: ExchangeContext) -> VerificationResult:
    """Open the mailbox: inbox item count and server build. Raises ``ExchangeFailure``.

    ``context`` says where: the ``ews_url`` + ``auth_type`` (+ ``server_build``) discovery recorded (no probe),
    or the ``server`` the owner typed; with the login (``username``), the budgets (``config``) and the IT
    admin's trace (``trace``, optional).
    """
    trace = context.trace
    with traced(trace, "verify", password):
        result = _verify_traced(email, password, context)
    if trace is not None:
        trace.add(
            "verdict",
            url=result.settings.ews_url,
            result=f"verified: inbox holds {result.inbox_item_count} items; Exchange build {result.server_build}",
        )
        trace.verdict = "verified"
    return result


def _verify_traced(email: str, password: str, context: ExchangeContext) -> VerificationResult:
    from .guard import GuardedHTTPAdapter, is_microsoft_online

    if not context.ews_url and not context.server:
        raise ExchangeFailure(Diagnosis.AUTODISCOVER_FAILED, "no server and no EWS URL given")
    endpoint = context.ews_url or ews_endpoint(context.server or "")
    host = host_of(endpoint)
    if not endpoint.lower().startswith("https://") or not host:
        raise ExchangeFailure(Diagnosis.BLOCKED_ADDRESS, "only https:// EWS URLs are accepted")
    if is_microsoft_online(host):
        raise ExchangeFailure(Diagnosis.MODERN_AUTH_REQUIRED, f"{host} is Exchange Online")
    domain_of(email)
    configure_exchangelib()
    deadline = time.monotonic() + context.config.verify_timeout
    login = context.login(email)
    # The probe's connection (when the auth scheme is not known yet) carries the first EWS request.
    connections = GuardedHTTPAdapter(max_retries=0)
    try:
        return run_with_deadline(
            lambda: _verify(email.strip(), password, login, endpoint, context, deadline, connections),
            deadline,
            "verify",
            password,
        )
    finally:
        connections.close()
        clear_exchangelib_caches()


def _verify(
    email: str,
    password: str,
    login: str,
    endpoint: str,
    context: ExchangeContext,
    deadline: float,
    connections: GuardedHTTPAdapter,
) -> VerificationResult:
    from exchangelib import DELEGATE, UTC, Account, Configuration, Credentials
    from exchangelib.protocol import CachingProtocol, Protocol

    from .basic import announces_utf8
    from .busy import DEFAULT_BACK_OFF, BudgetedRetry, Patience
    from .guard import GuardedHTTPAdapter, guarded

    policy, trace, auth_type = policy_for(context.config), context.trace, context.auth_type
    offered: tuple[str, ...] = ()  # NTLM is tried under its own name first, then inside Negotiate
    utf8_basic = False
    if auth_type is None:
        walk = Walk(
            mailbox_domain=domain_of(email),
            confirmed_hosts=frozenset(),
            deadline=deadline,
            policy=policy,
            trace=trace,
            connections=connections,
            sleep=context.sleep,
        )
        settings = settings_for(endpoint, login, walk, build=None)
        auth_type = settings.auth_type
        # With recorded settings there is no probe: Basic then goes in UTF-8 as typed (not normalised).
        utf8_basic = announces_utf8(walk.ews_challenges)
    protocol_config = Configuration(
        version=_version(context.server_build),
        service_endpoint=endpoint,
        credentials=Credentials(login, password),
        auth_type=auth_type,
        retry_policy=BudgetedRetry(Patience(deadline, context.sleep)),
    )
    # Account() builds its protocol as Protocol(config=...), which returns the instance cached for
    # (endpoint, credentials). Creating our guarded subclass first puts it in that cache, so the Account uses
    # our adapter and time budget without touching exchangelib's process-wide class attributes.
    protocol_cls = type(
        "GuardedProtocol",
        (Protocol,),
        {
            "HTTP_ADAPTER_CLS": GuardedHTTPAdapter,
            "TIMEOUT": max(1.0, deadline - time.monotonic()),
            "RETRY_WAIT": DEFAULT_BACK_OFF,
            "create_session": preemptive_sessions(offered, utf8_basic),
        },
    )
    protocol = protocol_cls(config=protocol_config)
    with guarded(policy, deadline=deadline, trace=trace, connections=connections) as obs:
        try:
            account = Account(
                primary_smtp_address=email,
                config=protocol_config,
                autodiscover=False,
                access_type=DELEGATE,
                default_timezone=UTC,
                locale="en_US",
            )
            if account.protocol is not protocol:
                raise ExchangeFailure(Diagnosis.UNREACHABLE, "internal: guarded protocol not in use")
            count = _inbox_count(account)
            build = account.version.build
        except Exception as e:
            raise with_login_hint(classify(e, obs, during="verify"), login, obs) from None
        finally:
            protocol.close()
            with contextlib.suppress(KeyError):
                del CachingProtocol._protocol_cache[CachingProtocol._cache_key(protocol_config)]
    settings = ExchangeSettings(
        ews_url=endpoint,
        server=host_of(endpoint),
        auth_type=auth_type,
        server_build=str(build) if build else None,
        username=login,
    )
    return VerificationResult(settings=settings, inbox_item_count=count, server_build=settings.server_build)


def _version(build: str | None) -> Any:
    """exchangelib's ``Version`` for a build such as ``15.2.1544.4`` (None: exchangelib guesses it)."""
    from exchangelib.version import Build, Version

    try:
        parts = [int(p) for p in (build or "").split(".")]
        return Version(build=Build(*parts[:4])) if len(parts) >= 2 else None
    except (TypeError, ValueError):
        return None


def _inbox_count(account: Any) -> int:
    """The inbox's item count in one GetFolder request.

    ``account.inbox`` would first fetch the root folder (a second request); the distinguished id ``inbox``
    with the mailbox's address needs no root from the server, only an unfetched ``Root`` for its account.
    """
    from exchangelib.folders import Inbox, Root

    inbox = Inbox.get_distinguished(root=Root(account=account))
    return int(inbox.total_count or 0)

"""The Exchange connection core against the simulator: verdicts, secrecy, single tries, caches, SSRF guard."""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack.exchange_sim import MAILBOXES, SCENARIOS, SCENARIOS_BY_NAME, ExchangeSimulator, Scenario
from devstack.exchange_sim.http_server import CredentialArrival
from onboarding.exchange import (
    Diagnosis,
    ExchangeConfig,
    ExchangeContext,
    ExchangeFailure,
    ExchangeSettings,
    VerificationResult,
    discover,
    message_for,
    verify,
)
from onboarding.exchange.guard import GuardPolicy, is_microsoft_online, is_public

REPO = Path(__file__).resolve().parents[3]


def outcome(call: Callable[[], object]) -> tuple[str, object]:
    """("ok", result) or (code, failure)."""
    try:
        return "ok", call()
    except ExchangeFailure as failure:
        return failure.code.value, failure


def typed(scenario: Scenario, config: ExchangeConfig) -> ExchangeContext:
    """What the owner typed on the first form: email, password and (maybe) a login."""
    return ExchangeContext(config=config, username=scenario.username)


def manual(config: ExchangeConfig, login: str, server: str | None) -> ExchangeContext:
    """Settings typed in the advanced form: a login and a server."""
    return ExchangeContext(config=config, username=login, server=server)


def run_verify(scenario: Scenario, config: ExchangeConfig) -> tuple[str, object]:
    """Verify the way the service does: with the manual server, or with what discovery recorded."""
    if scenario.server:
        manual = ExchangeContext(config=config, username=scenario.login, server=scenario.server)
        return outcome(lambda: verify(scenario.email, scenario.password, manual))
    context = ExchangeContext(config=config, username=scenario.username)
    code, found = outcome(lambda: discover(scenario.email, scenario.password, context))
    if not isinstance(found, ExchangeSettings):
        return code, found
    return outcome(lambda: verify(scenario.email, scenario.password, context.found(found)))


# ---------------------------------------------------------------- every scenario's verdict


def allowed_password_destination(arrival: CredentialArrival, scenario: Scenario, ews_hosts: set[str]) -> bool:
    """The password-destination rule: HTTPS only, only the SOAP autodiscover service or EWS, only on a host of
    the mailbox's domain, a host the owner typed or confirmed, or the EWS host an authenticated autodiscover
    answer named."""
    domain = scenario.email.rpartition("@")[2]
    typed = {(scenario.server or "").split("://")[-1].split("/")[0].lower(), (scenario.confirm_host or "")}
    path = arrival.path.lower()
    in_domain = arrival.host == domain or arrival.host.endswith("." + domain)
    if arrival.port_kind != "https":
        return False
    if path == "/autodiscover/autodiscover.svc":
        return in_domain or arrival.host in typed
    if path == "/ews/exchange.asmx":
        return in_domain or arrival.host in typed or arrival.host in ews_hosts
    return False


def _ews_hosts() -> set[str]:
    from urllib.parse import urlsplit

    return {(urlsplit(box.ews_url).hostname or "") for box in MAILBOXES.values() if box.ews_url}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_the_password_goes_only_where_the_rule_allows(
    scenario: Scenario, exchange_sim: ExchangeSimulator, config_for: Callable[[Scenario], ExchangeConfig]
) -> None:
    exchange_config = config_for(scenario)
    # Given a simulated mailbox owner
    # When discovery runs, then verification (manual server, or what discovery found)
    outcome(lambda: discover(scenario.email, scenario.password, typed(scenario, exchange_config)))
    run_verify(scenario, exchange_config)
    # Then every request the simulator saw carrying a credential went to an allowed destination
    ews_hosts = _ews_hosts()
    wrong = [
        a for a in exchange_sim.credentials_seen if not allowed_password_destination(a, scenario, ews_hosts)
    ]
    assert wrong == []


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_discover_gives_the_expected_verdict(
    scenario: Scenario, config_for: Callable[[Scenario], ExchangeConfig]
) -> None:
    exchange_config = config_for(scenario)
    # Given a simulated mailbox owner typing email + password (+ login)
    # When we discover their settings
    code, result = outcome(
        lambda: discover(scenario.email, scenario.password, typed(scenario, exchange_config))
    )
    # Then the verdict is the scenario's
    assert code == scenario.expect_discover, result
    if code == "ok":
        assert isinstance(result, ExchangeSettings)
        assert result.ews_url.startswith("https://")
        assert result.ews_url.endswith("/EWS/Exchange.asmx")
        assert result.auth_type in ("NTLM", "basic")
        assert result.username == scenario.login


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_verify_gives_the_expected_verdict(
    scenario: Scenario, config_for: Callable[[Scenario], ExchangeConfig]
) -> None:
    exchange_config = config_for(scenario)
    # Given a mailbox owner with a manual server, or the settings discovery recorded
    # When we verify access
    code, result = run_verify(scenario, exchange_config)
    # Then the verdict is the scenario's, and success proves access with the inbox count and server build
    assert code == scenario.expect_verify, result
    if code == "ok":
        assert isinstance(result, VerificationResult)
        assert result.inbox_item_count == scenario.inbox_count
        assert result.server_build == scenario.server_build


def test_recorded_settings_skip_the_probes(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    # Given settings recorded by discovery
    s = SCENARIOS_BY_NAME["autodiscover_domain"]
    context = typed(s, exchange_config)
    settings = discover(s.email, s.password, context)
    exchange_sim.reset_observations()
    # When we verify with them
    verify(s.email, s.password, context.found(settings))
    # Then no auth-type probe (an empty SOAP body) was sent: every request was a real EWS operation
    assert exchange_sim.requests_seen
    assert all(r.operation is not None for r in exchange_sim.requests_seen)


def _tls_connections(sim: ExchangeSimulator) -> int:
    return sum(1 for c in sim.connects if c.port == sim.https_port and not c.refused)


def test_the_probes_connection_carries_the_authenticated_request(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    # Given a healthy NTLM mailbox (autodiscover on the domain, EWS on mail.<domain>)
    s = SCENARIOS_BY_NAME["autodiscover_domain"]
    # When we discover, then verify a typed server
    discover(s.email, s.password, typed(s, exchange_config))
    discovered = _tls_connections(exchange_sim)
    exchange_sim.reset_observations()
    verify(s.email, s.password, manual(exchange_config, s.login, "mail.contoso.test"))
    # Then each host took one TLS connection (contoso.test and mail.contoso.test, then mail.contoso.test):
    # the unauthenticated probe's, reused by the NTLM handshake
    assert discovered == 2
    assert _tls_connections(exchange_sim) == 1
    # And the handshake was still made once per call (a wrong password would still be tried once)
    assert [a.ok for a in exchange_sim.attempts_for("alice@contoso.test")] == [True]


# ---------------------------------------------------------------- another domain: the owner confirms first


def test_a_server_in_another_domain_gets_the_password_only_once_confirmed(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    # Given a domain whose port-80 redirect names a hosting provider's server in another domain
    s = SCENARIOS_BY_NAME["cross_domain_redirect"]
    # When we discover without the owner's confirmation
    code, failure = outcome(lambda: discover(s.email, s.password, typed(s, exchange_config)))
    # Then discovery stops, naming the host, and no credential went anywhere
    assert code == Diagnosis.CONFIRM_SERVER
    assert isinstance(failure, ExchangeFailure)
    assert failure.host == "mail.hoster.test"
    assert exchange_sim.credentials_seen == []
    # When the owner allows that host
    allowed = ExchangeContext(
        config=exchange_config, username=s.username, confirmed_hosts=("mail.hoster.test",)
    )
    settings = discover(s.email, s.password, allowed)
    # Then discovery completes there (the password went to that host's SOAP autodiscover only)
    assert settings.ews_url == "https://mail.hoster.test/EWS/Exchange.asmx"
    assert {(a.host, a.path.lower()) for a in exchange_sim.credentials_seen} == {
        ("mail.hoster.test", "/autodiscover/autodiscover.svc")
    }


@pytest.mark.parametrize(
    "host",
    [
        "mail.\u202eelpmaxe.test",
        "mail\u200b.hoster.test",
        "xn--mail.hoster.test\u2066",
        "m\u0430il.hoster.test",
    ],
    ids=["rtl-override", "zero-width-space", "isolate", "cyrillic-a"],
)
def test_a_server_name_that_does_not_read_as_it_is_is_never_offered_to_allow(host: str) -> None:
    from onboarding.exchange.discovery import Walk
    from onboarding.exchange.guard import GuardPolicy

    walk = Walk("contoso.test", frozenset(), deadline=0.0, policy=GuardPolicy())
    with pytest.raises(ExchangeFailure) as raised:
        walk.check_destination(f"https://{host}/autodiscover/autodiscover.svc")
    assert raised.value.code is Diagnosis.AUTODISCOVER_FAILED
    assert raised.value.host is None
    # A plain name in another domain is offered, named as it is
    with pytest.raises(ExchangeFailure) as plain:
        walk.check_destination("https://mail.hoster.test/autodiscover/autodiscover.svc")
    assert (plain.value.code, plain.value.host) == (Diagnosis.CONFIRM_SERVER, "mail.hoster.test")


def test_an_allowed_server_naming_ews_on_a_third_host_is_confirmed_first(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    # Given the owner allowed the hosting provider's server that discovery named
    s = SCENARIOS_BY_NAME["confirmed_host_names_a_third_host"]
    allowed = ExchangeContext(
        config=exchange_config, username=s.username, confirmed_hosts=("mail.hoster.test",)
    )
    # When that server's autodiscover answer names EWS on a host in yet another domain
    code, failure = outcome(lambda: discover(s.email, s.password, allowed))
    # Then discovery stops and names that host to the owner, as for an Autodiscover v2 answer; the password
    # went to the allowed server's autodiscover only, never to the third host
    assert code == Diagnosis.CONFIRM_SERVER
    assert isinstance(failure, ExchangeFailure)
    assert failure.host == "ews.elsewhere.test"
    assert {(a.host, a.path.lower()) for a in exchange_sim.credentials_seen} == {
        ("mail.hoster.test", "/autodiscover/autodiscover.svc")
    }
    # And once the owner allows that host too, discovery completes there
    both = ExchangeContext(
        config=exchange_config,
        username=s.username,
        confirmed_hosts=("mail.hoster.test", "ews.elsewhere.test"),
    )
    assert discover(s.email, s.password, both).ews_url == "https://ews.elsewhere.test/EWS/Exchange.asmx"


@pytest.mark.parametrize(
    ("name", "verdict"),
    [("autodiscover_v2", "ok"), ("autodiscover_v2_exchange_online", "modern_auth_required")],
)
def test_autodiscover_v2_finds_the_server_before_any_password_is_sent(
    name: str, verdict: str, exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    # Given a server that answers Autodiscover v2 (JSON, unauthenticated)
    s = SCENARIOS_BY_NAME[name]
    # When we discover
    code, _ = outcome(lambda: discover(s.email, s.password, typed(s, exchange_config)))
    # Then the verdict came without any credential sent (the password goes to EWS only when verifying)
    assert code == verdict
    assert exchange_sim.credentials_seen == []


def test_redirect_chains_share_one_hop_limit(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onboarding.exchange.discovery as discovery

    # Given a hop limit below the 3 redirects of chain.test
    monkeypatch.setattr(discovery, "MAX_HOPS", 2)
    s = SCENARIOS_BY_NAME["redirect_chain"]
    # Then discovery gives up (and asks for the settings) without sending the password
    code, _ = outcome(lambda: discover(s.email, s.password, typed(s, exchange_config)))
    assert code == Diagnosis.AUTODISCOVER_FAILED
    assert exchange_sim.credentials_seen == []


# ---------------------------------------------------------------- the password stays secret

LEAKY = [
    "wrong_password",
    "locked_account",
    "unknown_mailbox",
    "access_denied",
    "autodiscover_subdomain",
    "bearer_only",
    "wrong_certificate",
    "server_never_answers",
    "autodiscover_srv",
]


@pytest.mark.parametrize("name", LEAKY)
def test_password_never_appears_in_failures_or_logs(
    name: str, config_for: Callable[[Scenario], ExchangeConfig], caplog: pytest.LogCaptureFixture
) -> None:
    # Given everything logged at DEBUG is captured
    caplog.set_level(logging.DEBUG)
    s = SCENARIOS_BY_NAME[name]
    exchange_config = config_for(s)
    basic = base64.b64encode(f"{s.login}:{s.password}".encode()).decode()
    # When discovery and verification run (succeeding or failing)
    texts: list[str] = []
    for call in (
        lambda: discover(s.email, s.password, typed(s, exchange_config)),
        lambda: run_verify(s, exchange_config),
    ):
        _, result = outcome(call)
        if isinstance(result, ExchangeFailure):
            texts += [str(result), repr(result), result.detail, str(result.args)]
    # Then neither the password nor the Basic header built from it appears anywhere
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
    for text in texts:
        assert s.password not in text
        assert basic not in text


def test_a_password_typed_as_the_server_is_masked(exchange_config: ExchangeConfig) -> None:
    # Given a user who typed their password into the server field too
    password = "Secret-Server-9"
    code, failure = outcome(
        lambda: verify("a@nowhere.test", password, manual(exchange_config, "a", password))
    )
    # Then the failure's detail does not repeat it, in any letter case
    assert code == Diagnosis.UNREACHABLE
    assert password.lower() not in repr(failure).lower()


def test_exchangelib_debug_logging_is_muted(exchange_config: ExchangeConfig) -> None:
    # Given a call has configured exchangelib
    s = SCENARIOS_BY_NAME["autodiscover_subdomain"]
    discover(s.email, s.password, ExchangeContext(config=exchange_config))
    # Then exchangelib (it logs Authorization headers at DEBUG) and the NTLM libraries log WARNING+
    for name in ("exchangelib", "requests_ntlm", "spnego"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING


# ---------------------------------------------------------------- a wrong password is tried once


@pytest.mark.parametrize("step", ["discover", "verify"])
@pytest.mark.parametrize("login", ["CONTOSO\\alice", "alice@contoso.test"])
def test_wrong_password_is_tried_exactly_once(
    step: str, login: str, exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    # Given the wrong password for alice (NTLM)
    s = SCENARIOS_BY_NAME["wrong_password"]
    # When we discover or verify
    if step == "discover":
        code, _ = outcome(
            lambda: discover(s.email, s.password, ExchangeContext(config=exchange_config, username=login))
        )
    else:
        code, _ = outcome(lambda: verify(s.email, s.password, manual(exchange_config, login, s.server)))
    # Then it is refused, and the server saw exactly one credential check
    assert code == Diagnosis.AUTH_FAILED
    attempts = exchange_sim.attempts_for("alice@contoso.test")
    assert [a.ok for a in attempts] == [False]


def test_wrong_password_basic_is_tried_exactly_once(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    # Given the wrong password for a Basic-auth mailbox
    code, _ = outcome(
        lambda: discover("bea@fabrikam.test", "nope-nope", ExchangeContext(config=exchange_config))
    )
    # Then one refused attempt
    assert code == Diagnosis.AUTH_FAILED
    assert [a.ok for a in exchange_sim.attempts_for("bea@fabrikam.test")] == [False]


# ---------------------------------------------------------------- caches


def test_exchangelib_caches_are_cleared_after_each_call(exchange_config: ExchangeConfig) -> None:
    from exchangelib.autodiscover import autodiscover_cache
    from exchangelib.protocol import CachingProtocol

    # Given a successful discovery and verification
    s = SCENARIOS_BY_NAME["autodiscover_domain"]
    context = typed(s, exchange_config)
    settings = discover(s.email, s.password, context)
    assert not CachingProtocol._protocol_cache
    assert not autodiscover_cache._protocols
    verify(s.email, s.password, context.found(settings))
    # Then no protocol (which holds credentials) and no autodiscover result stays cached
    assert not CachingProtocol._protocol_cache
    assert not autodiscover_cache._protocols
    # And a failing call too
    outcome(lambda: verify(s.email, "wrong", manual(exchange_config, s.login, "mail.contoso.test")))
    assert not CachingProtocol._protocol_cache


# ---------------------------------------------------------------- Microsoft 365


@pytest.mark.parametrize(
    "server",
    [
        "outlook.office365.com",
        "OUTLOOK.OFFICE.COM",
        "eur.outlook.com",
        "https://outlook.office365.com/EWS/Exchange.asmx",
    ],
)
def test_exchange_online_is_recognised_without_contacting_it(
    server: str, exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    code, _ = outcome(lambda: verify("a@b.test", "pw-123", manual(exchange_config, "a@b.test", server)))
    assert code == Diagnosis.MODERN_AUTH_REQUIRED
    assert exchange_sim.connects == []


def test_outlook_com_address_needs_modern_auth(exchange_config: ExchangeConfig) -> None:
    code, _ = outcome(lambda: discover("someone@outlook.com", "pw", ExchangeContext(config=exchange_config)))
    assert code == Diagnosis.MODERN_AUTH_REQUIRED


# ---------------------------------------------------------------- SSRF guard

LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f.0.0.1",
    "[::ffff:127.0.0.1]",
    "[::1]",
    "169.254.169.254",
    "0.0.0.0",  # noqa: S104 - a spelling to refuse, nothing binds
    "mail.intranet.test",
    "mail.contoso.test",
]


@pytest.mark.parametrize("server", LOOPBACK_SPELLINGS)
def test_non_public_servers_are_refused_before_connecting(
    server: str, exchange_sim: ExchangeSimulator, strict_config: ExchangeConfig
) -> None:
    # Given the allow-list is OFF (production) and a server that is (or resolves to) a non-public address
    # When we verify against it
    code, failure = outcome(lambda: verify("a@contoso.test", "pw-123", manual(strict_config, "a", server)))
    # Then it is refused, and nothing was connected or received
    assert code == Diagnosis.BLOCKED_ADDRESS, failure
    assert exchange_sim.connects == []
    assert exchange_sim.requests_seen == []


def test_discovery_with_allow_list_off_connects_nowhere(
    exchange_sim: ExchangeSimulator, strict_config: ExchangeConfig
) -> None:
    # Given a domain whose names all resolve to 127.0.0.1 and the allow-list OFF
    code, _ = outcome(
        lambda: discover("alice@contoso.test", "Alice-Pass-1", ExchangeContext(config=strict_config))
    )
    # Then discovery refuses it, having connected nowhere
    assert code == Diagnosis.BLOCKED_ADDRESS
    assert exchange_sim.connects == []
    assert exchange_sim.requests_seen == []


@pytest.mark.parametrize(
    ("name", "private"), [("ews_url_private", "10.0.0.5"), ("redirect_to_metadata", "169.254.169.254")]
)
def test_autodiscover_answers_pointing_at_private_addresses_are_refused(
    name: str, private: str, exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    # Given autodiscover (allowed: loopback is on the allow-list) answers with a private address
    s = SCENARIOS_BY_NAME[name]
    code, _ = outcome(lambda: discover(s.email, s.password, typed(s, exchange_config)))
    # Then the address is refused, and no connection to it was even attempted
    assert code == Diagnosis.BLOCKED_ADDRESS
    assert all(c.host != private for c in exchange_sim.connects)
    assert not any(c.refused for c in exchange_sim.connects)


def test_the_connected_peer_is_checked_too(
    exchange_sim: ExchangeSimulator, strict_config: ExchangeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onboarding.exchange.guard as guard

    # Given DNS says a public address, but the connection lands on loopback (DNS rebinding / NAT trick)
    public = "8.8.8.8"
    monkeypatch.setattr(
        guard,
        "_resolve",
        lambda host, port, timeout: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (public, 443))],
    )
    real_connect = socket.socket.connect

    def land_on_loopback(sock: socket.socket, address: object) -> object:
        assert isinstance(address, tuple)
        target = ("127.0.0.1", exchange_sim.https_port) if address[0] == public else address
        return real_connect(sock, target)

    monkeypatch.setattr(socket.socket, "connect", land_on_loopback)
    # When we verify
    code, _ = outcome(lambda: verify("a@x.test", "pw-123", manual(strict_config, "a", "public.example.test")))
    # Then the peer check refuses it before any byte of HTTP is sent
    assert code == Diagnosis.BLOCKED_ADDRESS
    assert exchange_sim.requests_seen == []


def test_credentials_never_go_over_plain_http(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    code, _ = outcome(
        lambda: verify(
            "alice@contoso.test",
            "Alice-Pass-1",
            ExchangeContext(
                config=exchange_config,
                username="CONTOSO\\alice",
                ews_url="http://mail.contoso.test/EWS/Exchange.asmx",
                auth_type="NTLM",
            ),
        )
    )
    assert code == Diagnosis.BLOCKED_ADDRESS
    assert exchange_sim.requests_seen == []


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.1.2.3", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("fc00::1", False),
        ("fd12::1", False),
        ("fe80::1", False),
        ("fec0::1", False),
        ("feff:ffff::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:127.0.0.1", False),
        ("64:ff9b::a00:1", False),
        ("2002:a00:1::", False),
        ("ff02::1", False),
        ("::", False),
    ],
)
def test_public_address_policy(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public
    assert GuardPolicy().allows(address) is public


_NON_PUBLIC = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]


@given(network=st.sampled_from(_NON_PUBLIC), offset=st.integers(min_value=0), mapped=st.booleans())
def test_no_address_in_a_non_public_range_is_ever_allowed(
    network: ipaddress.IPv4Network, offset: int, mapped: bool
) -> None:
    address = network[offset % network.num_addresses]
    spelled = f"::ffff:{address}" if mapped else str(address)
    assert not GuardPolicy().allows(spelled)
    assert not GuardPolicy.build(("127.0.0.0/8",)).allows(spelled) or address in _NON_PUBLIC[3]


def test_allow_list_admits_only_its_networks() -> None:
    policy = GuardPolicy.build(("127.0.0.0/8", "::1/128"))
    assert policy.allows("127.0.0.1")
    assert policy.allows("::1")
    assert policy.allows("::ffff:127.0.0.1")
    assert not policy.allows("10.0.0.5")
    assert not policy.allows("169.254.169.254")


def test_microsoft_online_names() -> None:
    assert is_microsoft_online("outlook.office365.com")
    assert is_microsoft_online("x.outlook.com")
    assert not is_microsoft_online("outlook.contoso.test")
    assert not is_microsoft_online("notoutlook.com")


# ---------------------------------------------------------------- API surface


def test_messages_are_plain_and_actionable() -> None:
    for code in Diagnosis:
        text = message_for(code)
        assert len(text) > 40
        for jargon in ("EWS", "NTLM", "SOAP", "autodiscover", "SSRF", "HTTP", "TLS", "DNS"):
            assert jargon not in text, (code, jargon)


def test_failure_repr_and_str_carry_code_and_detail() -> None:
    failure = ExchangeFailure(Diagnosis.TIMEOUT, "verify: no answer")
    assert str(failure) == "timeout: verify: no answer"
    assert "timeout" in repr(failure)
    assert failure.code is Diagnosis.TIMEOUT


def test_importing_the_module_does_not_import_exchangelib() -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'layers' / 'common'}{os.pathsep}{REPO}"}
    code = (
        "import sys, onboarding.exchange; sys.exit('exchangelib' in sys.modules or 'requests' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0


def test_the_dashboards_models_load_the_trace_without_the_exchange_models() -> None:
    # the agent's trace is part of the API's models; the Exchange settings models (pydantic schemas built
    # at import) serve only the functions that connect
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'layers' / 'common'}{os.pathsep}{REPO}"}
    code = "import sys, onboarding.agents.models; sys.exit('onboarding.exchange.models' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0


# ---------------------------------------------------------------- the IT admin's trace


@pytest.mark.parametrize(
    "name",
    [
        "autodiscover_http_redirect",
        "wrong_password",
        "wrong_certificate",
        "cross_domain_redirect",
        "autodiscover_subdomain",
    ],
)
def test_the_trace_shows_each_step_and_no_secret(
    name: str, exchange_config: ExchangeConfig, exchange_sim: ExchangeSimulator
) -> None:
    from onboarding.exchange.trace import TraceRecorder

    # Given a trace recorder handed to discovery and verification
    s = SCENARIOS_BY_NAME[name]
    trace = TraceRecorder(s.email.rpartition("@")[2])
    # When both run
    context = ExchangeContext(config=exchange_config, username=s.username, trace=trace)
    code, found = outcome(lambda: discover(s.email, s.password, context))
    if isinstance(found, ExchangeSettings):
        code, _ = outcome(lambda: verify(s.email, s.password, context.found(found)))
    record = trace.snapshot()
    stored = record.model_dump_json()
    text = record.to_text()
    # Then the verdict and the steps are there: candidates, DNS, TCP, TLS, HTTP with the offered schemes
    assert record.verdict == ("verified" if code == "ok" else code)
    kinds = {step.kind for step in record.steps}
    assert {"candidate", "dns", "tcp", "http", "verdict"} <= kinds
    assert any(step.kind == "tls" for step in record.steps)
    if code != Diagnosis.TLS_ERROR:
        assert any(step.status == 401 and step.schemes for step in record.steps)
    # And no secret: neither the password, nor a credential header built from it, nor any NTLM token
    basic = base64.b64encode(f"{s.login}:{s.password}".encode()).decode()
    for blob in (stored, text):
        assert s.password not in blob
        assert basic not in blob
        assert "TlRMTVNT" not in blob  # base64 of "NTLMSSP"
    # And every request that carried a credential shows up as such
    sent = [st for st in record.steps if st.kind == "http" and (st.result or "").startswith("POST with ")]
    assert len(sent) >= len(exchange_sim.credentials_seen)


def test_the_trace_is_bounded_and_masks_what_it_is_told() -> None:
    from onboarding.exchange.trace import MAX_STEPS, MAX_TEXT, TraceRecorder

    # Given a recorder that knows the password, and a server that echoes it in a URL and a long text
    trace = TraceRecorder("contoso.test")
    trace.mask_also("Hunter-2-Secret")
    for i in range(MAX_STEPS + 25):
        trace.add(
            "http",
            url=f"https://user:pw@mail.contoso.test/EWS/Exchange.asmx?token=abc&n={i}",
            result="echo Hunter-2-Secret " + "x" * 1000,
        )
    record = trace.snapshot()
    # Then it keeps MAX_STEPS steps and counts the rest, clips texts, drops user info and queries, masks the secret
    assert len(record.steps) == MAX_STEPS
    assert record.truncated == 25
    step = record.steps[0]
    assert step.url == "https://mail.contoso.test/EWS/Exchange.asmx"
    assert step.result is not None
    assert len(step.result) <= MAX_TEXT
    assert "Hunter-2-Secret" not in record.model_dump_json()
    assert "25 more steps left out" in record.to_text()


def test_the_trace_masks_every_occurrence_of_the_password_in_every_field() -> None:
    from onboarding.exchange.trace import TraceRecorder

    # Given a server echoing the password twice in one answer (a RedirectUrl, its host and a text), in any
    # letter case
    secret = "Hunter-2-Secret"
    trace = TraceRecorder("contoso.test")
    trace.mask_also(secret)
    trace.add(
        "autodiscover",
        url=f"https://{secret}.contoso.test/{secret}/x/{secret.upper()}/Exchange.asmx",
        host=f"{secret}.{secret}.contoso.test",
        result=f"RedirectUrl https://a/{secret}?{secret} then {secret.lower()}",
    )
    # Then no occurrence is left, in the stored trace or its text
    record = trace.snapshot()
    for text in (record.model_dump_json(), record.to_text()):
        assert secret.lower() not in text.lower()
    assert record.steps[0].result == "RedirectUrl https://a/***?*** then ***"


@pytest.mark.parametrize("step", ["discover", "verify"])
@pytest.mark.parametrize(
    ("name", "suggested"), [("wrong_password", "CONTOSO\\alice"), ("netbios_domain_hint", "MTCORP\\maya")]
)
def test_an_email_address_refused_as_login_suggests_the_domain_the_server_named(
    step: str, name: str, suggested: str, exchange_config: ExchangeConfig
) -> None:
    # Given a domain-joined server whose NTLM challenge names its Windows domain (CONTOSO for contoso.test;
    # MTCORP for margiestravel.test, unlike the email domain) refusing the email address as the login
    s = SCENARIOS_BY_NAME[name]
    if step == "discover":
        code, failure = outcome(
            lambda: discover(s.email, s.password, ExchangeContext(config=exchange_config))
        )
    else:
        code, failure = outcome(
            lambda: verify(s.email, s.password, manual(exchange_config, s.email, s.server))
        )
    # Then the verdict suggests DOMAIN\user with that very domain, and the owner's message says to try it
    assert code == Diagnosis.AUTH_FAILED
    assert isinstance(failure, ExchangeFailure)
    assert failure.hint == suggested
    assert f"Try signing in as {suggested}:" in message_for(failure.code, hint=failure.hint)


def test_a_server_that_names_no_domain_gets_the_generic_login_form(exchange_config: ExchangeConfig) -> None:
    # Given a Basic-auth server (no NTLM challenge, so no domain named) refusing an email address
    code, failure = outcome(
        lambda: discover("bea@fabrikam.test", "nope-nope", ExchangeContext(config=exchange_config))
    )
    # Then the hint is the generic form, and the message explains it without claiming a domain
    assert code == Diagnosis.AUTH_FAILED
    assert isinstance(failure, ExchangeFailure)
    assert failure.hint == "DOMAIN\\bea"
    text = message_for(failure.code, hint=failure.hint)
    assert "written DOMAIN\\username (for example DOMAIN\\bea)" in text
    assert "Try signing in as" not in text


def test_a_refused_domain_login_gets_no_login_hint(exchange_config: ExchangeConfig) -> None:
    s = SCENARIOS_BY_NAME["wrong_password"]
    code, failure = outcome(
        lambda: verify(s.email, s.password, manual(exchange_config, "CONTOSO\\alice", s.server))
    )
    assert code == Diagnosis.AUTH_FAILED
    assert isinstance(failure, ExchangeFailure)
    assert failure.hint is None


@given(blob=st.binary(max_size=200), tail=st.binary(max_size=64))
def test_reading_the_domain_from_any_challenge_never_fails(blob: bytes, tail: bytes) -> None:
    from onboarding.exchange.ntlm import netbios_domain

    # Given any bytes, including ones that start like a CHALLENGE message
    for message in (blob, b"NTLMSSP\x00\x02\x00\x00\x00" + blob + tail):
        # Then reading its NetBIOS domain gives a name or None, never an exception
        assert netbios_domain(message) is None or isinstance(netbios_domain(message), str)


# ---------------------------------------------------------------- busy servers (issue 19)


def _ews_requests(sim: ExchangeSimulator, host: str, operation: str) -> list[int]:
    """The statuses the simulator answered to ``operation`` requests at ``host``'s EWS."""
    return [
        r.status
        for r in sim.requests_seen
        if r.host == host and r.path.lower() == "/ews/exchange.asmx" and r.operation == operation
    ]


def test_a_throttled_server_is_waited_out_and_connects(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    # Given EWS answers GetFolder with ErrorServerBusy, BackOffMilliseconds 1000, then serves
    s = SCENARIOS_BY_NAME["ews_throttled"]
    waits: list[float] = []
    context = ExchangeContext(config=exchange_config, sleep=waits.append)
    settings = discover(s.email, s.password, context)
    exchange_sim.reset_observations()
    # When we verify
    result = verify(s.email, s.password, context.found(settings))
    # Then we waited the back-off the server named, asked again, and read the inbox
    assert waits == [1.0]
    assert result.inbox_item_count == s.inbox_count
    # (NTLM: the NEGOTIATE leg's 401, the AUTHENTICATE leg throttled, the same request again on that connection)
    assert _ews_requests(exchange_sim, "mail.throttled.test", "GetFolder") == [401, 500, 200]
    # And the server never refused the password (busy is not a verdict on it)
    assert all(a.ok for a in exchange_sim.attempts_for(s.email))


def test_a_back_off_beyond_the_budget_says_busy_without_waiting(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    # Given EWS throttles with BackOffMilliseconds 297749 (about 5 minutes), beyond the 60 s budget
    s = SCENARIOS_BY_NAME["ews_throttled_too_long"]
    waits: list[float] = []
    context = ExchangeContext(config=exchange_config, sleep=waits.append)
    settings = discover(s.email, s.password, context)
    exchange_sim.reset_observations()
    # When we verify
    code, failure = outcome(lambda: verify(s.email, s.password, context.found(settings)))
    # Then the verdict is "busy", at once: no wait, no second request
    assert code == Diagnosis.SERVER_BUSY
    assert isinstance(failure, ExchangeFailure)
    assert "297.749 s" in failure.detail
    assert waits == []
    assert _ews_requests(exchange_sim, "mail.throttled.test", "GetFolder") == [401, 500]
    # And the owner is told to try again later, not to check the server name or a VPN
    text = message_for(failure.code)
    assert "busy" in text
    assert "try again in a few minutes" in text
    assert "server name" not in text
    assert "VPN" not in text


def test_a_503_with_retry_after_is_waited_out_before_any_password(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    # Given the EWS server's first answer is 503 with Retry-After: 1 (a load balancer draining)
    s = SCENARIOS_BY_NAME["unavailable_then_fine"]
    waits: list[float] = []
    # When discovery checks the EWS URL autodiscover named (without credentials)
    settings = discover(s.email, s.password, ExchangeContext(config=exchange_config, sleep=waits.append))
    # Then it waited the second the server asked, looked again, and found EWS (not "not an Exchange server")
    assert waits == [1.0]
    assert settings.ews_url == "https://mail.draining.test/EWS/Exchange.asmx"
    unauthenticated = [r.status for r in exchange_sim.requests_seen if r.host == "mail.draining.test"]
    assert unauthenticated == [503, 401]
    assert [a for a in exchange_sim.credentials_seen if a.host == "mail.draining.test"] == []


def test_a_503_to_the_signed_in_request_is_waited_out(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    # Given recorded settings, and the EWS server answering its first request 503 with Retry-After: 1
    s = SCENARIOS_BY_NAME["unavailable_then_fine"]
    settings = discover(s.email, s.password, ExchangeContext(config=exchange_config, sleep=lambda _: None))
    exchange_sim.reset_observations()
    waits: list[float] = []
    context = ExchangeContext(config=exchange_config, sleep=waits.append).found(settings)
    # When we verify (the first request already carries the NTLM NEGOTIATE)
    result = verify(s.email, s.password, context)
    # Then we waited, asked again, and connected; the password was checked once, and accepted
    assert waits == [1.0]
    assert result.inbox_item_count == s.inbox_count
    assert [r.status for r in exchange_sim.requests_seen] == [503, 401, 200]
    assert [a.ok for a in exchange_sim.attempts_for(s.email)] == [True]


@pytest.mark.parametrize("step", ["discover", "verify"])
def test_a_503_for_longer_than_the_budget_says_busy_and_sends_no_password(
    step: str, exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    # Given an EWS server answering every request 503, Retry-After an HTTP-date an hour away
    s = SCENARIOS_BY_NAME["unavailable_too_long"]
    waits: list[float] = []
    context = ExchangeContext(config=exchange_config, sleep=waits.append)
    # When we discover, or verify with the server typed
    if step == "discover":
        code, failure = outcome(lambda: discover(s.email, s.password, context))
    else:
        manual_context = ExchangeContext(
            config=exchange_config, server="mail.maintenance.test", sleep=waits.append
        )
        code, failure = outcome(lambda: verify(s.email, s.password, manual_context))
    # Then the verdict is "busy, try again later", never "not an Exchange server", without waiting
    assert code == Diagnosis.SERVER_BUSY, failure
    assert waits == []
    # And no credential went to the unavailable server
    assert [a for a in exchange_sim.credentials_seen if a.host == "mail.maintenance.test"] == []


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 3600.0),  # IMF-fixdate (RFC 9110 section 5.6.7)
        ("Sunday, 06-Nov-94 08:49:37 GMT", 3600.0),  # obsolete RFC 850 form, which recipients must accept
        ("Sun Nov  6 08:49:37 1994", 3600.0),  # obsolete asctime form
        ("Sun, 06 Nov 1994 06:49:37 GMT", 0.0),  # already past: no wait
        ("-5", None),
        ("1.5", None),
        ("١٢٠", None),  # digits, but not ASCII ones
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_rfc_9110_says(value: str | None, seconds: float | None) -> None:
    from datetime import UTC, datetime

    from onboarding.exchange.busy import retry_after_seconds

    now = datetime(1994, 11, 6, 7, 49, 37, tzinfo=UTC)
    assert retry_after_seconds(value, now=now) == seconds


@pytest.mark.parametrize("close", [False, True])
@pytest.mark.parametrize(("status", "verdict"), [(401, "UnauthorizedError"), (456, "TransportError")])
def test_only_busy_answers_are_retried(close: bool, status: int, verdict: str) -> None:
    import requests
    from exchangelib import errors as ex

    from onboarding.exchange.busy import BudgetedRetry, Patience

    # Given a refused password (401) or a locked account (456), with or without "Connection: close" (which
    # exchangelib's FaultTolerance reads as "busy, send it again")
    response = requests.Response()
    response.status_code = status
    response.url = "https://mail.contoso.test/EWS/Exchange.asmx"
    response._content = b""
    if close:
        response.headers["Connection"] = "close"
    policy = BudgetedRetry(Patience(deadline=float("inf"), sleep=lambda _: None))
    # Then the policy raises an answer that is final, never the busy kind that makes exchangelib send the
    # password again (an account lockout in the making)
    with pytest.raises(ex.EWSError) as raised:
        policy.raise_response_errors(response)
    assert isinstance(raised.value, getattr(ex, verdict))
    assert not isinstance(raised.value, ex.ErrorServerBusy | ex.ErrorInternalServerTransientError)


# ---------------------------------------------------------------- Basic with passwords outside Latin-1 (issue 19)


def test_a_password_outside_latin_1_connects_over_basic_and_a_wrong_one_is_refused_once(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    # Given a Basic-only server whose challenge says charset="UTF-8", and a Polish/Cyrillic/Chinese password
    s = SCENARIOS_BY_NAME["basic_utf8_charset"]
    # When the owner types it decomposed (as some keyboards and paste buffers give it: NFD)
    import unicodedata

    typed_password = unicodedata.normalize("NFD", s.password)
    assert typed_password != s.password
    context = ExchangeContext(config=exchange_config, server="mail.kielce.test")
    result = verify(s.email, typed_password, context)
    # Then it connects: UTF-8, normalised to NFC because the server announced the charset (RFC 7617 2.1)
    # (Basic goes with every request: the version probe's and the inbox's)
    assert result.inbox_item_count == s.inbox_count
    attempts = exchange_sim.attempts_for(s.email)
    assert attempts
    assert all(a.ok for a in attempts)
    # And a wrong password outside Latin-1 is refused, once
    exchange_sim.reset_observations()
    code, _ = outcome(lambda: verify(s.email, "Zażółć-Ключ-错误-0", context))
    assert code == Diagnosis.AUTH_FAILED
    assert [a.ok for a in exchange_sim.attempts_for(s.email)] == [False]


@given(username=st.text(max_size=20), password=st.text(max_size=40), announced=st.booleans())
def test_basic_credentials_never_fail_to_encode(username: str, password: str, announced: bool) -> None:
    import unicodedata

    from onboarding.exchange.basic import basic_credentials

    # Given any text as login and password (lone surrogates included)
    header = basic_credentials(username, password, utf8_announced=announced)
    # Then a header is built, and (for valid text) it carries the UTF-8 of what was typed, NFC if announced
    assert header.startswith("Basic ")
    raw = base64.b64decode(header.removeprefix("Basic "))
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in username + password):
        sent = raw.decode("utf-8")
        if announced:
            assert sent == unicodedata.normalize("NFC", sent)
        else:
            assert sent == f"{username}:{password}"


# ---------------------------------------------------------------- EWS turned off for one mailbox (issue 19)


def test_ews_turned_off_for_the_mailbox_is_access_denied_not_unreachable(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    # Given a mailbox whose EWS access is off (Set-CASMailbox -EwsEnabled $false): the login works, EWS says 403
    s = SCENARIOS_BY_NAME["ews_disabled_for_mailbox"]
    context = typed(s, exchange_config)
    settings = discover(s.email, s.password, context)
    exchange_sim.reset_observations()
    # When we verify
    code, failure = outcome(lambda: verify(s.email, s.password, context.found(settings)))
    # Then the verdict is access_denied (the password was right: one accepted sign-in, the 403 not asked again)
    assert code == Diagnosis.ACCESS_DENIED
    assert isinstance(failure, ExchangeFailure)
    assert "HTTP 403" in failure.detail
    assert [a.ok for a in exchange_sim.attempts_for(s.email)] == [True]
    assert _ews_requests(exchange_sim, "mail.contoso.test", "GetFolder") == [
        401,
        403,
    ]  # NEGOTIATE, AUTHENTICATE
    # And the owner is sent to IT, not to the server name
    text = message_for(failure.code)
    assert "ask the person who runs your company's email" in text
    assert "turned off for this mailbox" in text

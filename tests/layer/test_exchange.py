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

from devstack.exchange_sim import SCENARIOS, SCENARIOS_BY_NAME, ExchangeSimulator, Scenario
from onboarding.exchange import (
    Diagnosis,
    ExchangeConfig,
    ExchangeFailure,
    ExchangeSettings,
    VerificationResult,
    discover,
    message_for,
    verify,
)
from onboarding.exchange_guard import GuardPolicy, is_microsoft_online, is_public
from tests.exchange_fixtures import SIM_BUILD

REPO = Path(__file__).resolve().parents[2]


def outcome(call: Callable[[], object]) -> tuple[str, object]:
    """("ok", result) or (code, failure)."""
    try:
        return "ok", call()
    except ExchangeFailure as failure:
        return failure.code.value, failure


def run_verify(scenario: Scenario, config: ExchangeConfig) -> tuple[str, object]:
    """Verify the way the service does: with the manual server, or with what discovery recorded."""
    if scenario.server:
        return outcome(
            lambda: verify(scenario.email, scenario.password, scenario.login, scenario.server, config=config)
        )
    settings = discover(scenario.email, scenario.password, scenario.username, config=config)
    return outcome(
        lambda: verify(
            scenario.email,
            scenario.password,
            settings.username,
            ews_url=settings.ews_url,
            auth_type=settings.auth_type,
            config=config,
        )
    )


# ---------------------------------------------------------------- every scenario's verdict


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_discover_gives_the_expected_verdict(scenario: Scenario, exchange_config: ExchangeConfig) -> None:
    # Given a simulated mailbox owner typing email + password (+ login)
    # When we discover their settings
    code, result = outcome(
        lambda: discover(scenario.email, scenario.password, scenario.username, config=exchange_config)
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
def test_verify_gives_the_expected_verdict(scenario: Scenario, exchange_config: ExchangeConfig) -> None:
    # Given a mailbox owner with a manual server, or the settings discovery recorded
    # When we verify access
    code, result = run_verify(scenario, exchange_config)
    # Then the verdict is the scenario's, and success proves access with the inbox count and server build
    assert code == scenario.expect_verify, result
    if code == "ok":
        assert isinstance(result, VerificationResult)
        assert result.inbox_item_count == scenario.inbox_count
        assert result.server_build == SIM_BUILD


def test_recorded_settings_skip_the_probes(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    # Given settings recorded by discovery
    s = SCENARIOS_BY_NAME["autodiscover_domain"]
    settings = discover(s.email, s.password, s.username, config=exchange_config)
    exchange_sim.reset_observations()
    # When we verify with them
    verify(
        s.email,
        s.password,
        settings.username,
        ews_url=settings.ews_url,
        auth_type=settings.auth_type,
        config=exchange_config,
    )
    # Then no auth-type probe (an empty SOAP body) was sent: every request was a real EWS operation
    assert exchange_sim.requests_seen
    assert all(r.operation is not None for r in exchange_sim.requests_seen)


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
    name: str, exchange_config: ExchangeConfig, caplog: pytest.LogCaptureFixture
) -> None:
    # Given everything logged at DEBUG is captured
    caplog.set_level(logging.DEBUG)
    s = SCENARIOS_BY_NAME[name]
    basic = base64.b64encode(f"{s.login}:{s.password}".encode()).decode()
    # When discovery and verification run (succeeding or failing)
    texts: list[str] = []
    for call in (
        lambda: discover(s.email, s.password, s.username, config=exchange_config),
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
    code, failure = outcome(lambda: verify("a@nowhere.test", password, "a", password, config=exchange_config))
    # Then the failure's detail does not repeat it, in any letter case
    assert code == Diagnosis.UNREACHABLE
    assert password.lower() not in repr(failure).lower()


def test_exchangelib_debug_logging_is_muted(exchange_config: ExchangeConfig) -> None:
    # Given a call has configured exchangelib
    s = SCENARIOS_BY_NAME["autodiscover_subdomain"]
    discover(s.email, s.password, config=exchange_config)
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
        code, _ = outcome(lambda: discover(s.email, s.password, login, config=exchange_config))
    else:
        code, _ = outcome(lambda: verify(s.email, s.password, login, s.server, config=exchange_config))
    # Then it is refused, and the server saw exactly one credential check
    assert code == Diagnosis.AUTH_FAILED
    attempts = exchange_sim.attempts_for("alice@contoso.test")
    assert [a.ok for a in attempts] == [False]


def test_wrong_password_basic_is_tried_exactly_once(
    exchange_sim: ExchangeSimulator, exchange_config: ExchangeConfig
) -> None:
    # Given the wrong password for a Basic-auth mailbox
    code, _ = outcome(lambda: discover("bea@fabrikam.test", "nope-nope", config=exchange_config))
    # Then one refused attempt
    assert code == Diagnosis.AUTH_FAILED
    assert [a.ok for a in exchange_sim.attempts_for("bea@fabrikam.test")] == [False]


# ---------------------------------------------------------------- caches


def test_exchangelib_caches_are_cleared_after_each_call(exchange_config: ExchangeConfig) -> None:
    from exchangelib.autodiscover import autodiscover_cache
    from exchangelib.protocol import CachingProtocol

    # Given a successful discovery and verification
    s = SCENARIOS_BY_NAME["autodiscover_domain"]
    settings = discover(s.email, s.password, s.username, config=exchange_config)
    assert not CachingProtocol._protocol_cache
    assert not autodiscover_cache._protocols
    verify(
        s.email,
        s.password,
        settings.username,
        ews_url=settings.ews_url,
        auth_type=settings.auth_type,
        config=exchange_config,
    )
    # Then no protocol (which holds credentials) and no autodiscover result stays cached
    assert not CachingProtocol._protocol_cache
    assert not autodiscover_cache._protocols
    # And a failing call too
    outcome(lambda: verify(s.email, "wrong", s.login, "mail.contoso.test", config=exchange_config))
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
    code, _ = outcome(lambda: verify("a@b.test", "pw-123", "a@b.test", server, config=exchange_config))
    assert code == Diagnosis.MODERN_AUTH_REQUIRED
    assert exchange_sim.connects == []


def test_outlook_com_address_needs_modern_auth(exchange_config: ExchangeConfig) -> None:
    code, _ = outcome(lambda: discover("someone@outlook.com", "pw", config=exchange_config))
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
    code, failure = outcome(lambda: verify("a@contoso.test", "pw-123", "a", server, config=strict_config))
    # Then it is refused, and nothing was connected or received
    assert code == Diagnosis.BLOCKED_ADDRESS, failure
    assert exchange_sim.connects == []
    assert exchange_sim.requests_seen == []


def test_discovery_with_allow_list_off_connects_nowhere(
    exchange_sim: ExchangeSimulator, strict_config: ExchangeConfig
) -> None:
    # Given a domain whose names all resolve to 127.0.0.1 and the allow-list OFF
    code, _ = outcome(lambda: discover("alice@contoso.test", "Alice-Pass-1", config=strict_config))
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
    code, _ = outcome(lambda: discover(s.email, s.password, s.username, config=exchange_config))
    # Then the address is refused, and no connection to it was even attempted
    assert code == Diagnosis.BLOCKED_ADDRESS
    assert all(c.host != private for c in exchange_sim.connects)
    assert not any(c.refused for c in exchange_sim.connects)


def test_the_connected_peer_is_checked_too(
    exchange_sim: ExchangeSimulator, strict_config: ExchangeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onboarding.exchange_guard as guard

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
    code, _ = outcome(lambda: verify("a@x.test", "pw-123", "a", "public.example.test", config=strict_config))
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
            "CONTOSO\\alice",
            ews_url="http://mail.contoso.test/EWS/Exchange.asmx",
            auth_type="NTLM",
            config=exchange_config,
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


def test_config_from_env() -> None:
    config = ExchangeConfig.from_env(
        {
            "EXCHANGE_DISCOVERY_TIMEOUT": "4.5",
            "EXCHANGE_VERIFY_TIMEOUT": "6",
            "EXCHANGE_ALLOW_NETWORKS": "127.0.0.0/8, ::1/128",
            "EXCHANGE_CA_BUNDLE": "/tmp/ca.pem",
        }
    )
    assert config == ExchangeConfig(
        discovery_timeout=4.5,
        verify_timeout=6,
        allow_networks=("127.0.0.0/8", "::1/128"),
        ca_bundle="/tmp/ca.pem",
    )
    assert ExchangeConfig.from_env({}) == ExchangeConfig()


def test_importing_the_module_does_not_import_exchangelib() -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'layers' / 'common'}{os.pathsep}{REPO}"}
    code = (
        "import sys, onboarding.exchange; sys.exit('exchangelib' in sys.modules or 'requests' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0

"""The simulator itself: unmodified exchangelib works against it; DNS, routing, TLS, NTLM behave."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.resolver
import pytest
import requests

from devstack.exchange_sim import ExchangeSimulator
from devstack.exchange_sim.routing import sim_resolver
from tests.exchange_fixtures import SIM_BUILD

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def trust_sim_ca(exchange_sim: ExchangeSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain requests/exchangelib trust the simulator's throw-away CA (verification stays on)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", exchange_sim.ca_bundle)


@pytest.fixture(autouse=True)
def _clean_exchangelib_caches() -> Iterator[None]:
    from exchangelib.autodiscover import clear_cache
    from exchangelib.protocol import close_connections

    yield
    close_connections()
    clear_cache()


def test_starts_fast_and_stops_without_leaving_threads() -> None:
    before = {t.ident for t in threading.enumerate()}
    original_getaddrinfo, original_connect = socket.getaddrinfo, socket.socket.connect
    started = time.monotonic()
    with ExchangeSimulator() as sim:
        assert time.monotonic() - started < 2.0
        assert Path(sim.ca_bundle).is_file()
    leftovers = [t for t in threading.enumerate() if t.ident not in before and t.is_alive() and not t.daemon]
    assert leftovers == []
    assert socket.getaddrinfo is original_getaddrinfo
    assert socket.socket.connect is original_connect


def test_plain_exchangelib_autodiscovers_and_reads_the_inbox(trust_sim_ca: None) -> None:
    from exchangelib import Account, Credentials

    # Given unmodified exchangelib with autodiscover (NTLM, autodiscover on the domain)
    account = Account(
        "alice@contoso.test", credentials=Credentials("CONTOSO\\alice", "Alice-Pass-1"), autodiscover=True
    )
    # Then it reads the inbox count and the Exchange 2019 build
    assert account.inbox.total_count == 42
    assert str(account.version.build) == SIM_BUILD


@pytest.mark.parametrize("login", ["ADATUM\\dave", "dave@adatum.test"])
def test_plain_exchangelib_with_manual_server(trust_sim_ca: None, login: str) -> None:
    from exchangelib import DELEGATE, Account, Configuration, Credentials

    config = Configuration(server="mail.adatum.test", credentials=Credentials(login, "Dave-Pass-7"))
    account = Account("dave@adatum.test", config=config, autodiscover=False, access_type=DELEGATE)
    assert account.inbox.total_count == 5


def test_plain_exchangelib_follows_the_http_redirect_and_srv(trust_sim_ca: None) -> None:
    from exchangelib import Account, Credentials

    carl = Account(
        "carl@tailspin.test", credentials=Credentials("carl@tailspin.test", "Carl-Pass-5"), autodiscover=True
    )
    dora = Account(
        "dora@northwind.test",
        credentials=Credentials("dora@northwind.test", "Dora-Pass-6"),
        autodiscover=True,
    )
    assert carl.inbox.total_count == 11
    assert dora.inbox.total_count == 0


def test_ntlm_counts_a_wrong_password(exchange_sim: ExchangeSimulator, trust_sim_ca: None) -> None:
    from requests_ntlm import HttpNtlmAuth

    response = requests.post(
        "https://mail.contoso.test/EWS/Exchange.asmx",
        data=b"<x/>",
        auth=HttpNtlmAuth("CONTOSO\\alice", "wrong"),
        timeout=5,
    )
    assert response.status_code == 401
    assert [(a.login, a.ok) for a in exchange_sim.auth_attempts] == [("CONTOSO\\alice", False)]


def test_bearer_only_challenge(exchange_sim: ExchangeSimulator, trust_sim_ca: None) -> None:
    response = requests.post("https://mail.m365.test/EWS/Exchange.asmx", data=b"<x/>", timeout=5)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


def test_certificate_for_another_name_fails_verification(trust_sim_ca: None) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.post("https://mail.litware.test/EWS/Exchange.asmx", data=b"<x/>", timeout=5)


def test_dns_answers_a_srv_nxdomain_and_stays_silent(exchange_sim: ExchangeSimulator) -> None:
    resolver = sim_resolver(exchange_sim.dns_port, lifetime=1.0)
    assert str(next(iter(resolver.resolve("mail.contoso.test.", "A")))) == "127.0.0.1"
    srv = next(iter(resolver.resolve("_autodiscover._tcp.northwind.test.", "SRV")))
    assert (srv.port, str(srv.target)) == (443, "exch.northwind.test.")
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("nothing.nowhere.test.", "A")
    with pytest.raises(dns.resolver.LifetimeTimeout):
        resolver.resolve("mail.quiet.test.", "A")


def test_routing_maps_simulated_names_and_refuses_everything_else(exchange_sim: ExchangeSimulator) -> None:
    (info,) = socket.getaddrinfo("mail.contoso.test", 443)
    assert info[4][:2] == ("127.0.0.1", exchange_sim.https_port)
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("example.com", 443)  # never real DNS while installed
    # and a private peer is never really contacted, whoever asks
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("10.0.0.5", 443))
    assert exchange_sim.connects[-1].refused


def test_hung_server_accepts_but_never_answers(trust_sim_ca: None) -> None:
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get("https://mail.slowpoke.test/EWS/Exchange.asmx", timeout=(2, 0.5))


def test_http_redirect_endpoint(exchange_sim: ExchangeSimulator) -> None:
    response = requests.get(
        "http://autodiscover.tailspin.test/autodiscover/autodiscover.svc", allow_redirects=False, timeout=5
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "https://mail.tailspin.test/autodiscover/autodiscover.svc"


def test_standalone_runner_lists_scenarios() -> None:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'layers' / 'common'}{os.pathsep}{REPO}"}
    out = subprocess.run(
        [sys.executable, "-m", "devstack.exchange_sim", "--list"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    assert "autodiscover_domain" in out
    assert "wrong_password" in out


def test_negotiate_only_and_hybrid_challenges(exchange_sim: ExchangeSimulator, trust_sim_ca: None) -> None:
    # Given IIS with NTLM only inside Negotiate, and one with hybrid modern auth next to NTLM
    negotiate = requests.post("https://mail.vanarsdel.test/EWS/Exchange.asmx", data=b"<x/>", timeout=5)
    hybrid = requests.post("https://mail.lucerne.test/EWS/Exchange.asmx", data=b"<x/>", timeout=5)
    # Then the first offers only Negotiate; the second sends one header per scheme, Bearer's with commas inside
    assert negotiate.raw.headers.getlist("WWW-Authenticate") == ["Negotiate"]
    headers = hybrid.raw.headers.getlist("WWW-Authenticate")
    assert headers[0].startswith("Bearer ")
    assert "@*," in headers[0]
    assert headers[1:] == ["Negotiate", "NTLM", 'Basic realm="mail.lucerne.test"']


def test_a_website_answers_every_path_and_credentials_are_recorded_wherever_they_go(
    exchange_sim: ExchangeSimulator, trust_sim_ca: None
) -> None:
    # Given a company website on the bare domain
    response = requests.post(
        "https://woodgrove.test/autodiscover/autodiscover.svc", data=b"<x/>", auth=("frank", "pw"), timeout=5
    )
    # Then it answers like a website, and the credential it was sent is on the simulator's record
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    (arrival,) = exchange_sim.credentials_seen
    assert (arrival.host, arrival.path, arrival.scheme, arrival.login) == (
        "woodgrove.test",
        "/autodiscover/autodiscover.svc",
        "Basic",
        "frank",
    )


def test_autodiscover_v2_answers_the_ews_url_without_credentials(
    exchange_sim: ExchangeSimulator, trust_sim_ca: None
) -> None:
    response = requests.get(
        "https://autodiscover.v2.test/autodiscover/autodiscover.json/v1.0/xena@v2.test?Protocol=EWS",
        timeout=5,
    )
    assert response.json() == {"Protocol": "EWS", "Url": "https://mail.v2.test/EWS/Exchange.asmx"}


def test_a_second_simulator_routes_on_top_of_the_first() -> None:
    # Given a simulator whose routing is installed for the whole session (as the workflow tests keep one)
    with ExchangeSimulator() as outer:
        # When a second one installs its routing on top (as the layer tests do per test)
        with ExchangeSimulator() as inner:
            # Then names go to the second one's listeners, not to the first's
            (info,) = socket.getaddrinfo("mail.contoso.test", 443)
            assert info[4][1] == inner.https_port
        # And back to the first when the second is gone
        (info,) = socket.getaddrinfo("mail.contoso.test", 443)
        assert info[4][1] == outer.https_port


# ---------------------------------------------------------------- issue 19: what real servers answer


def _basic(login: str, password: str, encoding: str = "utf-8") -> dict[str, str]:
    """RFC 7617 section 2: base64 of user-id ":" password (built by hand: requests encodes Latin-1)."""
    import base64

    raw = f"{login}:{password}".encode(encoding)
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def test_basic_decodes_utf8_as_rfc_7617_says(exchange_sim: ExchangeSimulator, trust_sim_ca: None) -> None:
    url = "https://mail.kielce.test/EWS/Exchange.asmx"
    # The challenge announces the charset
    challenge = requests.post(url, data=b"<x/>", timeout=5)
    assert challenge.status_code == 401
    assert challenge.headers["WWW-Authenticate"] == 'Basic realm="mail.kielce.test", charset="UTF-8"'
    # The right password outside Latin-1, in UTF-8, signs in; a wrong one (and the right one in another
    # encoding) is refused
    right = requests.post(
        url, data=b"<x/>", headers=_basic("zofia@kielce.test", "Zażółć-Ключ-密码-42"), timeout=5
    )
    wrong = requests.post(
        url, data=b"<x/>", headers=_basic("zofia@kielce.test", "Zażółć-Ключ-密码-43"), timeout=5
    )
    utf16 = _basic("zofia@kielce.test", "Zażółć-Ключ-密码-42", "utf-16-le")
    other = requests.post(url, data=b"<x/>", headers=utf16, timeout=5)
    assert (right.status_code, wrong.status_code, other.status_code) == (200, 401, 401)
    assert [a.ok for a in exchange_sim.attempts_for("zofia@kielce.test")] == [True, False]


def test_a_throttled_mailbox_answers_the_documented_fault(trust_sim_ca: None) -> None:
    from exchangelib import DELEGATE, Account, Configuration, Credentials, FailFast
    from exchangelib.errors import ErrorServerBusy

    # Given plain exchangelib, failing fast, on a mailbox EWS throttles
    config = Configuration(
        server="mail.throttled.test",
        credentials=Credentials("ugo@throttled.test", "Ugo-Pass-38"),
        retry_policy=FailFast(),
    )
    account = Account("ugo@throttled.test", config=config, autodiscover=False, access_type=DELEGATE)
    # Then GetFolder fails with ErrorServerBusy carrying the back-off (BackOffMilliseconds, in seconds)
    with pytest.raises(ErrorServerBusy) as busy:
        account.inbox.refresh()
    assert busy.value.back_off == pytest.approx(297.749)


def test_unavailable_servers_answer_503_with_retry_after(
    exchange_sim: ExchangeSimulator, trust_sim_ca: None
) -> None:
    from email.utils import parsedate_to_datetime

    # A draining server: 503 with delta-seconds once, then the service (a 401 challenge)
    first = requests.post("https://mail.draining.test/EWS/Exchange.asmx", data=b"<x/>", timeout=5)
    second = requests.post("https://mail.draining.test/EWS/Exchange.asmx", data=b"<x/>", timeout=5)
    assert (first.status_code, first.headers["Retry-After"], second.status_code) == (503, "1", 401)
    # A server in maintenance: 503 every time, Retry-After an HTTP-date (RFC 9110 section 5.6.7, IMF-fixdate)
    for _ in range(2):
        down = requests.post("https://mail.maintenance.test/EWS/Exchange.asmx", data=b"<x/>", timeout=5)
        assert down.status_code == 503
        assert down.headers["Retry-After"].endswith(" GMT")
        assert parsedate_to_datetime(down.headers["Retry-After"]).tzinfo is not None


def test_ews_turned_off_for_a_mailbox_answers_403_after_signing_in(
    exchange_sim: ExchangeSimulator, trust_sim_ca: None
) -> None:
    from exchangelib import DELEGATE, Account, Configuration, Credentials, FailFast
    from exchangelib.errors import TransportError

    config = Configuration(
        server="mail.contoso.test",
        credentials=Credentials("CONTOSO\\eli", "Eli-Pass-43"),
        retry_policy=FailFast(),
    )
    account = Account("eli@contoso.test", config=config, autodiscover=False, access_type=DELEGATE)
    with pytest.raises(TransportError):
        account.inbox.refresh()
    # The sign-in worked (NTLM), and EWS answered 403
    assert [a.ok for a in exchange_sim.attempts_for("eli@contoso.test")] == [True]
    assert 403 in [r.status for r in exchange_sim.requests_seen if r.host == "mail.contoso.test"]

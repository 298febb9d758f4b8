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


# ---------------------------------------------------------------- GetPasswordExpirationDate (MS-OXWSPED)

MNS = "http://schemas.microsoft.com/exchange/services/2006/messages"


def _expiry_request(address: str | None) -> bytes:
    mailbox = f"<m:MailboxSmtpAddress>{address}</m:MailboxSmtpAddress>" if address else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:m="{MNS}" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Header>'
        '<t:RequestServerVersion Version="Exchange2010_SP2"/></s:Header><s:Body>'
        f"<m:GetPasswordExpirationDate>{mailbox}</m:GetPasswordExpirationDate></s:Body></s:Envelope>"
    ).encode()


def _ask_expiry(server: str, login: str, password: str, address: str | None) -> requests.Response:
    from requests_ntlm import HttpNtlmAuth

    return requests.post(
        f"https://{server}/EWS/Exchange.asmx",
        data=_expiry_request(address),
        headers={"Content-Type": "text/xml; charset=utf-8"},
        auth=HttpNtlmAuth(login, password),
        timeout=5,
    )


def _expiry_answer(response: requests.Response) -> tuple[str, str, str | None]:
    """(ResponseClass, ResponseCode, PasswordExpirationDate text) of a GetPasswordExpirationDateResponse."""
    import xml.etree.ElementTree as ET

    body = ET.fromstring(response.content).find(  # noqa: S314 - our own simulator's answer
        "{http://schemas.xmlsoap.org/soap/envelope/}Body"
    )
    assert body is not None
    answer = body.find(f"{{{MNS}}}GetPasswordExpirationDateResponse")  # not wrapped in ResponseMessages
    assert answer is not None, response.text
    code = answer.findtext(f"{{{MNS}}}ResponseCode") or ""
    date = answer.find(f"{{{MNS}}}PasswordExpirationDate")
    return answer.get("ResponseClass", ""), code, None if date is None else (date.text or "")


def test_password_expiration_date_answers_the_account_s_expiry(
    exchange_sim: ExchangeSimulator, trust_sim_ca: None
) -> None:
    import datetime as dt

    # Given Alice's account, whose password expires in 60 days, asked for her own address over NTLM
    response = _ask_expiry("mail.contoso.test", "CONTOSO\\alice", "Alice-Pass-1", "alice@contoso.test")
    # Then the answer is Success / NoError with an xs:dateTime about 60 days ahead
    assert response.status_code == 200
    klass, code, date = _expiry_answer(response)
    assert (klass, code) == ("Success", "NoError")
    assert date is not None
    assert date.endswith("Z")
    expires = dt.datetime.fromisoformat(date)
    assert dt.timedelta(days=59) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(days=60)
    assert exchange_sim.account("alice@contoso.test").password_expires == expires
    # And the operation is counted like the others (the NTLM handshake's legs carry it too)
    ops = [r.operation for r in exchange_sim.requests_seen if r.host == "mail.contoso.test"]
    assert ops
    assert set(ops) == {"GetPasswordExpirationDate"}
    assert len(ops) == 3  # anonymous 401, NEGOTIATE -> CHALLENGE, AUTHENTICATE -> the answer


def test_password_expiration_date_never_expires_other_mailboxes_and_no_address(
    exchange_sim: ExchangeSimulator, trust_sim_ca: None
) -> None:
    # A password that never expires: Success, the element empty
    never = _ask_expiry("mail.adatum.test", "ADATUM\\erin", "Erin-Pass-8", "erin@adatum.test")
    assert _expiry_answer(never) == ("Success", "NoError", "")
    # No address: the caller's own account
    own = _ask_expiry("mail.adatum.test", "ADATUM\\dave", "Dave-Pass-7", None)
    assert _expiry_answer(own)[:2] == ("Success", "NoError")
    assert _expiry_answer(own)[2]
    # Someone else's mailbox, or no mailbox at all: an Error response message
    other = _ask_expiry("mail.adatum.test", "ADATUM\\dave", "Dave-Pass-7", "erin@adatum.test")
    ghost = _ask_expiry("mail.adatum.test", "ADATUM\\dave", "Dave-Pass-7", "ghost@adatum.test")
    assert _expiry_answer(other) == ("Error", "ErrorAccessDenied", None)
    assert _expiry_answer(ghost) == ("Error", "ErrorNonExistentMailbox", None)


def test_a_server_older_than_exchange_2010_sp2_answers_a_schema_validation_fault(
    exchange_sim: ExchangeSimulator, trust_sim_ca: None
) -> None:
    from exchangelib import DELEGATE, Account, Configuration, Credentials

    # Given the Exchange 2010 RTM server, which exchangelib reads the inbox of
    config = Configuration(
        server="mail.oldtimer.test", credentials=Credentials("otto@oldtimer.test", "Otto-Pass-44")
    )
    account = Account("otto@oldtimer.test", config=config, autodiscover=False, access_type=DELEGATE)
    assert account.inbox.total_count == 29
    assert str(account.version.build) == "14.0.639.21"
    # When asked GetPasswordExpirationDate, which came with Exchange 2010 SP2
    response = _ask_expiry("mail.oldtimer.test", "otto@oldtimer.test", "Otto-Pass-44", "otto@oldtimer.test")
    # Then it answers as EWS answers a request its schema does not know: HTTP 500, ErrorSchemaValidation
    assert response.status_code == 500
    assert "<faultcode" in response.text
    assert "a:ErrorSchemaValidation" in response.text
    assert "GetPasswordExpirationDate" in response.text


# ---------------------------------------------------------------- controls: password, expiry, lockout, offline

CONTOSO_EWS = "https://mail.contoso.test/EWS/Exchange.asmx"


def _ntlm_post(login: str, password: str, session: requests.Session | None = None) -> int:
    from requests_ntlm import HttpNtlmAuth

    return (
        (session or requests)
        .post(CONTOSO_EWS, data=_expiry_request(None), auth=HttpNtlmAuth(login, password), timeout=5)
        .status_code
    )


def test_set_password_refuses_the_old_one_at_once_even_on_an_open_connection(
    exchange_sim: ExchangeSimulator, trust_sim_ca: None
) -> None:
    # Given Bob signed in over a kept-alive NTLM connection
    session = requests.Session()
    assert _ntlm_post("CONTOSO\\bob", "Bob-Pass-2", session) == 200
    before = exchange_sim.account("bob@contoso.test").password_expires
    # When his password is changed
    exchange_sim.set_password("bob@contoso.test", "Bob-New-Pass-9")
    # Then the old password is refused, on that connection and a new one; the new one signs in
    assert _ntlm_post("CONTOSO\\bob", "Bob-Pass-2", session) == 401
    assert _ntlm_post("CONTOSO\\bob", "Bob-Pass-2") == 401
    assert _ntlm_post("CONTOSO\\bob", "Bob-New-Pass-9") == 200
    # And so does Basic, and the expiry moved ahead; the state says the password changed
    basic = requests.post(
        CONTOSO_EWS, data=b"<x/>", headers=_basic("bob@contoso.test", "Bob-New-Pass-9"), timeout=5
    )
    assert basic.status_code == 200
    view = exchange_sim.account("bob@contoso.test")
    assert view.password_changed
    assert view.password_expires is not None
    assert before is not None
    assert view.password_expires >= before


def test_an_expired_password_is_refused_without_counting_and_the_date_is_answered(
    exchange_sim: ExchangeSimulator, trust_sim_ca: None
) -> None:
    import datetime as dt

    # Given Alice's password set to expire in 3 days: the answer says so, and she signs in
    soon = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=3)
    exchange_sim.expire_password("alice@contoso.test", soon)
    answer = _ask_expiry("mail.contoso.test", "CONTOSO\\alice", "Alice-Pass-1", "alice@contoso.test")
    assert _expiry_answer(answer)[2] == soon.strftime("%Y-%m-%dT%H:%M:%SZ")
    # When the date has passed
    exchange_sim.expire_password("alice@contoso.test", dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    # Then the right password is refused like a wrong one (401), and that refusal does not count towards lockout
    assert _ntlm_post("CONTOSO\\alice", "Alice-Pass-1") == 401
    view = exchange_sim.account("alice@contoso.test")
    assert view.password_expired
    assert view.bad_password_count == 0
    assert not view.locked
    # And a new password (the owner changed it) signs in again
    exchange_sim.set_password("alice@contoso.test", "Alice-Pass-2")
    assert _ntlm_post("CONTOSO\\alice", "Alice-Pass-2") == 200


def test_wrong_passwords_lock_the_account_as_the_lockout_policy_says(
    exchange_sim: ExchangeSimulator, trust_sim_ca: None
) -> None:
    # Given a domain that locks an account after 3 wrong passwords
    exchange_sim.set_lockout_policy(3)
    # When 2 wrong passwords arrive, the account is not locked yet; the right one still signs in (count to 0)
    assert [_ntlm_post("CONTOSO\\bob", "wrong") for _ in range(2)] == [401, 401]
    assert exchange_sim.account("bob@contoso.test").bad_password_count == 2
    assert _ntlm_post("CONTOSO\\bob", "Bob-Pass-2") == 200
    assert exchange_sim.account("bob@contoso.test").bad_password_count == 0
    # When 3 wrong ones arrive
    assert [_ntlm_post("CONTOSO\\bob", "wrong") for _ in range(3)] == [401, 401, 401]
    # Then the account is locked: the right password gets 456 (Basic too), and nothing more counts
    assert _ntlm_post("CONTOSO\\bob", "Bob-Pass-2") == 456
    basic = requests.post(
        CONTOSO_EWS, data=b"<x/>", headers=_basic("bob@contoso.test", "Bob-Pass-2"), timeout=5
    )
    assert basic.status_code == 456
    view = exchange_sim.account("bob@contoso.test")
    assert view.locked
    assert view.bad_password_count == 3
    assert view.locked_until is not None
    # And an administrator's unlock lets the right password in again
    exchange_sim.unlock_account("bob@contoso.test")
    assert _ntlm_post("CONTOSO\\bob", "Bob-Pass-2") == 200


def test_without_a_policy_wrong_passwords_never_lock(
    exchange_sim: ExchangeSimulator, trust_sim_ca: None
) -> None:
    assert [_ntlm_post("CONTOSO\\bob", "wrong") for _ in range(12)] == [401] * 12
    assert exchange_sim.account("bob@contoso.test").bad_password_count == 12
    assert _ntlm_post("CONTOSO\\bob", "Bob-Pass-2") == 200


def test_lock_account_until_an_admin_or_a_time(exchange_sim: ExchangeSimulator, trust_sim_ca: None) -> None:
    import datetime as dt

    exchange_sim.lock_account("bob@contoso.test")
    assert _ntlm_post("CONTOSO\\bob", "Bob-Pass-2") == 456
    view = exchange_sim.account("bob@contoso.test")
    assert view.locked
    assert view.locked_until is None
    exchange_sim.unlock_account("bob@contoso.test")
    # A lockout that already ended locks nothing
    exchange_sim.lock_account("bob@contoso.test", until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    assert _ntlm_post("CONTOSO\\bob", "Bob-Pass-2") == 200


def test_lockout_window_and_duration_follow_the_clock() -> None:
    import datetime as dt

    now = [1_000_000.0]
    with ExchangeSimulator(clock=lambda: now[0]) as sim:
        env = {"REQUESTS_CA_BUNDLE": sim.ca_bundle}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            sim.set_lockout_policy(2, window=dt.timedelta(minutes=30), duration=dt.timedelta(minutes=30))
            # A wrong password, then another after the observation window: the count restarted, not locked
            assert _ntlm_post("CONTOSO\\bob", "wrong") == 401
            now[0] += 31 * 60
            assert _ntlm_post("CONTOSO\\bob", "wrong") == 401
            assert sim.account("bob@contoso.test").bad_password_count == 1
            # A second one inside the window: locked for 30 minutes
            assert _ntlm_post("CONTOSO\\bob", "wrong") == 401
            assert _ntlm_post("CONTOSO\\bob", "Bob-Pass-2") == 456
            now[0] += 29 * 60
            assert _ntlm_post("CONTOSO\\bob", "Bob-Pass-2") == 456
            # After the lockout duration: unlocked by itself
            now[0] += 2 * 60
            assert _ntlm_post("CONTOSO\\bob", "Bob-Pass-2") == 200
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def test_a_server_taken_offline_refuses_connections_or_answers_503(
    exchange_sim: ExchangeSimulator, trust_sim_ca: None
) -> None:
    # Given a kept-alive connection to Alice's EWS server
    session = requests.Session()
    assert session.post(CONTOSO_EWS, data=b"<x/>", timeout=5).status_code == 401
    # When her server is taken offline (by her address)
    assert exchange_sim.take_offline("alice@contoso.test") == ["mail.contoso.test"]
    assert exchange_sim.account("alice@contoso.test").offline_hosts == ("mail.contoso.test",)
    # Then the open connection is closed unanswered, and new ones are refused
    with pytest.raises(requests.exceptions.ConnectionError):
        session.post(CONTOSO_EWS, data=b"<x/>", timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(CONTOSO_EWS, data=b"<x/>", timeout=5)
    # When it is up, but its application pool down: 503
    exchange_sim.take_offline("mail.contoso.test", how="503")
    down = requests.post(CONTOSO_EWS, data=b"<x/>", timeout=5)
    assert down.status_code == 503
    # When it comes back: served again (the 401 challenge)
    assert exchange_sim.bring_online("alice@contoso.test") == ["mail.contoso.test"]
    assert requests.post(CONTOSO_EWS, data=b"<x/>", timeout=5).status_code == 401
    assert exchange_sim.account("alice@contoso.test").offline_hosts == ()


def test_reset_controls_restores_the_scenarios(exchange_sim: ExchangeSimulator, trust_sim_ca: None) -> None:
    exchange_sim.set_password("bob@contoso.test", "Other-1")
    exchange_sim.lock_account("alice@contoso.test")
    exchange_sim.take_offline("mail.adatum.test")
    exchange_sim.reset_controls()
    assert _ntlm_post("CONTOSO\\bob", "Bob-Pass-2") == 200
    assert _ntlm_post("CONTOSO\\alice", "Alice-Pass-1") == 200
    assert exchange_sim.offline_hosts() == {}
    assert not exchange_sim.account("bob@contoso.test").password_changed

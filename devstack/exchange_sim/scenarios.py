"""The simulated Exchange world and the scenarios played against it -- pure data.

Shared by the tests, the local stack and the benches. Everything lives under the reserved ``.test`` TLD.

* ``HOSTS``: every simulated DNS name, what its A record says and what listens on its ports 443 and 80.
* ``SRV_RECORDS``: SRV answers (``_autodiscover._tcp.<domain>``).
* ``SILENT_ZONES``: the simulated DNS server never answers for names under these.
* ``MAILBOXES``: mailboxes, their logins/passwords, inbox size and the EWS URL autodiscover hands out.
* ``SCENARIOS``: what a caller types (email, password, username, manual server) and the verdict we expect
  from ``discover()`` and ``verify()`` ("ok" or a ``Diagnosis`` value).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Https = Literal["serve", "wrong_cert", "hang", "refuse"]
Auth = Literal["NTLM", "Basic", "Bearer"]

EXCHANGE_BUILD = "15.2.1544.4"  # Exchange Server 2019 CU14
OK = "ok"


@dataclass(frozen=True)
class Host:
    """One simulated DNS name."""

    address: str = "127.0.0.1"  # A record; loopback means "served by the simulator"
    https: Https = "refuse"  # what answers on port 443
    http_redirect: str | None = None  # port 80: 302 to this URL for GET /autodiscover/autodiscover.svc
    autodiscover: bool = False  # serves POST /autodiscover/autodiscover.svc (SOAP GetUserSettings)
    ews: bool = False  # serves POST /EWS/Exchange.asmx
    auth: tuple[Auth, ...] = ("NTLM",)  # offered in the 401 challenge, in this order


@dataclass(frozen=True)
class Mailbox:
    """One mailbox. ``logins`` are the NTLM/Basic user names that sign in as its owner."""

    password: str
    logins: tuple[str, ...]
    inbox_count: int = 0
    ews_url: str = ""  # ExternalEwsUrl/InternalEwsUrl answered by autodiscover
    locked: bool = False  # correct password -> HTTP 456 (Exchange: account locked out / password expired)
    display_name: str = ""


@dataclass(frozen=True)
class Scenario:
    """What a mailbox owner types, and the verdicts we expect."""

    name: str
    description: str
    email: str
    password: str
    username: str | None = None  # login to use; None -> the email address
    server: str | None = None  # manual server for verify(); None -> verify the settings discover() found
    expect_discover: str = OK
    expect_verify: str = OK
    inbox_count: int | None = None
    slow: bool = False  # plain exchangelib waits a long time here (bench)
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def login(self) -> str:
        return self.username or self.email


def _ews(host: str) -> str:
    return f"https://{host}/EWS/Exchange.asmx"


HOSTS: dict[str, Host] = {
    # contoso.test: autodiscover on the domain itself (step 1), NTLM.
    "contoso.test": Host(https="serve", autodiscover=True, auth=("NTLM",)),
    "mail.contoso.test": Host(https="serve", ews=True, autodiscover=True, auth=("NTLM", "Basic")),
    "down.contoso.test": Host(https="refuse"),
    # fabrikam.test: no A record for the domain; autodiscover.<domain> (step 2), Basic.
    "autodiscover.fabrikam.test": Host(https="serve", autodiscover=True, auth=("Basic",)),
    "mail.fabrikam.test": Host(https="serve", ews=True, auth=("Basic",)),
    # tailspin.test: autodiscover.<domain> only answers an HTTP redirect on port 80 (step 3).
    "autodiscover.tailspin.test": Host(
        https="refuse", http_redirect="https://mail.tailspin.test/autodiscover/autodiscover.svc"
    ),
    "mail.tailspin.test": Host(https="serve", autodiscover=True, ews=True, auth=("NTLM",)),
    # northwind.test: only an SRV record (step 4), Basic.
    "exch.northwind.test": Host(https="serve", autodiscover=True, ews=True, auth=("Basic",)),
    # adatum.test: no autodiscover at all; manual server settings.
    "mail.adatum.test": Host(https="serve", ews=True, auth=("NTLM",)),
    # m365.test: Microsoft 365 lookalike, accepts only OAuth (Bearer).
    "autodiscover.m365.test": Host(https="serve", autodiscover=True, auth=("Bearer",)),
    "mail.m365.test": Host(https="serve", ews=True, auth=("Bearer",)),
    # hybrid.test: on-premises autodiscover that hands out Exchange Online's EWS URL.
    "autodiscover.hybrid.test": Host(https="serve", autodiscover=True, auth=("NTLM",)),
    # litware.test: certificate issued for another name.
    "autodiscover.litware.test": Host(https="wrong_cert", autodiscover=True, ews=True),
    "mail.litware.test": Host(https="wrong_cert", autodiscover=True, ews=True),
    # slowpoke.test: accepts TCP, never answers.
    "autodiscover.slowpoke.test": Host(https="hang"),
    "mail.slowpoke.test": Host(https="hang"),
    # offline.test: names resolve, nothing listens.
    "offline.test": Host(https="refuse"),
    "autodiscover.offline.test": Host(https="refuse"),
    "mail.offline.test": Host(https="refuse"),
    # evil.test / intranet.test / evil2.test: answers that point at private addresses (SSRF).
    "autodiscover.evil.test": Host(https="serve", autodiscover=True, auth=("Basic",)),
    "mail.intranet.test": Host(address="10.0.0.5", https="serve", ews=True),
    "autodiscover.evil2.test": Host(
        https="refuse", http_redirect="https://169.254.169.254/autodiscover/autodiscover.svc"
    ),
}

SRV_RECORDS: dict[str, list[tuple[int, int, int, str]]] = {
    # name -> [(priority, weight, port, target)]
    "_autodiscover._tcp.northwind.test": [(0, 0, 443, "exch.northwind.test")],
}

SILENT_ZONES: tuple[str, ...] = ("quiet.test",)

MAILBOXES: dict[str, Mailbox] = {
    "alice@contoso.test": Mailbox(
        password="Alice-Pass-1",
        logins=("CONTOSO\\alice", "alice@contoso.test"),
        inbox_count=42,
        ews_url=_ews("mail.contoso.test"),
        display_name="Alice Archer",
    ),
    "bob@contoso.test": Mailbox(
        password="Bob-Pass-2",
        logins=("CONTOSO\\bob", "bob@contoso.test"),
        inbox_count=7,
        ews_url=_ews("mail.contoso.test"),
    ),
    "lars@contoso.test": Mailbox(
        password="Lars-Pass-3",
        logins=("CONTOSO\\lars", "lars@contoso.test"),
        ews_url=_ews("mail.contoso.test"),
        locked=True,
    ),
    "bea@fabrikam.test": Mailbox(
        password="Bea-Pass-4", logins=("bea@fabrikam.test",), inbox_count=3, ews_url=_ews("mail.fabrikam.test")
    ),
    "carl@tailspin.test": Mailbox(
        password="Carl-Pass-5",
        logins=("TAILSPIN\\carl", "carl@tailspin.test"),
        inbox_count=11,
        ews_url=_ews("mail.tailspin.test"),
    ),
    "dora@northwind.test": Mailbox(
        password="Dora-Pass-6", logins=("dora@northwind.test",), inbox_count=0, ews_url=_ews("exch.northwind.test")
    ),
    "dave@adatum.test": Mailbox(
        password="Dave-Pass-7", logins=("ADATUM\\dave", "dave@adatum.test"), inbox_count=5
    ),
    "erin@adatum.test": Mailbox(
        password="Erin-Pass-8", logins=("ADATUM\\erin", "erin@adatum.test"), inbox_count=9
    ),
    "mia@m365.test": Mailbox(
        password="Mia-Pass-9", logins=("mia@m365.test",), ews_url="https://outlook.office365.com/EWS/Exchange.asmx"
    ),
    "hank@hybrid.test": Mailbox(
        password="Hank-Pass-10",
        logins=("HYBRID\\hank", "hank@hybrid.test"),
        ews_url="https://outlook.office365.com/EWS/Exchange.asmx",
    ),
    "walt@litware.test": Mailbox(
        password="Walt-Pass-11", logins=("LITWARE\\walt",), ews_url=_ews("mail.litware.test")
    ),
    "eve@evil.test": Mailbox(
        password="Eve-Pass-12", logins=("eve@evil.test",), ews_url="https://10.0.0.5/EWS/Exchange.asmx"
    ),
}

_WRONG = "Not-The-Password-0"

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "autodiscover_domain",
        "Autodiscover answers on https://<domain>/ (step 1); NTLM with DOMAIN\\user.",
        "alice@contoso.test",
        "Alice-Pass-1",
        username="CONTOSO\\alice",
        inbox_count=42,
    ),
    Scenario(
        "autodiscover_subdomain",
        "Autodiscover answers on https://autodiscover.<domain>/ (step 2); Basic.",
        "bea@fabrikam.test",
        "Bea-Pass-4",
        inbox_count=3,
    ),
    Scenario(
        "autodiscover_http_redirect",
        "http://autodiscover.<domain>/ redirects to the real autodiscover endpoint (step 3); NTLM with user@domain.",
        "carl@tailspin.test",
        "Carl-Pass-5",
        inbox_count=11,
    ),
    Scenario(
        "autodiscover_srv",
        "Only an SRV record _autodiscover._tcp.<domain> points at the server (step 4); Basic.",
        "dora@northwind.test",
        "Dora-Pass-6",
        inbox_count=0,
    ),
    Scenario(
        "manual_domain_user",
        "No autodiscover at all; manual server with DOMAIN\\user (NTLM).",
        "dave@adatum.test",
        "Dave-Pass-7",
        username="ADATUM\\dave",
        server="mail.adatum.test",
        expect_discover="autodiscover_failed",
        inbox_count=5,
    ),
    Scenario(
        "manual_upn",
        "No autodiscover at all; manual server with user@domain as the login (NTLM).",
        "erin@adatum.test",
        "Erin-Pass-8",
        username="erin@adatum.test",
        server="mail.adatum.test",
        expect_discover="autodiscover_failed",
        inbox_count=9,
    ),
    Scenario(
        "wrong_password",
        "Wrong password: must be tried once only (lockout).",
        "alice@contoso.test",
        _WRONG,
        username="CONTOSO\\alice",
        server="mail.contoso.test",
        expect_discover="auth_failed",
        expect_verify="auth_failed",
    ),
    Scenario(
        "locked_account",
        "Right password, account locked: the server answers HTTP 456.",
        "lars@contoso.test",
        "Lars-Pass-3",
        username="CONTOSO\\lars",
        server="mail.contoso.test",
        expect_discover="account_locked",
        expect_verify="account_locked",
    ),
    Scenario(
        "bearer_only",
        "Microsoft 365-like server: the 401 challenge offers only Bearer (OAuth).",
        "mia@m365.test",
        "Mia-Pass-9",
        server="mail.m365.test",
        expect_discover="modern_auth_required",
        expect_verify="modern_auth_required",
    ),
    Scenario(
        "exchange_online_url",
        "Autodiscover hands out outlook.office365.com (Exchange Online); recognised by name, never contacted.",
        "hank@hybrid.test",
        "Hank-Pass-10",
        username="HYBRID\\hank",
        server="outlook.office365.com",
        expect_discover="modern_auth_required",
        expect_verify="modern_auth_required",
    ),
    Scenario(
        "wrong_certificate",
        "The server's certificate is issued for another name.",
        "walt@litware.test",
        "Walt-Pass-11",
        username="LITWARE\\walt",
        server="mail.litware.test",
        expect_discover="tls_error",
        expect_verify="tls_error",
    ),
    Scenario(
        "server_never_answers",
        "The server accepts the TCP connection and never answers.",
        "hugo@slowpoke.test",
        "Hugo-Pass-13",
        server="mail.slowpoke.test",
        expect_discover="timeout",
        expect_verify="timeout",
        slow=True,
    ),
    Scenario(
        "silent_dns",
        "The DNS server never answers for the domain.",
        "quinn@quiet.test",
        "Quinn-Pass-14",
        server="mail.quiet.test",
        expect_discover="timeout",
        expect_verify="timeout",
        slow=True,
    ),
    Scenario(
        "connection_refused",
        "Every name resolves, nothing listens.",
        "olga@offline.test",
        "Olga-Pass-15",
        server="mail.offline.test",
        expect_discover="autodiscover_failed",
        expect_verify="unreachable",
    ),
    Scenario(
        "unknown_name",
        "The domain does not exist in DNS.",
        "nick@nowhere.test",
        "Nick-Pass-16",
        server="mail.nowhere.test",
        expect_discover="autodiscover_failed",
        expect_verify="unreachable",
    ),
    Scenario(
        "unknown_mailbox",
        "The login works, the mailbox address does not exist.",
        "ghost@contoso.test",
        "Alice-Pass-1",
        username="CONTOSO\\alice",
        server="mail.contoso.test",
        expect_discover="mailbox_not_found",
        expect_verify="mailbox_not_found",
    ),
    Scenario(
        "access_denied",
        "The login works but has no rights on this (someone else's) mailbox.",
        "bob@contoso.test",
        "Alice-Pass-1",
        username="CONTOSO\\alice",
        expect_discover=OK,
        expect_verify="access_denied",
    ),
    Scenario(
        "ews_url_private",
        "Autodiscover answers an EWS URL on a private address (10.0.0.5); manual server resolving to 10.0.0.5.",
        "eve@evil.test",
        "Eve-Pass-12",
        server="mail.intranet.test",
        expect_discover="blocked_address",
        expect_verify="blocked_address",
        tags=("ssrf",),
    ),
    Scenario(
        "redirect_to_metadata",
        "The HTTP autodiscover redirect points at 169.254.169.254 (cloud metadata).",
        "ivy@evil2.test",
        "Ivy-Pass-17",
        server="169.254.169.254",
        expect_discover="blocked_address",
        expect_verify="blocked_address",
        tags=("ssrf",),
    ),
)

SCENARIOS_BY_NAME: dict[str, Scenario] = {s.name: s for s in SCENARIOS}


def simulated_domains() -> set[str]:
    """Every DNS zone the simulator is authoritative for (names under these never reach real DNS)."""
    zones = {name.split(".", name.count(".") - 1)[-1] for name in HOSTS}
    zones |= {email.split("@", 1)[1] for email in MAILBOXES}
    zones |= {s.email.split("@", 1)[1] for s in SCENARIOS}
    zones |= set(SILENT_ZONES)
    return zones

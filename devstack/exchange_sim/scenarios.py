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
from typing import Any, Literal

Https = Literal["serve", "wrong_cert", "hang", "refuse"]
# NTLM: "Negotiate" + "NTLM" headers (IIS default); Negotiate: only "Negotiate" (NTLM as a Negotiate provider);
# Bearer: Exchange's hybrid modern-auth challenge (quoted parameters with commas).
Auth = Literal["NTLM", "Negotiate", "Basic", "Bearer"]
Website = Literal["page", "redirect_www"]


@dataclass(frozen=True)
class Unavailable:
    """Port 443 answers ``503 Service Unavailable`` with a ``Retry-After`` before anything else (what HTTP.sys
    sends when the application pool cannot take the request, and a load balancer draining the server): RFC 9110
    section 15.6.4 (503: "the server MAY send a Retry-After header field") and section 10.2.3 (Retry-After is
    an HTTP-date or a number of seconds)."""

    retry_after: int  # seconds
    http_date: bool = False  # Retry-After as an HTTP-date (now + retry_after), else delta-seconds
    times: int | None = 1  # requests answered 503 since the last reset_observations(); None: every request


EXCHANGE_BUILD = "15.2.1544.4"  # Exchange Server 2019 CU14
EXCHANGE_2010_RTM_BUILD = "14.0.639.21"  # Exchange Server 2010 RTM: no GetPasswordExpirationDate yet
OK = "ok"


@dataclass(frozen=True)
class Host:
    """One simulated DNS name."""

    address: str = "127.0.0.1"  # A record; loopback means "served by the simulator"
    https: Https = "refuse"  # what answers on port 443
    http_redirect: str | None = None  # port 80: 302 to this URL for GET /autodiscover/autodiscover.svc
    autodiscover: bool = False  # serves POST /autodiscover/autodiscover.svc (SOAP GetUserSettings)
    ews: bool = False  # serves POST /EWS/Exchange.asmx
    auth: tuple[Auth, ...] = ("NTLM",)  # offered in the 401 challenge (one header each), in this order
    website: Website | None = None  # any other path: a web site (200 HTML), or a 301 to https://www.<host>/
    https_redirect: str | None = None  # port 443: 302 to this URL for every path (IIS HTTP Redirect)
    autodiscover_v2: bool = False  # serves GET /autodiscover/autodiscover.json/v1.0/{email}?Protocol=EWS
    netbios_domain: str | None = None  # the NTLM CHALLENGE names this domain (a domain-joined server)
    # Basic's challenge carries charset="UTF-8" (RFC 7617 section 2.1): the client sends the user-id and password
    # in UTF-8, normalised (NFC). Without it the encoding is left open; the simulator decodes UTF-8 either way.
    basic_charset: bool = False
    unavailable: Unavailable | None = None
    # The Exchange build this host runs (its ServerVersionInfo); None: EXCHANGE_BUILD. Builds before Exchange 2010
    # SP2 (14.2) do not know GetPasswordExpirationDate (MS-OXWSPED).
    build: str | None = None
    # What it answers a sign-in of a locked account: 456, the status Microsoft's EWS Managed API names
    # AccountIsLocked (ExchangeServiceBase), or 401, what IIS answers when Windows refuses the logon itself.
    locked_status: int = 456


@dataclass(frozen=True)
class Mailbox:
    """One mailbox. ``logins`` are the NTLM/Basic user names that sign in as its owner."""

    password: str
    logins: tuple[str, ...]
    inbox_count: int = 0
    ews_url: str = ""  # ExternalEwsUrl/InternalEwsUrl answered by autodiscover
    locked: bool = False  # correct password -> HTTP 456 (Exchange: account locked out / password expired)
    display_name: str = ""
    aliases: tuple[str, ...] = ()  # other SMTP (proxy) addresses of this mailbox: EWS resolves them to it
    redirect_address: str | None = None  # autodiscover answers RedirectAddress with this address
    redirect_url: str | None = None  # autodiscover answers RedirectUrl with this URL
    # The Response's ErrorCode: "ServerBusy" (every other time), "InvalidRequest", "InternalServerError",
    # or "Garbled" (an answer that is not XML)
    autodiscover_error: str | None = None
    # EWS throttling ("EWS throttling in Exchange", Microsoft Learn, section "Errors generated when throttling
    # limits are exceeded", tables 3 and 4): GetFolder answers HTTP 500 with a SOAP fault ErrorServerBusy whose
    # detail carries BackOffMilliseconds, every other time it is asked (busy first).
    ews_busy_ms: int | None = None
    # Set-CASMailbox -EwsEnabled $false ("Control access to EWS in Exchange", Microsoft Learn, table 1, "Block an
    # individual mailbox from using EWS"): the login is accepted, then every EWS request answers HTTP 403.
    ews_enabled: bool = True
    # The account's password expires this many days after the simulator starts (GetPasswordExpirationDate);
    # None: "password never expires" (a service account, or a domain without a maximum password age).
    password_expires_days: int | None = 60


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
    confirm_host: str | None = None  # discovery asks the owner to confirm this host (another domain)
    tags: tuple[str, ...] = field(default_factory=tuple)
    server_build: str = EXCHANGE_BUILD  # the build a verified connection reports

    @property
    def login(self) -> str:
        return self.username or self.email


def _ews(host: str) -> str:
    return f"https://{host}/EWS/Exchange.asmx"


def _box(
    email: str,
    password: str,
    *,
    netbios: str | None = None,
    address_login: bool = True,
    inbox: int = 0,
    ews_host: str | None = None,
    ews_url: str = "",
    **rest: Any,
) -> tuple[str, Mailbox]:
    """One mailbox, its owner signing in as ``NETBIOS\\user`` (a domain account, when ``netbios`` is given)
    and/or with the address itself; autodiscover names EWS on ``ews_host`` (or at ``ews_url``)."""
    user = email.split("@", 1)[0]
    logins = ((f"{netbios}\\{user}",) if netbios else ()) + ((email,) if address_login else ())
    return email, Mailbox(
        password=password,
        logins=logins,
        inbox_count=inbox,
        ews_url=_ews(ews_host) if ews_host else ews_url,
        **rest,
    )


HOSTS: dict[str, Host] = {
    # contoso.test: autodiscover on the domain itself (step 1), NTLM.
    "contoso.test": Host(https="serve", autodiscover=True, auth=("NTLM",), netbios_domain="CONTOSO"),
    "mail.contoso.test": Host(
        https="serve", ews=True, autodiscover=True, auth=("NTLM", "Basic"), netbios_domain="CONTOSO"
    ),
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
    # woodgrove.test: a company website on the bare domain (answers every path with 200 HTML); autodiscover
    # on autodiscover.<domain>.
    "woodgrove.test": Host(https="serve", website="page"),
    "autodiscover.woodgrove.test": Host(https="serve", autodiscover=True, auth=("NTLM",)),
    "mail.woodgrove.test": Host(https="serve", ews=True, auth=("NTLM",)),
    # wingtip.test: the bare domain 301s to www.<domain>, a website.
    "wingtip.test": Host(https="serve", website="redirect_www"),
    "www.wingtip.test": Host(https="serve", website="page"),
    "autodiscover.wingtip.test": Host(https="serve", autodiscover=True, ews=True, auth=("NTLM",)),
    # proseware.test: autodiscover answers RedirectAddress (the mailbox moved to corp.proseware.test).
    "autodiscover.proseware.test": Host(https="serve", autodiscover=True, auth=("NTLM",)),
    "autodiscover.corp.proseware.test": Host(https="serve", autodiscover=True, auth=("NTLM",)),
    "mail.corp.proseware.test": Host(https="serve", ews=True, auth=("NTLM",)),
    # relecloud.test: autodiscover answers RedirectUrl to another server of the domain.
    "autodiscover.relecloud.test": Host(https="serve", autodiscover=True, auth=("NTLM",)),
    "mail.relecloud.test": Host(https="serve", autodiscover=True, ews=True, auth=("NTLM",)),
    # fineart.test: the port-80 redirect names Autodiscover.xml (the form Microsoft documents).
    "autodiscover.fineart.test": Host(
        https="refuse", http_redirect="https://mail.fineart.test/Autodiscover/Autodiscover.xml"
    ),
    "mail.fineart.test": Host(https="serve", autodiscover=True, ews=True, auth=("NTLM",)),
    # vanarsdel.test: IIS offers NTLM only inside Negotiate.
    "autodiscover.vanarsdel.test": Host(https="serve", autodiscover=True, auth=("Negotiate",)),
    "mail.vanarsdel.test": Host(https="serve", ews=True, auth=("Negotiate",)),
    # lucerne.test: hybrid modern auth on, NTLM still on: three challenge headers, Bearer's with commas.
    "autodiscover.lucerne.test": Host(https="serve", autodiscover=True, auth=("Bearer", "NTLM")),
    "mail.lucerne.test": Host(https="serve", ews=True, auth=("Bearer", "NTLM", "Basic")),
    # cloudonly.test: only the hybrid Bearer challenge (quoted parameters with commas).
    "autodiscover.cloudonly.test": Host(https="serve", autodiscover=True, ews=True, auth=("Bearer",)),
    # busy.test / badreq.test / ise.test / garbled.test: autodiscover error codes.
    "autodiscover.busy.test": Host(https="serve", autodiscover=True, ews=True, auth=("NTLM",)),
    "autodiscover.badreq.test": Host(https="serve", autodiscover=True, auth=("NTLM",)),
    "mail.badreq.test": Host(https="serve", ews=True, auth=("NTLM",)),
    "autodiscover.ise.test": Host(https="serve", autodiscover=True, auth=("NTLM",)),
    "autodiscover.garbled.test": Host(https="serve", autodiscover=True, auth=("NTLM",)),
    # chain.test: three redirects before the autodiscover server.
    "autodiscover.chain.test": Host(https="serve", https_redirect="https://hop1.chain.test/"),
    "hop1.chain.test": Host(https="serve", https_redirect="https://hop2.chain.test/owa/"),
    "hop2.chain.test": Host(
        https="serve", https_redirect="https://mail.chain.test/autodiscover/autodiscover.xml"
    ),
    "mail.chain.test": Host(https="serve", autodiscover=True, ews=True, auth=("NTLM",)),
    # loop.test: two addresses whose autodiscover answers redirect to each other.
    "autodiscover.loop.test": Host(https="serve", autodiscover=True, auth=("NTLM",)),
    # fourthcoffee.test: the port-80 redirect names a hosting provider's server in another domain.
    "autodiscover.fourthcoffee.test": Host(
        https="refuse", http_redirect="https://mail.hoster.test/autodiscover/autodiscover.svc"
    ),
    "mail.hoster.test": Host(https="serve", autodiscover=True, ews=True, auth=("NTLM",)),
    # fifthcoffee.test: the port-80 redirect names the same hosting provider, whose autodiscover answer
    # names EWS on a third host, in yet another domain.
    "autodiscover.fifthcoffee.test": Host(
        https="refuse", http_redirect="https://mail.hoster.test/autodiscover/autodiscover.svc"
    ),
    "ews.elsewhere.test": Host(https="serve", ews=True, auth=("NTLM",)),
    # movedcloud.test: autodiscover answers RedirectAddress to the Exchange Online routing address (hybrid).
    "autodiscover.movedcloud.test": Host(https="serve", autodiscover=True, auth=("NTLM",)),
    # v2.test: Autodiscover v2 (JSON, unauthenticated) next to SOAP.
    "autodiscover.v2.test": Host(https="serve", autodiscover=True, autodiscover_v2=True, auth=("NTLM",)),
    "mail.v2.test": Host(https="serve", ews=True, auth=("NTLM",)),
    # cloudv2.test: hybrid; Autodiscover v2 names Exchange Online's EWS (the SOAP service would ask for NTLM).
    "autodiscover.cloudv2.test": Host(https="serve", autodiscover=True, autodiscover_v2=True, auth=("NTLM",)),
    # margiestravel.test: a domain-joined server whose Windows (NetBIOS) domain is MTCORP, not the email
    # domain's name; it takes only MTCORP\user as the login.
    "autodiscover.margiestravel.test": Host(
        https="serve", autodiscover=True, auth=("NTLM",), netbios_domain="MTCORP"
    ),
    "mail.margiestravel.test": Host(https="serve", ews=True, auth=("NTLM",), netbios_domain="MTCORP"),
    # throttled.test: EWS throttles (ErrorServerBusy with BackOffMilliseconds); autodiscover is fine.
    "autodiscover.throttled.test": Host(https="serve", autodiscover=True, auth=("NTLM",)),
    "mail.throttled.test": Host(https="serve", ews=True, auth=("NTLM",)),
    # draining.test: the EWS server's first answer is 503 with Retry-After: 1 (delta-seconds), then it serves.
    "autodiscover.draining.test": Host(https="serve", autodiscover=True, auth=("NTLM",)),
    "mail.draining.test": Host(https="serve", ews=True, auth=("NTLM",), unavailable=Unavailable(1)),
    # maintenance.test: the EWS server answers every request 503 with Retry-After an hour away (an HTTP-date).
    "autodiscover.maintenance.test": Host(https="serve", autodiscover=True, auth=("NTLM",)),
    "mail.maintenance.test": Host(
        https="serve", ews=True, auth=("NTLM",), unavailable=Unavailable(3600, http_date=True, times=None)
    ),
    # kielce.test: Basic only, the challenge announcing charset="UTF-8" (RFC 7617 section 2.1).
    "autodiscover.kielce.test": Host(https="serve", autodiscover=True, auth=("Basic",), basic_charset=True),
    "mail.kielce.test": Host(https="serve", ews=True, auth=("Basic",), basic_charset=True),
    # oldtimer.test: an Exchange 2010 RTM server, before GetPasswordExpirationDate (Exchange 2010 SP2).
    "autodiscover.oldtimer.test": Host(
        https="serve", autodiscover=True, auth=("NTLM",), build=EXCHANGE_2010_RTM_BUILD
    ),
    "mail.oldtimer.test": Host(https="serve", ews=True, auth=("NTLM",), build=EXCHANGE_2010_RTM_BUILD),
}

SRV_RECORDS: dict[str, list[tuple[int, int, int, str]]] = {
    # name -> [(priority, weight, port, target)]
    "_autodiscover._tcp.northwind.test": [(0, 0, 443, "exch.northwind.test")],
}

SILENT_ZONES: tuple[str, ...] = ("quiet.test",)

MAILBOXES: dict[str, Mailbox] = dict(
    [
        _box(
            "alice@contoso.test",
            "Alice-Pass-1",
            netbios="CONTOSO",
            inbox=42,
            ews_host="mail.contoso.test",
            display_name="Alice Archer",
        ),
        _box("bob@contoso.test", "Bob-Pass-2", netbios="CONTOSO", inbox=7, ews_host="mail.contoso.test"),
        _box(
            "lars@contoso.test", "Lars-Pass-3", netbios="CONTOSO", ews_host="mail.contoso.test", locked=True
        ),
        _box("bea@fabrikam.test", "Bea-Pass-4", inbox=3, ews_host="mail.fabrikam.test"),
        _box(
            "carl@tailspin.test", "Carl-Pass-5", netbios="TAILSPIN", inbox=11, ews_host="mail.tailspin.test"
        ),
        _box(
            "dora@northwind.test", "Dora-Pass-6", ews_host="exch.northwind.test", password_expires_days=None
        ),
        _box("dave@adatum.test", "Dave-Pass-7", netbios="ADATUM", inbox=5),
        _box("erin@adatum.test", "Erin-Pass-8", netbios="ADATUM", inbox=9, password_expires_days=None),
        _box("mia@m365.test", "Mia-Pass-9", ews_url="https://outlook.office365.com/EWS/Exchange.asmx"),
        _box(
            "hank@hybrid.test",
            "Hank-Pass-10",
            netbios="HYBRID",
            ews_url="https://outlook.office365.com/EWS/Exchange.asmx",
        ),
        _box(
            "walt@litware.test",
            "Walt-Pass-11",
            netbios="LITWARE",
            address_login=False,
            ews_host="mail.litware.test",
        ),
        _box("eve@evil.test", "Eve-Pass-12", ews_url="https://10.0.0.5/EWS/Exchange.asmx"),
        _box(
            "frank@woodgrove.test",
            "Frank-Pass-18",
            netbios="WOODGROVE",
            inbox=4,
            ews_host="mail.woodgrove.test",
        ),
        _box(
            "gina@wingtip.test",
            "Gina-Pass-19",
            netbios="WINGTIP",
            inbox=6,
            ews_host="autodiscover.wingtip.test",
        ),
        _box(
            "hana@proseware.test",
            "Hana-Pass-20",
            address_login=False,
            redirect_address="hana@corp.proseware.test",
        ),
        _box(
            "hana@corp.proseware.test",
            "Hana-Pass-20",
            netbios="PROSEWARE",
            inbox=8,
            ews_host="mail.corp.proseware.test",
            aliases=("hana@proseware.test",),
        ),
        _box(
            "ivan@relecloud.test",
            "Ivan-Pass-21",
            netbios="RELECLOUD",
            inbox=12,
            ews_host="mail.relecloud.test",
        ),
        _box("kim@fineart.test", "Kim-Pass-22", netbios="FINEART", inbox=13, ews_host="mail.fineart.test"),
        _box(
            "liam@vanarsdel.test",
            "Liam-Pass-23",
            netbios="VANARSDEL",
            inbox=14,
            ews_host="mail.vanarsdel.test",
        ),
        _box("mona@lucerne.test", "Mona-Pass-24", netbios="LUCERNE", inbox=15, ews_host="mail.lucerne.test"),
        _box("nora@cloudonly.test", "Nora-Pass-25"),
        _box(
            "omar@busy.test",
            "Omar-Pass-26",
            inbox=16,
            ews_host="autodiscover.busy.test",
            autodiscover_error="ServerBusy",
        ),
        _box(
            "pia@badreq.test", "Pia-Pass-27", netbios="BADREQ", inbox=17, autodiscover_error="InvalidRequest"
        ),
        _box("raj@ise.test", "Raj-Pass-28", autodiscover_error="InternalServerError"),
        _box("sam@garbled.test", "Sam-Pass-29", autodiscover_error="Garbled"),
        _box("tess@chain.test", "Tess-Pass-30", netbios="CHAIN", inbox=18, ews_host="mail.chain.test"),
        _box("umar@loop.test", "Umar-Pass-31", redirect_address="umar.alias@loop.test"),
        _box("umar.alias@loop.test", "Umar-Pass-31", address_login=False, redirect_address="umar@loop.test"),
        _box("vera@fourthcoffee.test", "Vera-Pass-32", inbox=19, ews_host="mail.hoster.test"),
        _box("xena@fifthcoffee.test", "Xena-Pass-37", inbox=23, ews_host="ews.elsewhere.test"),
        _box(
            "will@movedcloud.test",
            "Will-Pass-33",
            netbios="MOVEDCLOUD",
            redirect_address="will@movedcloud.mail.onmicrosoft.com",
        ),
        _box("yara@cloudv2.test", "Yara-Pass-35", ews_url="https://outlook.office365.com/EWS/Exchange.asmx"),
        _box(
            "maya@margiestravel.test",
            "Maya-Pass-36",
            netbios="MTCORP",
            address_login=False,
            inbox=21,
            ews_host="mail.margiestravel.test",
        ),
        _box("xena@v2.test", "Xena-Pass-34", netbios="V2", inbox=20, ews_host="mail.v2.test"),
        _box(
            "tara@throttled.test", "Tara-Pass-37", inbox=22, ews_host="mail.throttled.test", ews_busy_ms=1000
        ),
        _box(
            "ugo@throttled.test", "Ugo-Pass-38", inbox=23, ews_host="mail.throttled.test", ews_busy_ms=297749
        ),
        _box("dana@draining.test", "Dana-Pass-39", inbox=24, ews_host="mail.draining.test"),
        _box("mark@maintenance.test", "Mark-Pass-40", inbox=25, ews_host="mail.maintenance.test"),
        # Passwords outside Latin-1 (Polish, Turkish, the euro sign, Cyrillic, CJK), on Basic-only servers:
        # fabrikam.test's challenge names no charset, kielce.test's says charset="UTF-8".
        _box("ayse@fabrikam.test", "Ayşe-Şifre-€-41", inbox=26, ews_host="mail.fabrikam.test"),
        _box("zofia@kielce.test", "Zażółć-Ключ-密码-42", inbox=27, ews_host="mail.kielce.test"),
        _box(
            "eli@contoso.test",
            "Eli-Pass-43",
            netbios="CONTOSO",
            inbox=28,
            ews_host="mail.contoso.test",
            ews_enabled=False,
        ),
        _box("otto@oldtimer.test", "Otto-Pass-44", inbox=29, ews_host="mail.oldtimer.test"),
    ]
)

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
        "http://autodiscover.<domain>/ redirects to the real endpoint (step 3); NTLM with user@domain.",
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
        "Autodiscover hands out outlook.office365.com (Exchange Online): recognised, never contacted.",
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
        "Autodiscover answers an EWS URL on 10.0.0.5; the manual server resolves to 10.0.0.5.",
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
    Scenario(
        "website_on_domain",
        "A company website on the bare domain answers every path with 200 HTML; autodiscover.<domain> works.",
        "frank@woodgrove.test",
        "Frank-Pass-18",
        inbox_count=4,
    ),
    Scenario(
        "website_redirect_www",
        "The bare domain 301s to www.<domain> (a website); autodiscover.<domain> works.",
        "gina@wingtip.test",
        "Gina-Pass-19",
        inbox_count=6,
    ),
    Scenario(
        "redirect_address",
        "Autodiscover answers RedirectAddress (the mailbox moved): restart with the new address.",
        "hana@proseware.test",
        "Hana-Pass-20",
        username="PROSEWARE\\hana",
        inbox_count=8,
    ),
    Scenario(
        "redirect_url",
        "Autodiscover answers RedirectUrl: ask again at that server.",
        "ivan@relecloud.test",
        "Ivan-Pass-21",
        inbox_count=12,
    ),
    Scenario(
        "xml_redirect",
        "The port-80 redirect names .../Autodiscover/Autodiscover.xml: only its host is used.",
        "kim@fineart.test",
        "Kim-Pass-22",
        inbox_count=13,
    ),
    Scenario(
        "negotiate_only",
        "IIS offers only WWW-Authenticate: Negotiate (NTLM inside Negotiate).",
        "liam@vanarsdel.test",
        "Liam-Pass-23",
        username="VANARSDEL\\liam",
        inbox_count=14,
    ),
    Scenario(
        "hybrid_challenge_headers",
        "Hybrid modern auth on with NTLM still on: Bearer (commas in quoted values), Negotiate and NTLM headers.",
        "mona@lucerne.test",
        "Mona-Pass-24",
        inbox_count=15,
    ),
    Scenario(
        "bearer_with_commas",
        "Only the hybrid Bearer challenge, whose quoted trusted_issuers hold a comma.",
        "nora@cloudonly.test",
        "Nora-Pass-25",
        server="autodiscover.cloudonly.test",
        expect_discover="modern_auth_required",
        expect_verify="modern_auth_required",
    ),
    Scenario(
        "server_busy",
        "Autodiscover answers ServerBusy once: asked once more, it answers.",
        "omar@busy.test",
        "Omar-Pass-26",
        inbox_count=16,
    ),
    Scenario(
        "invalid_request",
        "Autodiscover answers ErrorCode InvalidRequest: ask for the settings; the manual server works.",
        "pia@badreq.test",
        "Pia-Pass-27",
        server="mail.badreq.test",
        expect_discover="autodiscover_failed",
        inbox_count=17,
    ),
    Scenario(
        "internal_server_error",
        "Autodiscover answers ErrorCode InternalServerError: ask for the settings.",
        "raj@ise.test",
        "Raj-Pass-28",
        expect_discover="autodiscover_failed",
        expect_verify="autodiscover_failed",
    ),
    Scenario(
        "garbled_answer",
        "Autodiscover answers something that is not XML: ask for the settings.",
        "sam@garbled.test",
        "Sam-Pass-29",
        expect_discover="autodiscover_failed",
        expect_verify="autodiscover_failed",
    ),
    Scenario(
        "owa_url_as_server",
        "The owner typed the Outlook on the web address as the server: its host is used.",
        "dave@adatum.test",
        "Dave-Pass-7",
        username="ADATUM\\dave",
        server="https://mail.adatum.test/owa/",
        expect_discover="autodiscover_failed",
        inbox_count=5,
    ),
    Scenario(
        "redirect_chain",
        "autodiscover.<domain> 302s three times (to an OWA and an Autodiscover.xml URL on the way).",
        "tess@chain.test",
        "Tess-Pass-30",
        inbox_count=18,
    ),
    Scenario(
        "redirect_loop",
        "Two addresses whose autodiscover answers redirect to each other.",
        "umar@loop.test",
        "Umar-Pass-31",
        expect_discover="autodiscover_failed",
        expect_verify="autodiscover_failed",
    ),
    Scenario(
        "cross_domain_redirect",
        "The port-80 redirect names a hosting provider's server in another domain: the owner confirms first.",
        "vera@fourthcoffee.test",
        "Vera-Pass-32",
        server="mail.hoster.test",
        expect_discover="confirm_server",
        confirm_host="mail.hoster.test",
        inbox_count=19,
    ),
    Scenario(
        "confirmed_host_names_a_third_host",
        "The server the owner allowed answers autodiscover with EWS on a third host, in yet another domain: "
        "that host is named to the owner too before it gets the password.",
        "xena@fifthcoffee.test",
        "Xena-Pass-37",
        server="ews.elsewhere.test",
        expect_discover="confirm_server",
        confirm_host="mail.hoster.test",
        inbox_count=23,
    ),
    Scenario(
        "redirect_to_exchange_online",
        "Hybrid: autodiscover answers RedirectAddress to <tenant>.mail.onmicrosoft.com (moved to Exchange Online).",
        "will@movedcloud.test",
        "Will-Pass-33",
        username="MOVEDCLOUD\\will",
        expect_discover="modern_auth_required",
        expect_verify="modern_auth_required",
    ),
    Scenario(
        "autodiscover_v2",
        "Autodiscover v2 (JSON) answers the EWS URL before any password is sent.",
        "xena@v2.test",
        "Xena-Pass-34",
        inbox_count=20,
    ),
    Scenario(
        "autodiscover_v2_exchange_online",
        "Autodiscover v2 names Exchange Online's EWS URL: modern auth, and no password sent anywhere.",
        "yara@cloudv2.test",
        "Yara-Pass-35",
        expect_discover="modern_auth_required",
        expect_verify="modern_auth_required",
    ),
    Scenario(
        "netbios_domain_hint",
        "The right password, but the server refuses the email address as the login; its NTLM challenge names "
        "the Windows domain MTCORP: the owner is told to sign in as MTCORP\\maya.",
        "maya@margiestravel.test",
        "Maya-Pass-36",
        server="mail.margiestravel.test",
        expect_discover="auth_failed",
        expect_verify="auth_failed",
    ),
    Scenario(
        "netbios_domain_login",
        "The same mailbox signed in as the suggested MTCORP\\maya: discovered and verified.",
        "maya@margiestravel.test",
        "Maya-Pass-36",
        username="MTCORP\\maya",
        inbox_count=21,
    ),
)

SCENARIOS += (
    Scenario(
        "ews_throttled",
        'EWS answers GetFolder with ErrorServerBusy, BackOffMilliseconds 1000 ("EWS throttling in Exchange", '
        "Microsoft Learn, tables 3 and 4): wait the back-off, ask again, connected.",
        "tara@throttled.test",
        "Tara-Pass-37",
        inbox_count=22,
    ),
    Scenario(
        "ews_throttled_too_long",
        "EWS answers ErrorServerBusy with BackOffMilliseconds 297749 (about 5 minutes, a value seen from real "
        "servers), longer than the time budget: the server is busy, try again in a few minutes.",
        "ugo@throttled.test",
        "Ugo-Pass-38",
        expect_verify="server_busy",
    ),
    Scenario(
        "unavailable_then_fine",
        "The EWS server's first answer is 503 with Retry-After: 1 (RFC 9110 sections 15.6.4 and 10.2.3; HTTP.sys, "
        "a load balancer draining): wait, ask again, connected.",
        "dana@draining.test",
        "Dana-Pass-39",
        inbox_count=24,
    ),
    Scenario(
        "unavailable_too_long",
        "The EWS server answers 503 with Retry-After an HTTP-date an hour away (RFC 9110 section 10.2.3): busy, try "
        'again later; never "not an Exchange server", and no password sent.',
        "mark@maintenance.test",
        "Mark-Pass-40",
        expect_discover="server_busy",
        expect_verify="server_busy",
    ),
    Scenario(
        "basic_non_latin1_password",
        "Basic, a password outside Latin-1 (ş, Ş, €), the challenge names no charset: sent in UTF-8 as RFC 7617 "
        "section 2.1 and browsers do.",
        "ayse@fabrikam.test",
        "Ayşe-Şifre-€-41",
        inbox_count=26,
    ),
    Scenario(
        "basic_utf8_charset",
        'Basic whose challenge says charset="UTF-8" (RFC 7617 section 2.1), a password in Polish, Cyrillic and '
        "Chinese: UTF-8, normalised (NFC).",
        "zofia@kielce.test",
        "Zażółć-Ключ-密码-42",
        inbox_count=27,
    ),
    Scenario(
        "ews_disabled_for_mailbox",
        'Set-CASMailbox -EwsEnabled $false ("Control access to EWS in Exchange", Microsoft Learn, table 1): '
        "the login is accepted, then EWS answers 403: the login may not open this mailbox, ask IT.",
        "eli@contoso.test",
        "Eli-Pass-43",
        username="CONTOSO\\eli",
        expect_verify="access_denied",
    ),
    Scenario(
        "exchange_2010_rtm",
        "An Exchange 2010 RTM server (build 14.0.639.21): connects; it predates GetPasswordExpirationDate "
        "(Exchange 2010 SP2), which it answers with the SOAP fault ErrorSchemaValidation.",
        "otto@oldtimer.test",
        "Otto-Pass-44",
        inbox_count=29,
        server_build=EXCHANGE_2010_RTM_BUILD,
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

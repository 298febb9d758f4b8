"""The identity platform + Graph simulator: unmodified MSAL for Python signs in against it by configuration
alone; every endpoint and error plays what Microsoft documents."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import msal
import pytest
import requests

from devstack.identity_sim import IdentitySimulator

REDIRECT_URI = "https://127.0.0.1:3000/connect/microsoft/callback"
SCOPES = ["User.Read", "Mail.ReadBasic"]  # MSAL adds openid, profile, offline_access itself
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


class Clock:
    """The simulator's clock, moved by the tests (codes and tokens expire without waiting)."""

    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def sim_server(clock: Clock) -> Iterator[IdentitySimulator]:
    with IdentitySimulator(redirect_uris=[REDIRECT_URI], clock=clock) as sim:
        yield sim


@pytest.fixture
def sim(sim_server: IdentitySimulator) -> IdentitySimulator:
    sim_server.reset_observations()
    return sim_server


@pytest.fixture
def msal_app(sim: IdentitySimulator) -> msal.ConfidentialClientApplication:
    """Production-like MSAL: only the authority host differs; the CA is trusted, verification stays on."""
    http = requests.Session()
    http.verify = sim.ca_bundle
    # Without this, REQUESTS_CA_BUNDLE from the environment overrides ``verify`` (requests#3829).
    http.trust_env = False
    return msal.ConfidentialClientApplication(
        sim.client_id,
        client_credential=sim.client_secret,
        authority=sim.authority("organizations"),
        instance_discovery=False,
        http_client=http,
    )


# ------------------------------------------------------------------ a browser made of form posts


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(
                {"action": a.get("action", ""), "id": a.get("id", ""), "fields": {}, "buttons": []}
            )
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")
        elif tag == "button" and self.forms and a.get("name"):
            self.forms[-1]["buttons"].append((a["name"], a.get("value", "")))


@dataclass
class Page:
    url: str
    status: int
    text: str
    location: str | None = None

    def form(self, form_id: str) -> dict[str, Any]:
        parser = _Forms()
        parser.feed(self.text)
        return next(f for f in parser.forms if f["id"] == form_id)


class Browser:
    """Follows the simulator's pages like a person would; stops at the redirect to the app."""

    def __init__(self, sim: IdentitySimulator) -> None:
        self.http = requests.Session()
        self.http.verify = sim.ca_bundle
        self.http.trust_env = False

    def _page(self, response: requests.Response) -> Page:
        return Page(response.url, response.status_code, response.text, response.headers.get("Location"))

    def open(self, url: str) -> Page:
        return self._page(self.http.get(url, allow_redirects=False, timeout=10))

    def submit(self, page: Page, form_id: str, button: tuple[str, str] | None = None, **fields: str) -> Page:
        form = page.form(form_id)
        data = {**form["fields"], **fields}
        if button:
            data[button[0]] = button[1]
        url = urljoin(page.url, form["action"])
        return self._page(self.http.post(url, data=data, allow_redirects=False, timeout=10))

    def sign_in(self, url: str, address: str, password: str) -> Page:
        page = self.open(url)
        assert page.status == 200, page.text
        return self.submit(page, "signin", login=address, passwd=password)

    def consent(self, page: Page, decision: str = "accept") -> Page:
        return self.submit(page, "consent", button=("decision", decision))


def callback(page: Page) -> dict[str, str]:
    """The authorization response the app's redirect URI receives."""
    assert page.status == 302, page.text
    assert page.location is not None
    assert page.location.startswith(REDIRECT_URI + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(page.location).query).items()}


def full_sign_in(sim: IdentitySimulator, url: str, address: str) -> dict[str, str]:
    browser = Browser(sim)
    page = browser.sign_in(url, address, sim.users[address].password)
    if page.status == 200 and "Permissions requested" in page.text:
        page = browser.consent(page)
    return callback(page)


def graph(sim: IdentitySimulator, path: str, token: str) -> requests.Response:
    return requests.get(
        sim.graph_base_url + path,
        headers={"Authorization": f"Bearer {token}"},
        verify=sim.ca_bundle,
        timeout=10,
    )


# ------------------------------------------------------------------ MSAL end to end


def test_msal_code_flow_with_pkce_signs_mia_in_and_graph_answers(
    sim: IdentitySimulator, msal_app: msal.ConfidentialClientApplication
) -> None:
    # Given MSAL starting an auth code flow (PKCE, nonce, state) with a login hint
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI, login_hint="mia@m365.test")
    query = parse_qs(urlsplit(flow["auth_uri"]).query)
    assert query["code_challenge_method"] == ["S256"]

    # When the person signs in and accepts the consent page
    browser = Browser(sim)
    page = browser.open(flow["auth_uri"])
    assert page.form("signin")["fields"]["login"] == "mia@m365.test"  # login_hint prefills the form
    page = browser.submit(page, "signin", passwd=sim.users["mia@m365.test"].password)
    assert "Permissions requested" in page.text
    for scope in ("User.Read", "Mail.ReadBasic", "offline_access"):
        assert f"data-scope='{scope}'" in page.text
    response = callback(browser.consent(page))
    result = msal_app.acquire_token_by_auth_code_flow(flow, response)

    # Then MSAL has tokens for Mia, and Graph accepts the access token
    assert "access_token" in result, result
    assert result["id_token_claims"]["preferred_username"] == "mia@m365.test"
    assert result["token_type"] == "Bearer"
    assert result["refresh_token"]
    me = graph(sim, "/v1.0/me?$select=id,mail,userPrincipalName,proxyAddresses", result["access_token"])
    assert me.status_code == 200
    assert me.json()["mail"] == "mia@m365.test"
    assert me.json()["id"] == result["id_token_claims"]["oid"]
    inbox = graph(sim, "/v1.0/me/mailFolders/inbox", result["access_token"]).json()
    assert (inbox["totalItemCount"], inbox["unreadItemCount"]) == (12, 3)
    # And MSAL's cache holds the account; a refresh goes through the refresh_token grant
    account = msal_app.get_accounts(username="mia@m365.test")[0]
    refreshed = msal_app.acquire_token_silent_with_error(SCOPES, account, force_refresh=True)
    assert refreshed is not None
    assert "access_token" in refreshed, refreshed
    assert refreshed["access_token"] != result["access_token"]


def test_no_password_reaches_token_endpoint_or_graph(
    sim: IdentitySimulator, msal_app: msal.ConfidentialClientApplication
) -> None:
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    result = msal_app.acquire_token_by_auth_code_flow(
        flow, full_sign_in(sim, flow["auth_uri"], "mia@m365.test")
    )
    graph(sim, "/v1.0/me", result["access_token"])
    seen = sim.requests_seen
    assert [r.path for r in seen if r.password] == ["/organizations/login"]
    token_calls = [r for r in seen if r.path.endswith("/oauth2/v2.0/token")]
    assert token_calls
    assert all(r.code and r.client_secret and not r.password for r in token_calls)
    graph_calls = [r for r in seen if r.service == "graph"]
    assert graph_calls
    assert all(r.bearer and not (r.password or r.client_secret or r.code) for r in graph_calls)

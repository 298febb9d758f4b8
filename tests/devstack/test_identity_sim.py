"""The identity platform + Graph simulator: unmodified MSAL for Python signs in against it by configuration
alone; every endpoint and error plays what Microsoft documents."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import msal
import pytest
import requests
from cryptography import x509

from devstack.identity_sim import IdentitySimulator
from tests.m365_fixtures import Page, Person

# MSAL recommends response_mode=form_post for web apps; these tests read the code from the query on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended:UserWarning")

REDIRECT_URI = "https://127.0.0.1:3000/connect/oauth/callback"
SCOPES = ["User.Read", "Mail.ReadBasic"]  # MSAL adds openid, profile, offline_access itself
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


class Clock:
    """The simulator's clock, moved by the tests (codes and tokens expire without waiting)."""

    def __init__(self) -> None:
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
def sim(sim_server: IdentitySimulator) -> Iterator[IdentitySimulator]:
    sim_server.reset_observations()
    yield sim_server
    sim_server.reset_controls()  # no user left disabled, locked or in an outage for the next test


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


class Browser(Person):
    """Follows the simulator's pages like a person would; stops at the redirect to the app."""

    def consent(self, page: Page, decision: str = "accept") -> Page:
        return self.submit(page, "consent", decision=decision)


def callback(page: Page) -> dict[str, str]:
    """The authorization response the app's redirect URI receives."""
    assert page.status == 302, page.text
    assert page.location is not None
    assert page.location.startswith(REDIRECT_URI + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(page.location).query).items()}


def full_sign_in(sim: IdentitySimulator, url: str, address: str) -> dict[str, str]:
    browser = Browser(sim)
    page = browser.enter_password(url, address, sim.users[address].password)
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
    assert {r.user for r in token_calls} == {"mia@m365.test"}
    graph_calls = [r for r in seen if r.service == "graph"]
    assert graph_calls
    assert all(r.bearer and not (r.password or r.client_secret or r.code) for r in graph_calls)
    assert {r.user for r in graph_calls} == {"mia@m365.test"}


# ------------------------------------------------------------------ helpers for raw protocol tests


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(sim: IdentitySimulator, tenant: str = "organizations", **overrides: str | None) -> str:
    _, challenge = pkce()
    params: dict[str, str | None] = {
        "client_id": sim.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile offline_access User.Read Mail.ReadBasic",
        "state": "st-123",
        "nonce": "n-456",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    query = "&".join(f"{k}={requests.utils.quote(v, safe='')}" for k, v in params.items() if v is not None)
    return f"{sim.authority(tenant)}/oauth2/v2.0/authorize?{query}"


@dataclass
class Started:
    url: str
    verifier: str


def started(sim: IdentitySimulator, tenant: str = "organizations", **overrides: str | None) -> Started:
    verifier, challenge = pkce()
    return Started(authorize_url(sim, tenant, code_challenge=challenge, **overrides), verifier)


def post_token(sim: IdentitySimulator, tenant: str = "organizations", **form: str) -> requests.Response:
    body = {"client_id": sim.client_id, "client_secret": sim.client_secret, **form}
    return requests.post(
        f"{sim.authority(tenant)}/oauth2/v2.0/token", data=body, verify=sim.ca_bundle, timeout=10
    )


def redeem(sim: IdentitySimulator, issued: str, verifier: str, **form: str) -> requests.Response:
    fields = {"grant_type": "authorization_code", "code": issued, "redirect_uri": REDIRECT_URI}
    return post_token(sim, **{**fields, "code_verifier": verifier, **form})


def tokens_for(sim: IdentitySimulator, address: str) -> dict[str, Any]:
    flow = started(sim)
    response = redeem(sim, full_sign_in(sim, flow.url, address)["code"], flow.verifier, client_info="1")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def aadsts(text: str) -> int:
    match = re.search(r"AADSTS(\d+)", text)
    assert match, text
    return int(match.group(1))


def get(sim: IdentitySimulator, path: str) -> requests.Response:
    return requests.get(sim.authority_host + path, verify=sim.ca_bundle, timeout=10)


# ------------------------------------------------------------------ discovery


@pytest.mark.parametrize("tenant", ["organizations", "common"])
def test_multi_tenant_openid_configuration_has_the_templated_issuer(
    sim: IdentitySimulator, tenant: str
) -> None:
    config = get(sim, f"/{tenant}/v2.0/.well-known/openid-configuration").json()
    assert sim.base_url == sim.authority_host
    assert config["issuer"] == f"{sim.authority_host}/{{tenantid}}/v2.0"
    assert config["authorization_endpoint"] == f"{sim.authority_host}/{tenant}/oauth2/v2.0/authorize"
    assert config["token_endpoint"] == f"{sim.authority_host}/{tenant}/oauth2/v2.0/token"
    assert config["jwks_uri"] == f"{sim.authority_host}/{tenant}/discovery/v2.0/keys"
    assert "query" in config["response_modes_supported"]
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]


@pytest.mark.parametrize("name", ["m365.test", "4f1e8a52-7d0b-4c6e-9a3f-2b5c8d1e6f70"])
def test_a_tenant_by_domain_or_id_has_its_concrete_issuer(sim: IdentitySimulator, name: str) -> None:
    tid = sim.users["mia@m365.test"].tenant.id
    config = get(sim, f"/{name}/v2.0/.well-known/openid-configuration").json()
    assert config["issuer"] == f"{sim.authority_host}/{tid}/v2.0"
    assert config["token_endpoint"] == f"{sim.authority_host}/{tid}/oauth2/v2.0/token"


def test_an_unknown_tenant_is_aadsts90002(sim: IdentitySimulator) -> None:
    response = get(sim, "/nowhere.test/v2.0/.well-known/openid-configuration")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_tenant"
    assert response.json()["error_codes"] == [90002]


def test_msal_refuses_an_unknown_tenant(sim: IdentitySimulator) -> None:
    http = requests.Session()
    http.verify, http.trust_env = sim.ca_bundle, False
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal.ConfidentialClientApplication(
            sim.client_id,
            client_credential=sim.client_secret,
            authority=sim.authority("nowhere.test"),
            instance_discovery=False,
            http_client=http,
        )


@pytest.mark.parametrize(
    ("path", "namespace"),
    [
        ("/getuserrealm.srf?login=mia@m365.test&json=1", "Managed"),
        ("/getuserrealm.srf?login=fiona@fedcorp-m365.test&json=1", "Federated"),
        ("/getuserrealm.srf?login=alice@contoso.test&json=1", "Unknown"),
        ("/common/userrealm/mia@m365.test?api-version=2.1", "Managed"),
        ("/common/userrealm/fiona@fedcorp-m365.test?api-version=2.1", "Federated"),
        ("/common/userrealm/bea@fabrikam.test?api-version=2.1", "Unknown"),
    ],
)
def test_home_realm_discovery(sim: IdentitySimulator, path: str, namespace: str) -> None:
    body = get(sim, path).json()
    assert body["NameSpaceType"] == namespace
    if namespace == "Federated":
        assert body["AuthURL"].startswith("https://sts.fedcorp-m365.test/adfs/ls/")
    if namespace == "Managed":
        assert body["DomainName"] == "m365.test"


def test_userrealm_v1_is_what_msal_reads(sim: IdentitySimulator) -> None:
    body = get(sim, "/common/userrealm/fiona@fedcorp-m365.test?api-version=1.0").json()
    assert body["account_type"] == "Federated"
    assert body["federation_protocol"] == "WSTrust"


# ------------------------------------------------------------------ tokens are real JWTs


def test_tokens_are_signed_with_the_published_key_and_carry_the_claims(sim: IdentitySimulator) -> None:
    body = tokens_for(sim, "mia@m365.test")
    mia = sim.users["mia@m365.test"]
    keys = get(sim, "/organizations/discovery/v2.0/keys").json()["keys"]
    public = jwt.PyJWK(keys[0]).key
    from_x5c = x509.load_der_x509_certificate(base64.b64decode(keys[0]["x5c"][0])).public_key()
    assert from_x5c.public_numbers() == public.public_numbers()
    assert jwt.get_unverified_header(body["access_token"])["kid"] == keys[0]["kid"]
    access = jwt.decode(body["access_token"], public, algorithms=["RS256"], audience=GRAPH_APP_ID)
    assert (access["tid"], access["oid"], access["upn"]) == (mia.tenant.id, mia.oid, "mia@m365.test")
    assert set(access["scp"].split()) >= {"User.Read", "Mail.ReadBasic"}
    assert access["appid"] == sim.client_id
    config = get(sim, "/organizations/v2.0/.well-known/openid-configuration").json()
    id_token = jwt.decode(body["id_token"], public, algorithms=["RS256"], audience=sim.client_id)
    assert id_token["iss"] == config["issuer"].replace("{tenantid}", mia.tenant.id)
    assert (id_token["tid"], id_token["oid"]) == (mia.tenant.id, mia.oid)
    assert (id_token["preferred_username"], id_token["nonce"]) == ("mia@m365.test", "n-456")
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] > 0
    assert body["ext_expires_in"] > 0
    assert body["refresh_token"]
    client_info = json.loads(base64.urlsafe_b64decode(body["client_info"] + "=="))
    assert client_info == {"uid": mia.oid, "utid": mia.tenant.id}
    refreshed = post_token(sim, grant_type="refresh_token", refresh_token=body["refresh_token"]).json()
    assert "client_info" not in refreshed  # only when asked for


def test_msal_signs_in_through_a_tenant_authority(sim: IdentitySimulator) -> None:
    http = requests.Session()
    http.verify, http.trust_env = sim.ca_bundle, False
    app = msal.ConfidentialClientApplication(
        sim.client_id,
        client_credential=sim.client_secret,
        authority=sim.authority("m365.test"),
        instance_discovery=False,
        http_client=http,
    )
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    assert "/4f1e8a52-7d0b-4c6e-9a3f-2b5c8d1e6f70/oauth2/v2.0/authorize" in flow["auth_uri"]
    result = app.acquire_token_by_auth_code_flow(
        flow, full_sign_in(sim, flow["auth_uri"], "olivia@m365.test")
    )
    assert result["id_token_claims"]["preferred_username"] == "olivia@m365.test"


# ------------------------------------------------------------------ authorize: checks before anything is sent


def test_an_unknown_client_id_gets_a_page_not_a_redirect(sim: IdentitySimulator) -> None:
    page = Browser(sim).open(authorize_url(sim, client_id="00000000-1111-2222-3333-444444444444"))
    assert page.status == 400
    assert page.location is None
    assert aadsts(page.text) == 700016


def test_an_unregistered_redirect_uri_gets_a_page_not_a_redirect(sim: IdentitySimulator) -> None:
    page = Browser(sim).open(authorize_url(sim, redirect_uri="https://evil.test/cb"))
    assert page.status == 400
    assert page.location is None
    assert aadsts(page.text) == 50011


@pytest.mark.parametrize(
    ("overrides", "error", "code"),
    [
        ({"code_challenge": None}, "invalid_request", 9002325),
        ({"code_challenge_method": "plain"}, "invalid_request", 50149),
        ({"code_challenge_method": None}, "invalid_request", 50149),
        ({"response_type": "token"}, "unsupported_response_type", 70005),
        ({"scope": "openid Files.ReadWrite.Everything.Forever"}, "invalid_scope", 70011),
        ({"scope": None}, "invalid_request", 900144),
        ({"response_mode": "web_message"}, "invalid_request", 900144),
    ],
)
def test_bad_authorize_requests_go_back_to_the_app(
    sim: IdentitySimulator, overrides: dict[str, str | None], error: str, code: int
) -> None:
    response = callback(Browser(sim).open(authorize_url(sim, **overrides)))
    assert response["error"] == error
    assert response["error_description"].startswith(f"AADSTS{code}: ")
    assert response["state"] == "st-123"


def test_login_hint_prefills_and_another_account_can_be_typed(sim: IdentitySimulator) -> None:
    flow = started(sim, login_hint="mia@m365.test")
    browser = Browser(sim)
    page = browser.open(flow.url)
    assert page.form("signin")["fields"]["login"] == "mia@m365.test"
    page = browser.submit(
        page, "signin", login="olivia@m365.test", passwd=sim.users["olivia@m365.test"].password
    )
    code = callback(browser.consent(page))["code"]
    body = redeem(sim, code, flow.verifier).json()
    assert jwt.decode(body["id_token"], options={"verify_signature": False})["preferred_username"] == (
        "olivia@m365.test"
    )


def test_a_wrong_password_is_shown_on_the_sign_in_page(sim: IdentitySimulator) -> None:
    browser = Browser(sim)
    page = browser.enter_password(authorize_url(sim), "mia@m365.test", "not-her-password")
    assert page.status == 200
    assert page.location is None
    assert "Your account or password is incorrect" in page.text
    assert aadsts(page.text) == 50126
    # and the form can be sent again with the right one
    page = browser.submit(page, "signin", passwd=sim.users["mia@m365.test"].password)
    assert "Permissions requested" in page.text


def test_an_unknown_account_is_shown_on_the_sign_in_page(sim: IdentitySimulator) -> None:
    page = Browser(sim).enter_password(authorize_url(sim), "alice@contoso.test", "whatever")
    assert page.status == 200
    assert "find an account with that username" in page.text
    assert aadsts(page.text) == 50034


def test_cancel_on_the_consent_page_is_aadsts65004(sim: IdentitySimulator) -> None:
    browser = Browser(sim)
    page = browser.enter_password(authorize_url(sim), "mia@m365.test", sim.users["mia@m365.test"].password)
    response = callback(browser.consent(page, "cancel"))
    assert response["error"] == "access_denied"
    assert aadsts(response["error_description"]) == 65004
    assert response["state"] == "st-123"
    assert "code" not in response


@pytest.mark.parametrize(
    ("address", "code"),
    [("dan@m365.test", 50057), ("carl@m365.test", 53003), ("zoe@dormant-m365.test", 5000225)],
)
def test_directory_refusals_go_back_to_the_app(sim: IdentitySimulator, address: str, code: int) -> None:
    page = Browser(sim).enter_password(authorize_url(sim), address, sim.users[address].password)
    response = callback(page)
    assert response["error"] == "access_denied"
    assert aadsts(response["error_description"]) == code
    assert "code" not in response


def test_a_user_of_another_tenant_is_refused_by_a_tenant_authority(sim: IdentitySimulator) -> None:
    page = Browser(sim).enter_password(
        authorize_url(sim, "m365.test"), "ben@strict-m365.test", sim.users["ben@strict-m365.test"].password
    )
    assert aadsts(callback(page)["error_description"]) == 50020


def test_admin_consent_required_until_the_admin_consents(sim: IdentitySimulator) -> None:
    ben = sim.users["ben@strict-m365.test"]
    # Given a tenant where users may not consent: Ben sees "Need admin approval"
    browser = Browser(sim)
    page = browser.enter_password(authorize_url(sim), ben.address, ben.password)
    assert "Need admin approval" in page.text
    assert aadsts(page.text) == 90094
    assert "consent" not in {f["id"] for f in page.forms()}
    response = callback(browser.submit(page, "approval", decision="return"))
    assert response["error"] == "access_denied"
    assert aadsts(response["error_description"]) == 90094
    # A non-admin cannot grant admin consent
    admin_url = (
        f"{sim.authority('strict-m365.test')}/adminconsent?client_id={sim.client_id}"
        f"&redirect_uri={requests.utils.quote(REDIRECT_URI, safe='')}&state=adm-1"
    )
    denied = callback(Browser(sim).enter_password(admin_url, ben.address, ben.password))
    assert (denied["error"], denied["admin_consent"]) == ("access_denied", "True")
    # When the admin grants consent for the organization
    admin = sim.users["admin@strict-m365.test"]
    browser = Browser(sim)
    page = browser.enter_password(admin_url, admin.address, admin.password)
    assert "for all users in your organization" in page.text
    granted = callback(browser.consent(page))
    assert granted == {
        "admin_consent": "True",
        "tenant": ben.tenant.id,
        "scope": "User.Read Mail.ReadBasic offline_access",
        "state": "adm-1",
    }
    # Then Ben goes straight back to the app with a code
    page = Browser(sim).enter_password(authorize_url(sim), ben.address, ben.password)
    assert "code" in callback(page)


def test_a_session_skips_the_sign_in_page_and_prompt_login_forces_it(sim: IdentitySimulator) -> None:
    browser = Browser(sim)
    mia = sim.users["mia@m365.test"]
    callback(browser.consent(browser.enter_password(authorize_url(sim), mia.address, mia.password)))
    again = browser.open(authorize_url(sim))
    assert "code" in callback(again)  # signed in and consented already
    assert browser.open(authorize_url(sim, prompt="login")).form("signin")
    assert "Permissions requested" in browser.open(authorize_url(sim, prompt="consent")).text


def test_sign_out_ends_the_session(sim: IdentitySimulator) -> None:
    browser = Browser(sim)
    mia = sim.users["mia@m365.test"]
    callback(browser.consent(browser.enter_password(authorize_url(sim), mia.address, mia.password)))
    target = requests.utils.quote(REDIRECT_URI, safe="")
    out = browser.open(f"{sim.authority()}/oauth2/v2.0/logout?post_logout_redirect_uri={target}")
    assert (out.status, out.location) == (302, REDIRECT_URI)
    assert browser.open(authorize_url(sim)).form("signin")
    elsewhere = browser.open(
        f"{sim.authority()}/oauth2/v2.0/logout?post_logout_redirect_uri=https://evil.test/"
    )
    assert elsewhere.status == 200
    assert elsewhere.location is None


def test_prompt_none_without_a_session_is_login_required(sim: IdentitySimulator) -> None:
    response = callback(Browser(sim).open(authorize_url(sim, prompt="none")))
    assert (response["error"], aadsts(response["error_description"])) == ("login_required", 50058)


def test_response_mode_form_post_posts_the_code_to_the_app(sim: IdentitySimulator) -> None:
    browser = Browser(sim)
    mia = sim.users["mia@m365.test"]
    page = browser.consent(
        browser.enter_password(authorize_url(sim, response_mode="form_post"), mia.address, mia.password)
    )
    form = page.forms()[0]
    assert form["action"] == REDIRECT_URI
    assert form["fields"]["state"] == "st-123"
    assert form["fields"]["code"]


# ------------------------------------------------------------------ token endpoint


def test_a_code_is_single_use(sim: IdentitySimulator) -> None:
    flow = started(sim)
    code = full_sign_in(sim, flow.url, "mia@m365.test")["code"]
    assert redeem(sim, code, flow.verifier).status_code == 200
    again = redeem(sim, code, flow.verifier)
    assert again.status_code == 400
    assert (again.json()["error"], again.json()["error_codes"]) == ("invalid_grant", [54005])


def test_an_old_code_has_expired(sim: IdentitySimulator, clock: Clock) -> None:
    flow = started(sim)
    code = full_sign_in(sim, flow.url, "mia@m365.test")["code"]
    clock.now += 601
    try:
        late = redeem(sim, code, flow.verifier)
    finally:
        clock.now -= 601
    assert (late.json()["error"], late.json()["error_codes"]) == ("invalid_grant", [70008])


@pytest.mark.parametrize(
    ("form", "error", "code"),
    [
        ({"code_verifier": "not-the-verifier-" + "x" * 30}, "invalid_grant", 501481),
        ({"code_verifier": ""}, "invalid_grant", 501481),
        ({"redirect_uri": "https://127.0.0.1:3000/elsewhere"}, "invalid_grant", 50011),
        ({"client_secret": "wrong-secret"}, "invalid_client", 7000215),
        ({"client_secret": ""}, "invalid_client", 7000218),
        ({"grant_type": "password"}, "unsupported_grant_type", 70003),
        ({"code": "1.Anot-a-code"}, "invalid_grant", 9002313),
    ],
)
def test_token_endpoint_errors(sim: IdentitySimulator, form: dict[str, str], error: str, code: int) -> None:
    flow = started(sim)
    issued = full_sign_in(sim, flow.url, "mia@m365.test")["code"]
    response = redeem(sim, issued, flow.verifier, **form)
    assert response.status_code == (401 if error == "invalid_client" else 400)
    body = response.json()
    assert (body["error"], body["error_codes"]) == (error, [code])
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert {"timestamp", "trace_id", "correlation_id"} <= body.keys()


def test_a_failed_redemption_does_not_leak_and_msal_reports_invalid_client(sim: IdentitySimulator) -> None:
    http = requests.Session()
    http.verify, http.trust_env = sim.ca_bundle, False
    app = msal.ConfidentialClientApplication(
        sim.client_id,
        client_credential="not-the-secret",
        authority=sim.authority(),
        instance_discovery=False,
        http_client=http,
    )
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    result = app.acquire_token_by_auth_code_flow(flow, full_sign_in(sim, flow["auth_uri"], "mia@m365.test"))
    assert result["error"] == "invalid_client"
    assert 7000215 in result["error_codes"]


def test_msal_passes_an_authorization_error_through(
    sim: IdentitySimulator, msal_app: msal.ConfidentialClientApplication
) -> None:
    flow = msal_app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    browser = Browser(sim)
    page = browser.enter_password(flow["auth_uri"], "mia@m365.test", sim.users["mia@m365.test"].password)
    result = msal_app.acquire_token_by_auth_code_flow(flow, callback(browser.consent(page, "cancel")))
    assert result["error"] == "access_denied"
    assert "AADSTS65004" in result["error_description"]


def test_refresh_tokens(sim: IdentitySimulator) -> None:
    body = tokens_for(sim, "mia@m365.test")
    refreshed = post_token(
        sim, grant_type="refresh_token", refresh_token=body["refresh_token"], scope="User.Read"
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["access_token"] != body["access_token"]
    assert refreshed.json()["refresh_token"]
    wider = post_token(
        sim, grant_type="refresh_token", refresh_token=body["refresh_token"], scope="Mail.Send"
    )
    assert (wider.json()["error"], wider.json()["error_codes"]) == ("invalid_grant", [65001])
    assert wider.json()["suberror"] == "consent_required"
    garbage = post_token(sim, grant_type="refresh_token", refresh_token="1.ARnonsense")
    assert garbage.json()["error_codes"] == [9002313]
    sim.revoke_refresh_tokens("mia@m365.test")
    revoked = post_token(sim, grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert (revoked.json()["error"], revoked.json()["error_codes"]) == ("invalid_grant", [50173])


def test_a_refresh_token_unused_for_90_days_has_expired(sim: IdentitySimulator, clock: Clock) -> None:
    body = tokens_for(sim, "mia@m365.test")
    clock.now += 91 * 24 * 3600
    try:
        late = post_token(sim, grant_type="refresh_token", refresh_token=body["refresh_token"])
    finally:
        clock.now -= 91 * 24 * 3600
    assert (late.json()["error"], late.json()["error_codes"]) == ("invalid_grant", [700082])


def test_token_timeout_never_answers(sim: IdentitySimulator) -> None:
    flow = started(sim)
    code = full_sign_in(sim, flow.url, "tom@m365.test")["code"]
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(
            f"{sim.authority()}/oauth2/v2.0/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": flow.verifier,
                "client_id": sim.client_id,
                "client_secret": sim.client_secret,
            },
            verify=sim.ca_bundle,
            timeout=(10, 1),  # the server never answers: any read budget runs out
        )


# ------------------------------------------------------------------ Graph


def test_graph_me_select_and_the_alias_user(sim: IdentitySimulator) -> None:
    token = tokens_for(sim, "olivia@m365.test")["access_token"]
    me = graph(sim, "/v1.0/me?$select=id,mail,userPrincipalName,proxyAddresses", token).json()
    assert me["@odata.context"] == (
        f"{sim.graph_base_url}/v1.0/$metadata#users(id,mail,userPrincipalName,proxyAddresses)/$entity"
    )
    assert me["mail"] == "olivia.hart@m365.test"
    assert me["userPrincipalName"] == "olivia@m365.test"
    assert "smtp:sales@m365.test" in me["proxyAddresses"]
    assert "SMTP:olivia.hart@m365.test" in me["proxyAddresses"]
    assert set(me) == {"@odata.context", "id", "mail", "userPrincipalName", "proxyAddresses"}
    default = graph(sim, "/v1.0/me", token).json()
    assert "proxyAddresses" not in default
    assert default["displayName"] == "Olivia Hart"
    bad = graph(sim, "/v1.0/me?$select=id,shoeSize", token)
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "BadRequest")


@pytest.mark.parametrize(
    ("address", "status", "code"),
    [
        ("ava@m365.test", 404, "MailboxNotEnabledForRESTAPI"),
        ("ethan@m365.test", 403, "ErrorAccessDenied"),
        ("henry@m365.test", 503, "serviceNotAvailable"),
    ],
)
def test_graph_inbox_per_behaviour(sim: IdentitySimulator, address: str, status: int, code: str) -> None:
    token = tokens_for(sim, address)["access_token"]
    response = graph(sim, "/v1.0/me/mailFolders/inbox", token)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert {"date", "request-id", "client-request-id"} <= error["innerError"].keys()


def test_a_user_without_mailbox_has_no_mail(sim: IdentitySimulator) -> None:
    token = tokens_for(sim, "ava@m365.test")["access_token"]
    assert graph(sim, "/v1.0/me?$select=mail,proxyAddresses", token).json()["mail"] is None


def test_graph_inbox_select(sim: IdentitySimulator) -> None:
    token = tokens_for(sim, "mia@m365.test")["access_token"]
    inbox = graph(sim, "/v1.0/me/mailFolders/inbox?$select=totalItemCount,unreadItemCount", token).json()
    assert set(inbox) == {"@odata.context", "id", "totalItemCount", "unreadItemCount"}
    assert inbox["@odata.context"].endswith("/mailFolders(totalItemCount,unreadItemCount)/$entity")
    bad = graph(sim, "/v1.0/me/mailFolders/inbox?$select=colour", token)
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "BadRequest")


def test_graph_throttles_once_then_answers(sim: IdentitySimulator) -> None:
    token = tokens_for(sim, "grace@m365.test")["access_token"]
    first = graph(sim, "/v1.0/me/mailFolders/inbox", token)
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "1"
    second = graph(sim, "/v1.0/me/mailFolders/inbox", token)
    assert second.status_code == 200
    assert second.json()["totalItemCount"] == 7


def test_graph_validates_the_bearer(sim: IdentitySimulator, clock: Clock) -> None:
    body = tokens_for(sim, "mia@m365.test")
    access = body["access_token"]
    missing = requests.get(f"{sim.graph_base_url}/v1.0/me", verify=sim.ca_bundle, timeout=10)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong_audience = graph(sim, "/v1.0/me", body["id_token"])
    assert wrong_audience.status_code == 401
    assert "audience" in wrong_audience.json()["error"]["message"]
    head, payload, signature = access.split(".")
    tampered = graph(sim, "/v1.0/me", f"{head}.{payload}.{signature[:-4]}AAAA")
    assert tampered.status_code == 401
    clock.now += 3600
    try:
        expired = graph(sim, "/v1.0/me", access)
    finally:
        clock.now -= 3600
    assert expired.status_code == 401
    assert "expired" in expired.json()["error"]["message"]
    assert graph(sim, "/v1.0/me", access).status_code == 200


def test_graph_needs_the_mail_scope_for_the_inbox(sim: IdentitySimulator) -> None:
    flow = started(sim, scope="openid offline_access User.Read")
    body = redeem(sim, full_sign_in(sim, flow.url, "mia@m365.test")["code"], flow.verifier).json()
    assert graph(sim, "/v1.0/me", body["access_token"]).status_code == 200
    denied = graph(sim, "/v1.0/me/mailFolders/inbox", body["access_token"])
    assert (denied.status_code, denied.json()["error"]["code"]) == (403, "ErrorAccessDenied")


# ------------------------------------------------------------------ lifecycle


def test_stops_cleanly_even_with_a_request_held_open() -> None:
    before = {t.ident for t in threading.enumerate()}
    sim = IdentitySimulator(redirect_uris=[REDIRECT_URI]).start()
    flow = started(sim)
    code = full_sign_in(sim, flow.url, "tom@m365.test")["code"]
    held = threading.Thread(target=lambda: _ignore_errors(lambda: redeem(sim, code, flow.verifier)))
    held.start()
    deadline = time.monotonic() + 60  # generous: only bounds a broken run
    while not any(r.path.endswith("/token") for r in sim.requests_seen) and time.monotonic() < deadline:
        held.join(0.05)
    assert held.is_alive()  # the token request is being held
    sim.stop()
    held.join(10)
    assert not held.is_alive()
    leftovers = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert leftovers == []
    port = int(sim.authority_host.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def _ignore_errors(call: Any) -> None:
    with contextlib.suppress(requests.RequestException):
        call()


def test_the_command_line_lists_the_users() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "devstack.identity_sim", "--list"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "mia@m365.test" in out
    assert "graph_throttled" in out


def test_the_sign_in_pages_mounted_on_the_local_stacks_origin_keep_msal_working(clock: Clock) -> None:
    """`make dev` serves the sign-in pages on the gateway's origin (plain HTTP on loopback, a fixed port), so
    a person's browser needs no trust in the simulator's throw-away CA; MSAL keeps HTTPS for the rest."""
    from werkzeug.serving import make_server

    from devstack.gateway import Gateway

    with IdentitySimulator(redirect_uris=[REDIRECT_URI], clock=clock) as sim:
        # Given the sign-in pages mounted on a gateway, as the local stack mounts them
        gateway = Gateway({}, routes=[])
        server = make_server("127.0.0.1", 0, gateway, threaded=True)
        public = f"http://127.0.0.1:{server.server_port}/_local/login"
        gateway.mount("/_local/login", sim.browser_app(public))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            http = requests.Session()
            http.verify, http.trust_env = sim.ca_bundle, False
            app = msal.ConfidentialClientApplication(
                sim.client_id,
                client_credential=sim.client_secret,
                authority=sim.authority("organizations"),
                instance_discovery=False,
                http_client=http,
            )
            # When MSAL starts a flow: the browser is sent to the mounted pages, not the HTTPS port
            flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
            assert flow["auth_uri"].startswith(f"{public}/organizations/oauth2/v2.0/authorize?")
            browser = Browser(sim)
            page = browser.open(flow["auth_uri"])
            # Then the pages post back under the mount point
            assert page.form("signin")["action"] == "/_local/login/organizations/login"
            page = browser.submit(
                page, "signin", login="mia@m365.test", passwd=sim.users["mia@m365.test"].password
            )
            assert page.form("consent")["action"] == "/_local/login/organizations/Consent/Set"
            # and the session cookie is one a browser keeps on plain HTTP, scoped to the pages
            cookie = next(c for c in browser.http.cookies if c.name == "ESTSAUTH")
            assert (cookie.path, cookie.secure) == ("/_local/login/", False)
            # and the code the app gets redeems over HTTPS, the token and the issuer on the simulator's port
            result = app.acquire_token_by_auth_code_flow(flow, callback(browser.consent(page)))
            assert "access_token" in result, result
            assert result["id_token_claims"]["iss"].startswith(sim.authority_host + "/")
            assert [s.service for s in sim.requests_seen if s.path.endswith("/token")] == ["login"]
        finally:
            server.shutdown()
            server.server_close()


# ------------------------------------------------------------------ controls: break a user on purpose


def refresh(sim: IdentitySimulator, token: str) -> requests.Response:
    return post_token(sim, grant_type="refresh_token", refresh_token=token)


def test_each_refresh_rotates_the_refresh_token_and_the_old_one_keeps_working(sim: IdentitySimulator) -> None:
    # Given Mia's refresh token
    first = tokens_for(sim, "mia@m365.test")["refresh_token"]
    # When it is redeemed: a new refresh token comes back, which works in turn
    second = refresh(sim, first).json()["refresh_token"]
    assert second != first
    third = refresh(sim, second)
    assert third.status_code == 200
    assert third.json()["refresh_token"] not in (first, second)
    # And the old one was not revoked by its use ("Refresh tokens replace themselves with a fresh token upon
    # every use ... doesn't revoke old refresh tokens": the app must store the new one itself)
    assert refresh(sim, first).status_code == 200


def test_revoked_refresh_tokens_answer_50173_until_the_user_signs_in_again(sim: IdentitySimulator) -> None:
    old = tokens_for(sim, "mia@m365.test")["refresh_token"]
    sim.revoke_refresh_tokens("mia@m365.test")
    revoked = refresh(sim, old)
    assert (revoked.status_code, revoked.json()["error"], aadsts(revoked.text)) == (
        400,
        "invalid_grant",
        50173,
    )
    assert sim.user_state("mia@m365.test").revoked_refresh_tokens >= 1
    # A new sign-in (the reconnect) issues a working one
    fresh = tokens_for(sim, "mia@m365.test")["refresh_token"]
    assert refresh(sim, fresh).status_code == 200


def test_a_disabled_user_is_refused_at_refresh_and_at_sign_in(sim: IdentitySimulator) -> None:
    token = tokens_for(sim, "olivia@m365.test")["refresh_token"]
    sim.disable_user("olivia@m365.test")
    refused = refresh(sim, token)
    assert (refused.status_code, refused.json()["error"], aadsts(refused.text)) == (
        400,
        "invalid_grant",
        50057,
    )
    page = Browser(sim).enter_password(
        authorize_url(sim), "olivia@m365.test", sim.users["olivia@m365.test"].password
    )
    assert (callback(page)["error"], aadsts(callback(page)["error_description"])) == ("access_denied", 50057)
    sim.disable_user("olivia@m365.test", disabled=False)
    assert refresh(sim, token).status_code == 200


def test_a_locked_user_is_refused_at_refresh_and_on_the_sign_in_page(sim: IdentitySimulator) -> None:
    token = tokens_for(sim, "mia@m365.test")["refresh_token"]
    sim.lock_user("mia@m365.test")
    refused = refresh(sim, token)
    assert (refused.status_code, refused.json()["error"], aadsts(refused.text)) == (
        400,
        "invalid_grant",
        50053,
    )
    page = Browser(sim).enter_password(
        authorize_url(sim), "mia@m365.test", sim.users["mia@m365.test"].password
    )
    assert page.status == 200
    assert page.location is None
    assert aadsts(page.text) == 50053
    assert sim.user_state("mia@m365.test").locked
    sim.lock_user("mia@m365.test", locked=False)
    assert refresh(sim, token).status_code == 200


def test_withdrawn_consent_answers_65001_and_the_next_sign_in_asks_again(sim: IdentitySimulator) -> None:
    token = tokens_for(sim, "mia@m365.test")["refresh_token"]
    sim.withdraw_consent("mia@m365.test")
    refused = refresh(sim, token).json()
    assert (refused["error"], refused["error_codes"], refused["suberror"]) == (
        "invalid_grant",
        [65001],
        "consent_required",
    )
    page = Browser(sim).enter_password(
        authorize_url(sim), "mia@m365.test", sim.users["mia@m365.test"].password
    )
    assert "Permissions requested" in page.text
    assert refresh(sim, tokens_for(sim, "mia@m365.test")["refresh_token"]).status_code == 200


def test_an_outage_answers_503_temporarily_unavailable_for_everyone_or_one_user(
    sim: IdentitySimulator,
) -> None:
    mia = tokens_for(sim, "mia@m365.test")["refresh_token"]
    olivia = tokens_for(sim, "olivia@m365.test")["refresh_token"]
    # One user's outage
    sim.set_outage(address="mia@m365.test")
    down = refresh(sim, mia)
    assert (down.status_code, down.json()["error"], aadsts(down.text)) == (
        503,
        "temporarily_unavailable",
        90033,
    )
    assert refresh(sim, olivia).status_code == 200
    # Everyone's: refreshes and code redemptions
    sim.set_outage()
    assert refresh(sim, olivia).status_code == 503
    flow = started(sim)
    code = full_sign_in(sim, flow.url, "olivia@m365.test")["code"]
    assert redeem(sim, code, flow.verifier).status_code == 503
    # Over: the same tokens work again (a transient failure revokes nothing)
    sim.set_outage(False)
    sim.set_outage(False, address="mia@m365.test")
    assert refresh(sim, mia).status_code == 200
    assert refresh(sim, olivia).status_code == 200


def test_controls_name_only_known_users(sim: IdentitySimulator) -> None:
    with pytest.raises(KeyError):
        sim.disable_user("nobody@m365.test")

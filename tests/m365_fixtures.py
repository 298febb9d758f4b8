"""Fixtures for the Microsoft 365 tests: the identity + Graph simulator, production config pointed at it,
and a "person" who signs in on the simulator's pages with plain form posts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import boto3
import pytest
import requests

from devstack.identity_sim import IdentitySimulator
from devstack.identity_sim.forms import forms
from onboarding import deps
from onboarding.m365.config import M365Config
from onboarding.settings import VerifyMailboxSettings
from tests.conftest import template_environment

REDIRECT_URI = "https://127.0.0.1:3000/connect/oauth/callback"


@pytest.fixture(scope="session")
def identity_sim_server() -> Iterator[IdentitySimulator]:
    with IdentitySimulator(redirect_uris=[REDIRECT_URI]) as sim:
        yield sim


@pytest.fixture
def identity_sim(identity_sim_server: IdentitySimulator) -> IdentitySimulator:
    identity_sim_server.reset_observations()
    return identity_sim_server


def production_config(sim: IdentitySimulator, secret_arn: str) -> M365Config:
    """What the verification function builds from the environment template.yaml gives it, with the hosts,
    the client id and the CA pointing at the simulator (as the local stack does)."""
    env = {
        **template_environment("VerifyMailboxFunction"),
        **sim.environment(),
        "M365_CLIENT_SECRET_ARN": secret_arn,
    }
    return VerifyMailboxSettings.from_environ(env).m365


def point_functions_at(sim: IdentitySimulator, monkeypatch: pytest.MonkeyPatch, **overrides: str) -> None:
    """What the local stack does for the functions (under moto): the Entra app's secret in Secrets Manager,
    the hosts, the client id and the CA pointing at the simulator (plus `overrides`); settings read again."""
    secret = boto3.client("secretsmanager").create_secret(Name="entra-app", SecretString=sim.client_secret)
    for name, value in {**sim.environment(), "M365_CLIENT_SECRET_ARN": secret["ARN"], **overrides}.items():
        monkeypatch.setenv(name, value)
    deps.reset()


@pytest.fixture
def m365_config(identity_sim: IdentitySimulator) -> M365Config:
    """Production config with only the hosts and the CA pointing at the simulator; small budgets."""
    config = production_config(identity_sim, "arn:aws:secretsmanager:us-east-1:123456789012:secret:x")
    return replace(config, routing_budget=2.0, token_timeout=2.0, graph_timeout=2.0, graph_budget=6.0)


@dataclass
class Page:
    """One answer of the simulator's pages, as a browser that does not follow redirects sees it."""

    url: str
    status: int
    text: str
    location: str | None = None

    def forms(self) -> list[dict[str, Any]]:
        return forms(self.text)

    def form(self, form_id: str) -> dict[str, Any]:
        return next(f for f in self.forms() if f["id"] == form_id)


def redirect_params(page: Page) -> dict[str, str]:
    """What the app's redirect URI receives (the query of the 302's Location)."""
    assert page.status == 302, page.text
    assert page.location is not None
    return {k: v[0] for k, v in parse_qs(urlsplit(page.location).query).items()}


class Person:
    """Someone at Microsoft's sign-in pages (the simulator's): signs in, accepts or cancels consent."""

    def __init__(self, sim: IdentitySimulator) -> None:
        self.sim = sim
        self.http = requests.Session()
        self.http.verify = sim.ca_bundle
        self.http.trust_env = False

    def _page(self, response: requests.Response) -> Page:
        return Page(response.url, response.status_code, response.text, response.headers.get("Location"))

    def open(self, url: str) -> Page:
        return self._page(self.http.get(url, allow_redirects=False, timeout=10))

    def submit(self, page: Page, form_id: str, **fields: str) -> Page:
        form = page.form(form_id)
        url = urljoin(page.url, form["action"])
        data = {**form["fields"], **fields}
        return self._page(self.http.post(url, data=data, allow_redirects=False, timeout=10))

    def enter_password(self, authorize_url: str, address: str, password: str | None = None) -> Page:
        """Open the authorize URL and sign in as `address` with `password` (else its simulator password);
        the next page."""
        page = self.open(authorize_url)
        assert page.status == 200, page.text
        secret = self.sim.users[address].password if password is None else password
        return self.submit(page, "signin", login=address, passwd=secret)

    def sign_in(self, authorize_url: str, address: str, *, consent: str = "accept") -> dict[str, str]:
        """Sign in as `address` (its simulator password); returns what Microsoft sends to the redirect URI."""
        page = self.enter_password(authorize_url, address)
        if page.status == 200 and "consent" in [f["id"] for f in page.forms()]:
            page = self.submit(page, "consent", decision=consent)
        return redirect_params(page)

    def answer(self, authorize_url: str, address: str, decision: str = "accept") -> dict[str, str]:
        """Sign in as `address` and answer whichever page follows (consent, or "need admin approval",
        whose form goes back to the app) with `decision`; what the redirect URI receives."""
        page = self.enter_password(authorize_url, address)
        while page.status == 200:
            page = self.submit(page, page.forms()[0]["id"], decision=decision)
        return redirect_params(page)

"""Property: whatever text lands in the connect page's forms (control characters, any unicode, very long
strings, markup), the page answers a 4xx page or a 303, never a 500, and never echoes markup unescaped."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from functions.auth_callback.app import MAX_FORM_BYTES
from onboarding.agents.models import AgentStatus, Attr
from onboarding.connect import pages
from tests.connect_helpers import CSRF_KEY, EMAIL, Answer, ConnectEnv, Invited, connect_environment, post

S = AgentStatus
MARKUP = "<script>alert(1)</script>"
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Any text; or any text around a script tag; or very long text.
hostile = st.one_of(
    st.text(),
    st.builds(lambda a, b: a + MARKUP + b, st.text(max_size=20), st.text(max_size=20)),
    st.text(min_size=1, max_size=3).map(lambda s: s * 700),
)
# The invited address (so the other fields are reached), a near miss, or anything.
emails = st.one_of(st.just(EMAIL), st.just(EMAIL.upper()), st.just(f"{MARKUP}@contoso.com"), hostile)
optional = st.one_of(st.none(), hostile)
# Values that pass validation, mixed in so that examples reach the writes, not only the 400 page.
usernames = st.one_of(optional, st.sampled_from(["ann@contoso.com", "CONTOSO\\ann", " ann@contoso.com "]))
servers = st.one_of(
    optional,
    st.sampled_from(["mail.contoso.com", "https://Mail.Contoso.com/owa/", "[2001:db8::1]", "10.0.0.1:443"]),
)
passwords = st.one_of(optional, st.text(min_size=1, max_size=64))


@pytest.fixture
def env(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectEnv]:
    with connect_environment(monkeypatch) as connect_env:
        yield connect_env


def assert_safe(answer: Answer, *values: str | None) -> None:
    assert answer.status == 303 or 400 <= answer.status < 500, (answer.status, answer.body[:2000])
    if answer.status == 303:
        assert answer.body == ""
    assert MARKUP not in answer.body
    for value in values:
        if value and "<" in value and len(value) > 3:
            assert value not in answer.body


def form(nonce: str, **fields: str | None) -> dict[str, str]:
    return {"nonce": nonce, **{k: v for k, v in fields.items() if v is not None}}


def test_the_credentials_form_survives_any_text(env: ConnectEnv) -> None:
    invited = env.invite()

    @PROPERTY
    @given(email=emails, password=passwords, username=usernames, server=servers)
    # (found once: a password inside the username the page keeps is the username echoed, not a leak)
    @example(email=EMAIL, password="0" * 12, username="0" * 700, server=None)
    def check(email: str, password: str | None, username: str | None, server: str | None) -> None:
        nonce = pages.csrf_nonce(CSRF_KEY, invited.token)
        fields = form(nonce, email=email, password=password, username=username, server=server)
        answer = post(f"/connect/{invited.token}", fields)
        assert_safe(answer, email, password, username, server)
        echoed = [value for value in (email, username, server) if value]  # the page keeps what was typed
        if password and len(password.strip()) >= 12 and not any(password in value for value in echoed):
            assert password not in answer.body
        _back_to_failed(env, invited)

    check()


def test_the_settings_form_survives_any_text(env: ConnectEnv) -> None:
    invited = env.invite()
    env.repo.transition("demo", invited.agent_id, S.CONNECTING)
    _back_to_needs_settings(env, invited)

    @PROPERTY
    @given(password=passwords, username=usernames, server=servers)
    def check(password: str | None, username: str | None, server: str | None) -> None:
        nonce = pages.csrf_nonce(CSRF_KEY, invited.token)
        fields = form(nonce, password=password, username=username, server=server)
        answer = post(f"/connect/{invited.token}/settings", fields)
        assert_safe(answer, password, username, server)
        _back_to_needs_settings(env, invited)

    check()


def test_any_nonce_but_a_signed_one_is_refused(env: ConnectEnv) -> None:
    invited = env.invite()

    @PROPERTY
    @given(nonce=hostile)
    def check(nonce: str) -> None:
        fields = {"nonce": nonce, "email": EMAIL, "password": "pw"}
        answer = post(f"/connect/{invited.token}", fields)
        # A form over the size limit is refused before it is parsed (400); any other: the nonce (403).
        too_large = len(urlencode(fields).encode()) > MAX_FORM_BYTES
        assert answer.status == (400 if too_large else 403)
        assert MARKUP not in answer.body

    check()
    assert env.item(invited.agent_id)["status"] == "invited"


def _back_to_failed(env: ConnectEnv, invited: Invited) -> None:
    """A successful post started a workflow: let it fail, so the next example can post again."""
    if env.item(invited.agent_id)["status"] == S.CONNECTING.value:
        env.repo.transition("demo", invited.agent_id, S.FAILED, reason="auth_failed")


def _back_to_needs_settings(env: ConnectEnv, invited: Invited) -> None:
    status = S(env.item(invited.agent_id)["status"])
    if status is S.FAILED:
        env.repo.transition("demo", invited.agent_id, S.CONNECTING)
        status = S.CONNECTING
    if status is S.CONNECTING:
        env.repo.transition(
            "demo",
            invited.agent_id,
            S.NEEDS_SETTINGS,
            reason="autodiscover_failed",
            set_attributes={Attr.TASK_TOKEN: "waiting-task-token"},
        )

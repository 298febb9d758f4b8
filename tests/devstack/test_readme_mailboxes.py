"""The README's table of simulator mailboxes is what the simulator plays (a newcomer relies on it)."""

from __future__ import annotations

import re

from devstack.exchange_sim.scenarios import MAILBOXES, SCENARIOS
from tests.conftest import ROOT

ROW = re.compile(r"^\| `(?P<address>[^`]+@[^`]+)` \| `(?P<password>[^`]+)` \|", re.MULTILINE)


def test_every_mailbox_in_the_readme_exists_with_that_password() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = ROW.findall(readme)
    assert len(rows) >= 10
    played = {(s.email, s.password) for s in SCENARIOS}  # servers that fail before any password check
    for address, password in rows:
        known = address in MAILBOXES and MAILBOXES[address].password == password
        assert known or (address, password) in played, f"the simulator does not play {address} / {password}"


def test_the_settings_the_readme_gives_for_dave_sign_him_in() -> None:
    assert "ADATUM\\dave" in MAILBOXES["dave@adatum.test"].logins
    assert "username `ADATUM\\dave`, server `mail.adatum.test`" in (ROOT / "README.md").read_text()

"""Time to verdict of Microsoft 365 mailboxes ("Sign in with Microsoft", verified over Graph), beside
Exchange mailboxes (password form, verified over EWS), through the local stack.

For each scenario, an owner in a fresh tenant: the invite is sent, the page opened, "Sign in with
Microsoft" pressed, the simulator's sign-in and consent passed; the clock runs from the moment the
browser comes back to our callback until the status page shows the verdict (code exchange, refresh
token stored, workflow started, refresh token redeemed, Graph /me and inbox, verdict recorded). The
Exchange rows run from the password form's POST to the verdict. Median of a few runs per scenario.

    PYTHONPATH=layers/common:. .venv/bin/python -m bench.m365_verdicts [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import re
import statistics
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests

from devstack.identity_sim.forms import forms

POLL_S = 0.05
_NONCE = re.compile(r'<input type="hidden" name="nonce" value="([^"]+)">')
FINAL = {"verified", "failed"}


@dataclass(frozen=True)
class Row:
    name: str
    invited: str
    account: str | None  # signs in as (Microsoft 365); None: the Exchange password form
    password: str
    expected: tuple[str, str | None]  # (status, reason)


M365_ROWS = (
    Row("happy path", "mia@m365.test", "mia@m365.test", "", ("verified", None)),
    Row("alias (proxy address)", "sales@m365.test", "olivia@m365.test", "", ("verified", None)),
    Row("Federated domain", "fiona@fedcorp-m365.test", "fiona@fedcorp-m365.test", "", ("verified", None)),
    Row("Graph 429, Retry-After 1", "grace@m365.test", "grace@m365.test", "", ("verified", None)),
    Row("another account", "mia@m365.test", "olivia@m365.test", "", ("failed", "m365_wrong_account")),
    Row("no Exchange Online mailbox", "ava@m365.test", "ava@m365.test", "", ("failed", "m365_no_mailbox")),
    Row("Graph 403", "ethan@m365.test", "ethan@m365.test", "", ("failed", "m365_access_denied")),
    Row("Graph 503", "henry@m365.test", "henry@m365.test", "", ("failed", "m365_unavailable")),
    Row(
        "consent declined", "mia@m365.test", "mia@m365.test", "cancel", ("callback", "m365_consent_declined")
    ),
    Row("token endpoint never answers", "tom@m365.test", "tom@m365.test", "", ("callback", "m365_timeout")),
)
EXCHANGE_ROWS = (
    Row("Exchange: autodiscover via domain", "alice@contoso.test", None, "Alice-Pass-1", ("verified", None)),
    Row("Exchange: autodiscover via subdomain", "bea@fabrikam.test", None, "Bea-Pass-4", ("verified", None)),
)


def _forms(html: str) -> dict[str, dict[str, Any]]:
    return {f["id"]: f for f in forms(html)}


class Owner:
    def __init__(self, base_url: str, ca_bundle: str, passwords: dict[str, str]) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        self.http.trust_env = False
        self.ca = ca_bundle
        self.passwords = passwords

    def invite_link(self, tenant: str, email: str) -> str:
        from devstack import tokens

        auth = {"Authorization": f"Bearer {tokens.mint(tenant)}"}
        body = {"name": "Owner", "email": email, "type": "ms_exchange"}
        created = self.http.post(f"{self.base_url}/agents", json=body, headers=auth, timeout=60)
        created.raise_for_status()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            emails = self.http.get(f"{self.base_url}/_local/emails", timeout=30).json()
            links = [e["link"] for e in emails if e["to"] == email and e["subject"].startswith(f"{tenant} ")]
            if links:
                return str(links[0])  # the folder lists the newest first
            time.sleep(0.1)
        raise TimeoutError("no invite email")

    def verdict(self, link: str) -> tuple[str, str | None]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = self.http.get(f"{link}/status", headers={"Accept": "application/json"}, timeout=60).json()
            if state["status"] in FINAL:
                return state["status"], state.get("reason")
            time.sleep(POLL_S)
        raise TimeoutError("no verdict")

    def m365(self, row: Row, link: str) -> tuple[float, tuple[str, str | None]]:
        page = self.http.get(link, timeout=60)
        nonce = _NONCE.search(page.text)
        assert nonce, "no form on the page"
        started = self.http.post(
            f"{link}/microsoft",
            data={"nonce": nonce.group(1)},
            headers={"Origin": self.base_url},
            allow_redirects=False,
            timeout=60,
        )
        assert started.status_code == 303, started.text[:300]
        authorize = started.headers["Location"]
        sign_in = self.http.get(authorize, verify=self.ca, allow_redirects=False, timeout=30)
        form = _forms(sign_in.text)["signin"]
        answer = self.http.post(
            urljoin(authorize, form["action"]),
            data={**form["fields"], "login": row.account, "passwd": self.passwords[str(row.account)]},
            verify=self.ca,
            allow_redirects=False,
            timeout=30,
        )
        while answer.status_code == 200:  # consent (or admin approval) page
            form_id, form = next(iter(_forms(answer.text).items()))
            decision = row.password or "accept" if form_id == "consent" else "return"
            answer = self.http.post(
                urljoin(answer.url, form["action"]),
                data={**form["fields"], "decision": decision},
                verify=self.ca,
                allow_redirects=False,
                timeout=30,
            )
        callback = answer.headers["Location"]
        clock = time.monotonic()
        back = self.http.get(callback, allow_redirects=False, timeout=60)
        if back.status_code != 303:  # the sign-in itself ended: its page is the verdict
            found = re.search(r'data-reason="([^"]+)"', back.text)
            return time.monotonic() - clock, ("callback", found.group(1) if found else None)
        result = self.verdict(link)
        return time.monotonic() - clock, result

    def exchange(self, row: Row, link: str) -> tuple[float, tuple[str, str | None]]:
        page = self.http.get(link, params={"provider": "exchange"}, timeout=60)
        nonce = _NONCE.search(page.text)
        assert nonce, "no form on the page"
        clock = time.monotonic()
        posted = self.http.post(
            link,
            data={"nonce": nonce.group(1), "email": row.invited, "password": row.password},
            headers={"Origin": self.base_url},
            allow_redirects=False,
            timeout=60,
        )
        assert posted.status_code == 303, posted.text[:300]
        result = self.verdict(link)
        return time.monotonic() - clock, result


def run(runs: int) -> list[tuple[Row, list[float], list[tuple[str, str | None]]]]:
    from devstack.stack import LocalStack, free_port

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    quiet = io.StringIO()
    stack = LocalStack(gateway_port=free_port(), moto_port=free_port())
    with contextlib.redirect_stdout(quiet):
        stack.start()
    results = []
    try:
        assert stack.identity is not None
        passwords = {address: user.password for address, user in stack.identity.users.items()}
        owner = Owner(stack.base_url, stack.identity.ca_bundle, passwords)
        run_id = os.urandom(2).hex()
        with contextlib.redirect_stdout(quiet):
            for index, row in enumerate(M365_ROWS + EXCHANGE_ROWS):
                times, verdicts = [], []
                for attempt in range(runs):
                    stack.identity.reset_observations()  # consent asked again, throttling state fresh
                    link = owner.invite_link(f"m365bench-{run_id}-{index}-{attempt}", row.invited)
                    flow = owner.m365 if row.account else owner.exchange
                    seconds, verdict = flow(row, link)
                    times.append(seconds)
                    verdicts.append(verdict)
                results.append((row, times, verdicts))
    finally:
        with contextlib.redirect_stdout(quiet):
            stack.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one run per scenario")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = run(1 if args.quick else args.runs)
    print("\nTime to verdict, Microsoft 365 (callback -> verdict) beside Exchange (form post -> verdict)")
    print("| scenario | path | verdict | as expected | median s | max s |")
    print("|---|---|---|---|---|---|")
    for row, times, verdicts in results:
        path = "Graph" if row.account else "EWS"
        shown = verdicts[-1][1] or verdicts[-1][0]
        ok = all(v == row.expected for v in verdicts)
        print(
            f"| {row.name} | {path} | {shown} | {'yes' if ok else 'NO ' + str(verdicts)} | "
            f"{statistics.median(times):.2f} | {max(times):.2f} |"
        )


if __name__ == "__main__":
    main()

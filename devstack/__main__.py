"""`python -m devstack` runs the local stack; `python -m devstack token --tenant acme` prints a token."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from devstack import tokens

if TYPE_CHECKING:
    from devstack.stack import LocalStack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the local stack (default)")
    run.add_argument("--port", type=int, default=3000, help="gateway port (default 3000)")
    run.add_argument("--moto-port", type=int, default=5001, help="moto server port (default 5001)")
    run.add_argument(
        "--fresh",
        action="store_true",
        help="start empty and keep nothing (default: agents, invites and sent emails are kept)",
    )
    run.add_argument(
        "--state-dir", type=Path, default=tokens.STATE_DIR, help="where state is kept (default .devstack/)"
    )
    run.add_argument(
        "--check-interval",
        type=check_interval,
        default=os.environ.get("CHECK_INTERVAL") or None,
        metavar="2m",
        help="health checks of each mailbox this often (minutes, or e.g. 2h), the dispatcher every quarter of"
        " it: local only, to watch a tick go and come back (default: the template's; env CHECK_INTERVAL)",
    )
    token = sub.add_parser("token", help="print a bearer token for a tenant")
    token.add_argument("--tenant", required=True)
    control = sub.add_parser(
        "control",
        help="break a simulated mailbox on purpose (the running stack's /_local/simulators)",
        description=CONTROL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    control.add_argument("action", choices=("status", *CONTROL_ACTIONS))
    control.add_argument("target", nargs="?", default="", help="a mailbox or user address, a host, ...")
    control.add_argument("values", nargs="*", help="the action's value: a password, a number of days, ...")
    control.add_argument("--minutes", help="lock: for this many minutes (default: until unlocked)")
    control.add_argument("--how", choices=("refuse", "503"), default="refuse", help="offline: how it is down")
    control.add_argument("--window", help="lockout: observation window in minutes (default 30)")
    control.add_argument("--duration", help="lockout: lockout duration in minutes (default 30)")
    control.add_argument(
        "--api", default="http://127.0.0.1:3000", help="the local stack (default %(default)s)"
    )
    args = parser.parse_args(argv)

    if args.command == "token":
        print(tokens.mint(args.tenant))
        return 0
    if args.command == "control":
        return _control(args)

    from devstack import state
    from devstack.stack import LocalStack, PortInUseError

    port, moto_port = getattr(args, "port", 3000), getattr(args, "moto_port", 5001)
    fresh = getattr(args, "fresh", False)
    stack = LocalStack(gateway_port=port, moto_port=moto_port, state_dir=None if fresh else args.state_dir)
    interval = getattr(args, "check_interval", None) or os.environ.get("CHECK_INTERVAL") or None
    stack.check_interval_minutes = check_interval(interval) if isinstance(interval, str) else interval
    try:
        stack.start()
    except PortInUseError as error:
        print(
            f"Cannot start the local stack: port {error.port} ({error.what}) is in use on 127.0.0.1.\n"
            "Is another `make dev` running? Stop it with Ctrl-C in its terminal, or run this one on other"
            " ports:\n  make dev ARGS='--port 3100 --moto-port 5101'",
            file=sys.stderr,
        )
        return 1
    except state.StateInUseError as error:
        print(
            f"Cannot start the local stack: another one is running with the state in {error}.\n"
            "Stop it with Ctrl-C in its terminal, or run this one without keeping state:\n"
            "  make dev ARGS='--fresh --port 3100 --moto-port 5101'",
            file=sys.stderr,
        )
        return 1
    print(banner(stack, fresh=fresh), flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    stack.stop()
    return 0


def check_interval(value: str) -> int:
    """`make dev CHECK_INTERVAL=...`: minutes (`2`, `2m`) or hours (`1h`), 1 minute to 1 day."""
    found = re.fullmatch(r"\s*(\d+)\s*(m|min|h)?\s*", value or "")
    minutes = int(found.group(1)) * (60 if found.group(2) == "h" else 1) if found else 0
    if not 1 <= minutes <= 1440:
        raise argparse.ArgumentTypeError(f"{value!r}: give minutes (2m) or hours (1h), from 1m to 24h")
    return minutes


CONTROL_ACTIONS = (
    "password", "lock", "unlock", "expire", "offline", "online", "revoke", "disable", "enable",
    "withdraw-consent", "lockout", "reset",
)  # fmt: skip
CONTROL_HELP = """Break a simulated mailbox on purpose, on the running local stack (make dev).

  control status [address]                    what the simulators' controls changed (JSON)
  control password bea@fabrikam.test NEW      the mailbox's password changes; the old one is refused
  control lock alice@contoso.test [--minutes 30] / control unlock alice@contoso.test
  control expire bea@fabrikam.test 3          the password expires in 3 days (0 or less: expired; never)
  control offline bea@fabrikam.test [--how 503] / control online bea@fabrikam.test
  control lockout domain 5 [--window 30 --duration 30]   lock accounts after 5 wrong passwords (0: never)
  control revoke mia@m365.test                Microsoft: refresh tokens revoked (AADSTS50173)
  control disable|enable mia@m365.test        Microsoft: account disabled (AADSTS50057)
  control lock|unlock mia@m365.test           Microsoft: Smart Lockout (AADSTS50053)
  control withdraw-consent mia@m365.test      Microsoft: the app's permission removed (AADSTS65001)
  control offline mia@m365.test | microsoft   Microsoft: token endpoint outage (503) for one user | everyone
  control reset all                           everything back as the scenarios say

The page http://127.0.0.1:3000/_local/simulators has the same controls as buttons."""


def _control(args: argparse.Namespace) -> int:
    """POST one control to the running stack (127.0.0.1 only) and print its answer."""
    import json
    import urllib.error
    import urllib.request

    base = args.api.rstrip("/") + "/_local/simulators"
    parts = urllib.parse.urlsplit(base)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        print("--api must be the local stack: http://127.0.0.1:<port>", file=sys.stderr)
        return 2
    if args.action == "status":
        request = urllib.request.Request(base + "/state.json")  # noqa: S310 - http on loopback, checked above
    else:
        value = args.values[0] if args.values else ""
        key = {"password": "value", "expire": "days", "lockout": "threshold"}.get(args.action)
        body: dict[str, str] = {"target": args.target or ("all" if args.action == "reset" else "")}
        if key:
            body[key] = value
        for name in ("minutes", "window", "duration"):
            if getattr(args, name):
                body[name] = getattr(args, name)
        if args.action == "offline":
            body["how"] = args.how
        request = urllib.request.Request(  # noqa: S310 - http on loopback, checked above
            f"{base}/{args.action}", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback, checked above
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        print(json.loads(error.read()).get("error", error.reason), file=sys.stderr)
        return 1
    except urllib.error.URLError as error:
        print(
            f"the local stack does not answer at {args.api} ({error.reason}): is `make dev` running?",
            file=sys.stderr,
        )
        return 1
    if args.action == "status":
        if args.target:
            wanted = args.target.lower()
            answer = [
                v
                for v in answer["exchange"] + answer["microsoft"]
                if wanted in (v.get("email"), v.get("address"))
            ]
        print(json.dumps(answer, indent=2))
    else:
        print(answer["message"])
    return 0


def banner(stack: LocalStack, *, fresh: bool) -> str:
    if fresh:
        kept = "State: not kept (--fresh): agents, invite links and emails are gone when it stops."
    else:
        agents, emails = stack.restored_counts()
        back = f"brought back {agents} agent(s) and {emails} email(s); " if agents or emails else ""
        kept = (
            f"State: kept in {stack.state_dir}/ across restarts ({back}saved every 5 s and on Ctrl-C).\n"
            "  Passwords are kept sealed (with the local KMS key), never in clear; checks that were running\n"
            "  start again, and an owner asked for settings is asked again. `make dev ARGS=--fresh` starts empty."
        )
    return "\n".join(
        [
            f"Local stack up (run {stack.run_number}): API {stack.base_url}  (AWS = moto at {stack.moto_url})",
            f"  Dev dashboard (tenant 'demo'): {stack.base_url}/",
            f"  Sent emails (the invites, with their links): {stack.base_url}/_local/emails",
            f"  Status events (Agent Status Changed, on the stack's bus): {stack.base_url}/_local/events",
            f"  Break a mailbox on purpose (the simulators' controls): {stack.base_url}/_local/simulators",
            *_checks(stack),
            *_microsoft(stack),
            kept,
            "Bearer token for tenant 'demo' (valid 12 h):",
            f"  export TOKEN={tokens.mint('demo')}",
            f'  curl -s -H "Authorization: Bearer $TOKEN" {stack.base_url}/agents',
            "Ctrl-C stops it.",
        ]
    )


def _checks(stack: LocalStack) -> list[str]:
    """The health checks' schedule, as this stack runs it."""
    if stack.scheduler is None:
        return []
    minutes = stack.check_interval_minutes
    every = ", ".join(
        f"{rule['function']} every {_duration(rule['everySeconds'])}" for rule in stack.scheduler.describe()
    )
    interval = (
        f"each mailbox every {minutes} min (CHECK_INTERVAL, local only)"
        if minutes is not None
        else "each mailbox every CheckIntervalMinutes (`make dev CHECK_INTERVAL=2m` to watch it)"
    )
    return [
        f"  Health checks: {interval}; schedules: {every}",
        f"    run one now: curl -s -X POST {stack.base_url}/_local/schedules/DispatchChecksFunction/run",
    ]


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _microsoft(stack: LocalStack) -> list[str]:
    from devstack.stack import SIGN_IN_PATH

    if stack.identity is None:
        return []
    return [
        f"  Microsoft sign-in (simulated): pages at {stack.base_url}{SIGN_IN_PATH}/ (any browser, no certificate"
        " warning; users: devstack/identity_sim/README.md, e.g. mia@m365.test)",
        f"    tokens at {stack.identity.authority_host}  Graph at {stack.identity.graph_base_url} (HTTPS, the"
        " simulator's own CA, for the functions)",
    ]


if __name__ == "__main__":
    sys.exit(main())

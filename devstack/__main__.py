"""`python -m devstack` runs the local stack; `python -m devstack token --tenant acme` prints a token."""

from __future__ import annotations

import argparse
import contextlib
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
    token = sub.add_parser("token", help="print a bearer token for a tenant")
    token.add_argument("--tenant", required=True)
    args = parser.parse_args(argv)

    if args.command == "token":
        print(tokens.mint(args.tenant))
        return 0

    from devstack import state
    from devstack.stack import LocalStack, PortInUseError

    port, moto_port = getattr(args, "port", 3000), getattr(args, "moto_port", 5001)
    fresh = getattr(args, "fresh", False)
    stack = LocalStack(gateway_port=port, moto_port=moto_port, state_dir=None if fresh else args.state_dir)
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
            *_microsoft(stack),
            kept,
            "Bearer token for tenant 'demo' (valid 12 h):",
            f"  export TOKEN={tokens.mint('demo')}",
            f'  curl -s -H "Authorization: Bearer $TOKEN" {stack.base_url}/agents',
            "Ctrl-C stops it.",
        ]
    )


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

"""`python -m devstack` runs the local stack; `python -m devstack token --tenant acme` prints a token."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from devstack import tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the local stack (default)")
    run.add_argument("--port", type=int, default=3000, help="gateway port (default 3000)")
    run.add_argument("--moto-port", type=int, default=5001, help="moto server port (default 5001)")
    token = sub.add_parser("token", help="print a bearer token for a tenant")
    token.add_argument("--tenant", required=True)
    args = parser.parse_args(argv)

    if args.command == "token":
        print(tokens.mint(args.tenant))
        return 0

    from devstack.stack import LocalStack

    stack = LocalStack(
        gateway_port=getattr(args, "port", 3000), moto_port=getattr(args, "moto_port", 5001)
    ).start()
    print(f"Local stack up: API {stack.base_url}  (AWS = moto at {stack.moto_url})", flush=True)
    print(
        f"Dev dashboard (tenant 'demo'): {stack.base_url}/   Sent emails: {stack.base_url}/_local/emails",
        flush=True,
    )
    if stack.identity is not None:
        print(
            f"Microsoft sign-in simulator: {stack.identity.authority_host}  Graph: {stack.identity.graph_base_url}  (users: devstack/identity_sim/README.md)",
            flush=True,
        )
    print("Bearer token for tenant 'demo' (valid 12 h):", flush=True)
    print(f"  export TOKEN={tokens.mint('demo')}", flush=True)
    print(f'  curl -s -H "Authorization: Bearer $TOKEN" {stack.base_url}/agents', flush=True)
    print("Ctrl-C stops it.", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

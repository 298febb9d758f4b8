"""``python -m devstack.identity_sim``: run the identity platform + Graph simulator standalone.

``--list`` prints the users and exits. Otherwise it runs until Ctrl-C; ``--redirect-uri`` registers the app's
redirect URIs (repeatable).
"""

from __future__ import annotations

import argparse
import contextlib
import threading

from .simulator import IdentitySimulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.identity_sim", description=__doc__)
    parser.add_argument("--list", action="store_true", help="print the users and exit")
    parser.add_argument("--redirect-uri", action="append", default=[], help="a redirect URI of the app")
    args = parser.parse_args(argv)
    sim = IdentitySimulator(redirect_uris=args.redirect_uri)
    rows = [("user", "tenant", "namespace", "behaviour")]
    rows += [
        (u.address, u.tenant.display_name, u.tenant.namespace, u.behaviour.value) for u in sim.users.values()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print("\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows))
    if args.list:
        return 0
    with sim:
        print(f"\nAuthority host: {sim.authority_host}   Graph: {sim.graph_base_url}")
        print(f"CA bundle:      {sim.ca_bundle}")
        print(f"Client id:      {sim.client_id}   redirect URIs: {', '.join(args.redirect_uri) or '(none)'}")
        print("Ctrl-C to stop.")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

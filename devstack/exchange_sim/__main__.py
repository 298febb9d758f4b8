"""``python -m devstack.exchange_sim``: run the simulator standalone and print its scenarios.

``--list`` prints the scenarios and exits. Otherwise the simulator runs until Ctrl-C. The in-process routing
only helps code in *this* process; other processes can use the printed DNS port and listener ports.
"""

from __future__ import annotations

import argparse
import contextlib
import threading

from .simulator import ExchangeSimulator


def _table(sim: ExchangeSimulator) -> str:
    rows = [("scenario", "email", "login", "server", "discover", "verify")]
    for s in sim.scenarios:
        rows.append((s.name, s.email, s.login, s.server or "-", s.expect_discover, s.expect_verify))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.exchange_sim", description=__doc__)
    parser.add_argument("--list", action="store_true", help="print the scenarios and exit")
    args = parser.parse_args(argv)
    with ExchangeSimulator(install_routing=False) as sim:
        print(_table(sim))
        if args.list:
            return 0
        print(f"\nCA bundle:   {sim.ca_bundle}")
        print(f"HTTPS port:  127.0.0.1:{sim.https_port} (every simulated name; SNI/Host pick the behaviour)")
        print(f"HTTP port:   127.0.0.1:{sim.http_port} (autodiscover redirects)")
        print(f"DNS server:  127.0.0.1:{sim.dns_port} (UDP; authoritative for .test)")
        print("Ctrl-C to stop.")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

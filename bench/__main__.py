"""`make bench`: every benchmark in one run, each printing its table.

Each bench runs in a fresh interpreter of its own: they configure the process (environment, moto,
cached settings and clients) differently, and must not see each other's state.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

BENCHES = ["cold_start", "warm_latency", "exchange_verdicts", "m365_verdicts", "onboarding", "health_checks"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=BENCHES, action="append", help="run only these (repeatable)")
    parser.add_argument(
        "--quick", action="store_true", help="smaller runs (skips the slow default-library runs)"
    )
    args = parser.parse_args()
    failed = []
    for name in args.only or BENCHES:
        print(f"\n===== bench/{name}.py =====", flush=True)
        argv = (
            ["--quick"]
            if args.quick and name in {"exchange_verdicts", "m365_verdicts", "onboarding", "health_checks"}
            else []
        )
        if args.quick and name == "cold_start":
            argv = ["--no-callgrind", "--runs", "3"]  # instruction counts take minutes under valgrind
        if subprocess.run([sys.executable, "-m", f"bench.{name}", *argv], check=False).returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

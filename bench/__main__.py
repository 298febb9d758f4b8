"""`make bench`: every benchmark in one run, each printing its table."""

from __future__ import annotations

import argparse
import importlib

BENCHES = ["cold_start", "warm_latency", "exchange_verdicts", "onboarding"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=BENCHES, action="append", help="run only these (repeatable)")
    parser.add_argument("--quick", action="store_true", help="smaller runs (skips the slow default-library runs)")
    args = parser.parse_args()
    for name in args.only or BENCHES:
        print(f"\n===== bench/{name}.py =====", flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as error:
            print(f"(not available: {error})")
            continue
        argv = ["--quick"] if args.quick and name in {"exchange_verdicts", "onboarding"} else []
        module.main(argv)


if __name__ == "__main__":
    main()

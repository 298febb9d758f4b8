"""Time-to-verdict per simulator scenario: our discover/verify vs plain exchangelib defaults, side by side.

    PYTHONPATH=layers/common:. python bench/exchange_verdicts.py [--quick] [--cap 150] [--only NAME ...]

Two steps per scenario: "auto" (ours: ``discover()`` then ``verify()`` with the recorded
settings) and, where the scenario has a manual server, "manual" (ours: ``verify()`` with that
server). Ours uses the default budgets (``ExchangeConfig()``), loopback allowed, the simulator's CA.
Default: ``Account(..., autodiscover=True)`` / ``Configuration(server=...)`` with exchangelib's own
timeouts and retry policy; the simulator's CA trusted through REQUESTS_CA_BUNDLE; same in-process
routing (which also refuses any non-loopback connect, so nothing real is ever contacted). Each
default run is capped (``--cap``) and reported as ">N s (gave up)". ``--quick`` skips the default
runs of the slow scenarios.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for entry in (ROOT, ROOT / "layers" / "common"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from devstack.exchange_sim import SCENARIOS, ExchangeSimulator, Scenario  # noqa: E402
from onboarding.exchange import (  # noqa: E402
    ExchangeConfig,
    ExchangeContext,
    ExchangeFailure,
    clear_exchangelib_caches,
    discover,
    verify,
)


def ours(s: Scenario, config: ExchangeConfig, step: str) -> str:
    try:
        if step == "manual":
            result = verify(
                s.email, s.password, ExchangeContext(config=config, username=s.login, server=s.server)
            )
        else:
            context = ExchangeContext(config=config, username=s.username)
            found = discover(s.email, s.password, context)
            result = verify(s.email, s.password, context.found(found))
    except ExchangeFailure as failure:
        return failure.code.value
    return f"ok ({result.inbox_item_count})"


def default(s: Scenario, step: str) -> str:
    from exchangelib import DELEGATE, Account, Configuration, Credentials

    credentials = Credentials(s.login, s.password)
    try:
        if step == "manual":
            config = Configuration(server=s.server, credentials=credentials)
            account = Account(s.email, config=config, autodiscover=False, access_type=DELEGATE)
        else:
            account = Account(s.email, credentials=credentials, autodiscover=True)
        return f"ok ({account.inbox.total_count})"
    except Exception as e:
        return type(e).__name__


def timed(fn: Callable[[], str], cap: float) -> tuple[str, float | None]:
    """(verdict, seconds); seconds None when ``cap`` passed (the thread is abandoned, it is a daemon)."""
    box: queue.Queue[str] = queue.Queue(maxsize=1)
    started = time.monotonic()
    threading.Thread(target=lambda: box.put(fn()), daemon=True).start()
    try:
        verdict = box.get(timeout=cap)
    except queue.Empty:
        return "(gave up)", None
    return verdict, time.monotonic() - started


def _row(
    sim: ExchangeSimulator, s: Scenario, step: str, config: ExchangeConfig, quick: bool, cap: float
) -> tuple[str, ...]:
    if step == "manual":
        expected = s.expect_verify
    else:
        expected = s.expect_verify if s.expect_discover == "ok" else s.expect_discover
    sim.reset_observations()
    our_verdict, our_s = timed(lambda: ours(s, config, step), cap)
    our_requests = len(sim.requests_seen)
    clear_exchangelib_caches()
    sim.reset_observations()
    if quick and s.slow:
        def_verdict, def_s, def_text, def_requests = "(skipped: --quick)", None, "-", "-"
    else:
        def_verdict, def_s = timed(lambda: default(s, step), cap)
        def_text = f"{def_s:.2f}" if def_s is not None else f">{cap:.0f} (gave up)"
        def_requests = str(len(sim.requests_seen))
    clear_exchangelib_caches()
    ratio = f"{def_s / our_s:.1f}x" if def_s and our_s else "-"
    our_text = f"{our_s:.2f}" if our_s is not None else f">{cap:.0f}"
    return (
        s.name,
        step,
        expected,
        our_verdict,
        our_text,
        str(our_requests),
        def_verdict,
        def_text,
        def_requests,
        ratio,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="skip plain exchangelib on the slow scenarios")
    parser.add_argument("--cap", type=float, default=150.0, help="give up on a default run after this (s)")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names")
    args = parser.parse_args(argv)

    rows: list[tuple[str, ...]] = [
        (
            "scenario",
            "step",
            "expected",
            "ours verdict",
            "ours s",
            "ours HTTP requests",
            "default verdict",
            "default s",
            "default HTTP requests",
            "ratio",
        )
    ]
    with ExchangeSimulator() as sim:
        os.environ["REQUESTS_CA_BUNDLE"] = sim.ca_bundle
        config = ExchangeConfig(allow_networks=("127.0.0.0/8",), ca_bundle=sim.ca_bundle)
        for s in SCENARIOS:
            if args.only and s.name not in args.only:
                continue
            for step in ("auto", "manual") if s.server else ("auto",):
                rows.append(_row(sim, s, step, config, args.quick, args.cap))
                print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    print("\n".join(lines))
    print(
        "\nauto = discover() then verify() vs Account(autodiscover=True); manual = verify(server) vs "
        "Configuration(server=...); ratio = default s / ours s; HTTP requests = requests the simulator "
        "received (HTTPS and port 80)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

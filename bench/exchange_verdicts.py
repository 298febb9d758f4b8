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

Healthy rows (verdict ok) run ``--repeat`` times per side, interleaved with the side that goes first
alternating, and print the median time with the request and TLS-handshake counts, because the machine is
shared and single timings are noise. Plain exchangelib trusts only the simulator's CA (one certificate to
load per connection); ours trusts the system CAs too, as in production.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Run:
    verdict: str
    seconds: float | None  # None: gave up at the cap
    cpu: float  # CPU seconds of the whole process (client and simulator: the work both sides cause)
    requests: int  # HTTP requests the simulator received (HTTPS and port 80)
    tls: int  # TLS connections (handshakes) opened to the simulator


def _measure(sim: ExchangeSimulator, fn: Callable[[], str], cap: float) -> Run:
    sim.reset_observations()
    cpu = time.process_time()
    verdict, seconds = timed(fn, cap)
    cpu = time.process_time() - cpu
    handshakes = sum(1 for c in sim.connects if c.port == sim.https_port and not c.refused)
    run = Run(verdict, seconds, cpu, len(sim.requests_seen), handshakes)
    clear_exchangelib_caches()
    return run


def _summary(runs: list[Run], cap: float) -> tuple[str, str, str, str, str, float | None]:
    """(verdict, median seconds, median CPU seconds, requests, TLS handshakes) over the runs (counts: their
    range if they vary)."""
    times = [r.seconds for r in runs]
    median = statistics.median(t for t in times if t is not None) if None not in times else None

    def spread(values: list[int]) -> str:
        return str(values[0]) if min(values) == max(values) else f"{min(values)}-{max(values)}"

    text = f"{median:.3f}" if median is not None else f">{cap:.0f} (gave up)"
    verdicts = sorted({r.verdict for r in runs})
    return (
        " / ".join(verdicts),
        text,
        f"{statistics.median(r.cpu for r in runs):.3f}",
        spread([r.requests for r in runs]),
        spread([r.tls for r in runs]),
        median,
    )


def _row(
    sim: ExchangeSimulator,
    s: Scenario,
    step: str,
    config: ExchangeConfig,
    quick: bool,
    cap: float,
    repeat: int,
) -> tuple[str, ...]:
    """One scenario step. Healthy rows (verdict ok) run ``repeat`` times each side, interleaved (the side
    that goes first alternates), and report medians; the others run once."""
    if step == "manual":
        expected = s.expect_verify
    else:
        expected = s.expect_verify if s.expect_discover == "ok" else s.expect_discover
    skip_default = quick and s.slow
    rounds = repeat if expected == "ok" else 1
    our_runs: list[Run] = []
    default_runs: list[Run] = []
    for index in range(rounds):
        sides = [
            (our_runs, lambda: ours(s, config, step)),
            *([] if skip_default else [(default_runs, lambda: default(s, step))]),
        ]
        for runs, fn in sides if index % 2 == 0 else sides[::-1]:
            runs.append(_measure(sim, fn, cap))
    our_verdict, our_text, our_cpu, our_requests, our_tls, our_s = _summary(our_runs, cap)
    if skip_default:
        def_verdict, def_text, def_cpu, def_requests, def_tls = "(skipped: --quick)", "-", "-", "-", "-"
        def_s = None
    else:
        def_verdict, def_text, def_cpu, def_requests, def_tls, def_s = _summary(default_runs, cap)
    ratio = f"{def_s / our_s:.2f}x" if def_s and our_s else "-"
    return (
        s.name,
        step,
        expected,
        str(rounds),
        our_verdict,
        our_text,
        our_cpu,
        our_requests,
        our_tls,
        def_verdict,
        def_text,
        def_cpu,
        def_requests,
        def_tls,
        ratio,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="skip plain exchangelib on the slow scenarios")
    parser.add_argument("--cap", type=float, default=150.0, help="give up on a default run after this (s)")
    parser.add_argument("--only", nargs="*", default=None, help="scenario names")
    parser.add_argument(
        "--repeat", type=int, default=7, help="runs per side on the healthy rows (median reported)"
    )
    args = parser.parse_args(argv)

    rows: list[tuple[str, ...]] = [
        (
            "scenario",
            "step",
            "expected",
            "runs",
            "ours verdict",
            "ours s",
            "ours CPU s",
            "ours requests",
            "ours TLS",
            "default verdict",
            "default s",
            "default CPU s",
            "default requests",
            "default TLS",
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
                rows.append(_row(sim, s, step, config, args.quick, args.cap, args.repeat))
                print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    print("\n".join(lines))
    print(
        "\nauto = discover() then verify() vs Account(autodiscover=True); manual = verify(server) vs "
        "Configuration(server=...); s = median over the runs (healthy rows: both sides interleaved); "
        "ratio = default s / ours s (above 1: ours faster); requests = HTTP requests the simulator received "
        "(HTTPS and port 80); TLS = TLS connections opened (handshakes); CPU s = median CPU time of the "
        "process (client and simulator), steadier than wall time on a loaded machine"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

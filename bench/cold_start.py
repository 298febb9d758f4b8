"""Cold start: import time of each function's handler module in a fresh interpreter, beside bare imports.

Each figure is the median of N fresh interpreters, measured side by side in one run (bytecode compiled
first, as the deployment ships it). Also reports which handler modules pull in exchangelib.
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_SETUP = "import os; os.environ.setdefault('POWERTOOLS_SERVICE_NAME', 'bench'); "
CASES = {
    "python -c pass (interpreter)": "pass",
    "import boto3 (bare)": "import boto3",
    "import exchangelib (bare)": "import exchangelib",
    "functions.add_agent.app": "import functions.add_agent.app",
    "functions.auth_callback.app": "import functions.auth_callback.app",
    "functions.send_invite.app": "import functions.send_invite.app",
    "functions.verify_mailbox.app": "import functions.verify_mailbox.app",
}


def _env() -> dict[str, str]:
    return {"PYTHONPATH": f"{ROOT / 'layers' / 'common'}:{ROOT}", "PATH": "/usr/bin:/bin", "HOME": str(ROOT)}


def _run(code: str) -> float:
    env = _env()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", ENV_SETUP + code], cwd=ROOT, env=env, check=True)
    return time.perf_counter() - started


def _imports_exchangelib(module: str) -> bool:
    code = f"{ENV_SETUP}import sys, {module}; print('exchangelib' in sys.modules)"
    env = _env()
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip() == "True"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    for folder in ("functions", "layers/common"):
        compileall.compile_dir(ROOT / folder, quiet=1)
    available = {}
    for name, code in CASES.items():
        try:
            _run(code)
            available[name] = code
        except subprocess.CalledProcessError:
            print(f"  (skipped {name}: module not present)")
    samples: dict[str, list[float]] = {name: [] for name in available}
    for _ in range(args.runs):  # interleaved, so machine noise hits every case alike
        for name, code in available.items():
            samples[name].append(_run(code))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    boto3 = medians["import boto3 (bare)"]
    print(f"\nCold start: median of {args.runs} fresh interpreters (seconds; ratio to bare `import boto3`)")
    print(f"{'module':40} {'median s':>9} {'x boto3':>8}  exchangelib?")
    for name, median in medians.items():
        module = name if name.startswith("functions.") else None
        pulls = ("yes" if _imports_exchangelib(module) else "no") if module else ""
        print(f"{name:40} {median:9.3f} {median / boto3:8.2f}  {pulls}")
    print("Target: API functions (add_agent, auth_callback, send_invite) within 1.5x of bare boto3.")


if __name__ == "__main__":
    main()

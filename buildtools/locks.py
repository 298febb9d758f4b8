"""The lock files: every artifact's whole dependency tree, exact versions and hashes, from short input lists.

People edit the *input lists* (direct dependencies only, `*.in`); `make lock` resolves them with uv into
the *locks* (`requirements*.txt`: every package, its exact version and the SHA-256 of each of its files),
and every install reads a lock with hashes required: `sam build` (through each artifact's Makefile,
buildtools/lambda-artifact.mk), `make setup` (the dev and SAM virtualenvs).

1. `requirements-lambda.txt`: the whole deployment resolved at once, for Lambda's platform (Python 3.13,
   arm64): every artifact's `requirements.in` together, constrained by what the runtime provides
   (buildtools/lambda-runtime.in). No artifact installs it; it is what the others are resolved within.
2. each artifact's `requirements.txt` (a layer's, a function's: any folder of template.yaml with a
   `requirements.in`): its own inputs resolved *within* (1). A function and the layers it gets therefore
   share one version of every package they both have, by construction.
3. `requirements-dev.txt`: the tests and tools, also within (1), so the tests run the versions that ship;
   universal (any OS, Python 3.11 and later).
4. `requirements-sam.txt`, `requirements-checkov.txt`: the SAM CLI's and checkov's virtualenvs, each resolved
   on its own (each pins its own boto3, and they disagree).
5. `buildtools/pip.txt`: pip itself, installed first into both virtualenvs.

Each lock starts with the SHA-256 of everything it was made from (its input lists, the files they include,
the locks it is constrained by, and how it was resolved). `--check` (`make lock-check`, in `make lint`
and CI) fails, naming the lock and the input, when one of them changed without `make lock`; and when a
function and one of its layers pin a package at two versions. `make lock` keeps the versions already locked
where the inputs still allow them (uv reads the existing lock as its preferences); `make lock UPGRADE=1`
moves every package to its newest allowed version.

Usage: `python -m buildtools.locks [--check] [--upgrade]`
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from buildtools import postprocess

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENT = "requirements-lambda.txt"
RUNTIME = "buildtools/lambda-runtime.in"
# Lambda's python3.13 runtime on arm64 runs Amazon Linux 2023 (glibc 2.34): wheels up to manylinux_2_34.
LAMBDA_TARGET = ("--python-version", "3.13", "--python-platform", "aarch64-manylinux_2_34")
DEV_TARGET = ("--universal", "--python-version", "3.11")
DIGEST_PREFIX = "# made from: "
TOOLS = ("sam", "checkov")  # tools with a virtualenv of their own (their pins clash with ours and each other)
INSTALLER = "buildtools/pip.txt"  # installed first into each virtualenv: the pip that reads the other locks


@dataclass(frozen=True)
class Lock:
    """One lock file and what `make lock` makes it from."""

    path: str  # relative to ROOT, as every path here (the locks' text names no machine's folders)
    inputs: tuple[str, ...]
    target: tuple[str, ...]
    constraints: tuple[str, ...] = ()

    @property
    def command(self) -> list[str]:
        """The uv arguments (after `uv pip compile`); run from ROOT."""
        # Extras kept on the pins (`boto3-stubs[iam]==...`): pip's hash-checking mode refuses a dependency
        # asked for with extras when the lock names the package without them.
        args = [
            *self.inputs,
            "--output-file",
            self.path,
            "--generate-hashes",
            "--no-strip-extras",
            *self.target,
        ]
        for constraint in self.constraints:
            args += ["--constraint", constraint]
        return [*args, "--custom-compile-command", "make lock", "--quiet"]

    def sources(self, root: Path = ROOT) -> list[str]:
        """Every file the lock is made from: its inputs, what they include (`-r`, `-c`), its constraints."""
        found: list[str] = []
        pending = [*self.inputs, *self.constraints]
        while pending:
            path = pending.pop(0)
            if path in found:
                continue
            found.append(path)
            if path.endswith(".in"):
                pending += included(root, path)
        return found

    def digests(self, root: Path = ROOT) -> list[str]:
        """The header lines recording each source's SHA-256 and the resolution settings."""
        lines = [f"{DIGEST_PREFIX}uv pip compile {' '.join(self.target)}"]
        for path in self.sources(root):
            digest = hashlib.sha256((root / path).read_bytes()).hexdigest()
            lines.append(f"{DIGEST_PREFIX}{path} sha256:{digest}")
        return lines


def included(root: Path, path: str) -> list[str]:
    """The files an input list includes with `-r`/`-c` (relative to ROOT, as pip reads them from ROOT)."""
    found = []
    for line in (root / path).read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*(?:-r|-c|--requirement|--constraint)\s*=?\s*(\S+)", line)
        if match:
            found.append(match.group(1))
    return found


def artifact_inputs(root: Path = ROOT) -> list[str]:
    """The `requirements.in` of every function and layer folder of template.yaml (the deployment's)."""
    found = []
    for artifact in postprocess.artifacts(root):
        listed = artifact.path / "requirements.in"
        if listed.is_file():
            found.append(listed.relative_to(root).as_posix())
    return sorted(found)


def locks(root: Path = ROOT) -> list[Lock]:
    """Every lock, in the order `make lock` writes them (a lock's constraints before the lock)."""
    inputs = artifact_inputs(root)
    deployment = Lock(DEPLOYMENT, tuple(inputs), LAMBDA_TARGET, (RUNTIME,))
    each = [Lock(path.removesuffix(".in") + ".txt", (path,), LAMBDA_TARGET, (DEPLOYMENT,)) for path in inputs]
    dev = Lock("requirements-dev.txt", ("requirements-dev.in",), DEV_TARGET, (DEPLOYMENT,))
    tools = [Lock(f"requirements-{name}.txt", (f"requirements-{name}.in",), DEV_TARGET) for name in TOOLS]
    installer = Lock(INSTALLER, ("buildtools/pip.in",), DEV_TARGET)
    return [deployment, *each, dev, *tools, installer]


def pins(text: str) -> dict[str, str]:
    """The `name==version` pins of a lock (normalised names; markers and hashes left out)."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line)
        if match:
            found[postprocess.normalise(match.group(1))] = match.group(2)
    return found


def stale(lock: Lock, root: Path = ROOT) -> str | None:
    """Why a lock no longer matches what it is made from, or None."""
    path = root / lock.path
    if not path.is_file():
        return f"{lock.path} is missing: run `make lock`"
    recorded = [
        line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith(DIGEST_PREFIX)
    ]
    expected = lock.digests(root)
    if recorded == expected:
        return None
    changed = [
        line.removeprefix(DIGEST_PREFIX).split(" sha256:")[0] for line in expected if line not in recorded
    ]
    removed = [
        line.removeprefix(DIGEST_PREFIX).split(" sha256:")[0] for line in recorded if line not in expected
    ]
    what = ", ".join(dict.fromkeys(changed + removed)) or "its header"
    return f"{lock.path} is out of date with {what}: run `make lock` and commit the locks"


def disagreements(root: Path = ROOT) -> list[str]:
    """Packages that a function and one of the layers it gets (or two of its layers) lock at two versions."""
    found_artifacts = postprocess.artifacts(root)
    by_id = {a.logical_id: a for a in found_artifacts}
    problems = []
    for function in found_artifacts:
        if function.kind != "function":
            continue
        seen: dict[str, tuple[str, str]] = {}
        for artifact in [function, *(by_id[i] for i in function.layers if i in by_id)]:
            lock = artifact.path / "requirements.txt"
            if not lock.is_file():
                continue
            where = lock.relative_to(root).as_posix()
            for name, version in pins(lock.read_text(encoding="utf-8")).items():
                other = seen.setdefault(name, (version, where))
                if other[0] != version:
                    problems.append(
                        f"{function.logical_id} gets {name} {other[0]} ({other[1]}) and {version} ({where}): "
                        "run `make lock`"
                    )
    return problems


def unconstrained(lock: Lock, root: Path = ROOT) -> list[str]:
    """Pins of a lock that differ from a lock it is resolved within (a hand edit, a half-done `make lock`)."""
    path = root / lock.path
    if not path.is_file():
        return []
    own = pins(path.read_text(encoding="utf-8"))
    problems = []
    for constraint in lock.constraints:
        if not constraint.endswith(".txt") or not (root / constraint).is_file():
            continue
        for name, version in pins((root / constraint).read_text(encoding="utf-8")).items():
            if own.get(name, version) != version:
                problems.append(
                    f"{lock.path} pins {name} {own[name]} but {constraint} {version}: run `make lock`"
                )
    return problems


def check(root: Path = ROOT) -> list[str]:
    problems = [reason for lock in locks(root) if (reason := stale(lock, root))]
    problems += [problem for lock in locks(root) for problem in unconstrained(lock, root)]
    for artifact in postprocess.artifacts(root):
        if (artifact.path / "requirements.txt").is_file() and not (
            artifact.path / "requirements.in"
        ).is_file():
            where = (artifact.path / "requirements.txt").relative_to(root).as_posix()
            problems.append(f"{where} has no requirements.in beside it: list the direct dependencies there")
    return problems + disagreements(root)


def uv() -> str:
    found = shutil.which("uv", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        raise SystemExit("uv not found: run `make setup` (requirements-dev.txt installs it)")
    return found


def write(lock: Lock, upgrade: bool, root: Path = ROOT) -> None:
    """Resolve one lock with uv (the existing lock's versions preferred) and put the digests in its header."""
    args = [uv(), "pip", "compile", *lock.command, *(["--upgrade"] if upgrade else [])]
    env = {**os.environ, "UV_NO_CONFIG": "1"}
    subprocess.run(args, cwd=root, check=True, env=env)
    path = root / lock.path
    lines = [
        line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith(DIGEST_PREFIX)
    ]
    header = 0
    while header < len(lines) and lines[header].startswith("#"):
        header += 1
    lines[header:header] = lock.digests(root)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if a lock is out of date (no network)")
    parser.add_argument("--upgrade", action="store_true", help="newest allowed versions, not the locked ones")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(f"lock: {problem}", file=sys.stderr)
        if not problems:
            print(f"locks: {len(locks())} up to date, artifacts agree")
        return 1 if problems else 0
    for lock in locks():
        print(f"locking {lock.path}")
        write(lock, args.upgrade)
    problems = check()
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

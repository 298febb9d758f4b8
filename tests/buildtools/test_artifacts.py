"""What `make build` leaves in .aws-sam/build is what Lambda should run (arm64, Python 3.13, lean).

Runs when ARTIFACTS_DIR names a finished build (`.ci/run` does `make build`, then this module):
`ARTIFACTS_DIR=.aws-sam/build .venv/bin/python -m pytest tests/buildtools/test_artifacts.py`.
Without it the module is skipped: building takes a minute and needs Python 3.13.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from buildtools import locks, postprocess
from devstack import template as tpl

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("ARTIFACTS_DIR", "")).resolve() if os.environ.get("ARTIFACTS_DIR") else None
pytestmark = pytest.mark.skipif(BUILD is None, reason="set ARTIFACTS_DIR to a `make build` output")

EM_AARCH64 = 183
LAYER_BUDGETS = {  # bytes unzipped
    "CommonLayer": 15_000_000,  # issue 12's goal: every function carries it
    # cryptography, msal, requests and theirs (18 MB): only the functions that handle secrets
    "CredentialsLayer": 20_000_000,
}
# the connect page seals, the workflow unseals and reseals, the checker unseals and reseals rotated tokens
SECRET_HANDLERS = {"AuthCallbackFunction", "VerifyMailboxFunction", "CheckMailboxFunction"}
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024  # a function with all its layers


def _artifacts() -> list[postprocess.Artifact]:
    assert BUILD is not None
    return postprocess.artifacts(BUILD)


def _requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(postprocess.normalise(re.split(r"[\[=<>~!]", line)[0]))
    return names


def _closure(names: set[str]) -> set[str]:
    """The names and everything they depend on (per the installed metadata, extras included)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo.extend(postprocess.normalise(re.split(r"[\s\[=<>~!;(]", r)[0]) for r in requires)
    return seen


def _python313() -> str:
    folder = subprocess.run(
        [str(ROOT / "buildtools" / "find-python.sh"), "3.13"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return f"{folder}/python3.13"


def test_every_function_and_the_layer_were_built() -> None:
    # Given
    template = tpl.load_template()
    functions = tpl.resources(template, "AWS::Serverless::Function")
    layers = tpl.resources(template, "AWS::Serverless::LayerVersion")
    # When
    built = {a.logical_id for a in _artifacts()}
    # Then
    assert built == {*functions, *layers}
    assert set(LAYER_BUDGETS) == set(layers)  # every layer has a size budget


def test_only_the_functions_that_handle_secrets_get_the_credentials_layer() -> None:
    for artifact in _artifacts():
        if artifact.kind == "function":
            assert artifact.layers[0] == "CommonLayer", artifact.logical_id
            has_credentials = "CredentialsLayer" in artifact.layers
            assert has_credentials == (artifact.logical_id in SECRET_HANDLERS), artifact.logical_id


def test_handlers_are_where_lambda_looks_for_them() -> None:
    folders = {a.logical_id: a.path for a in _artifacts()}
    for logical_id, body in tpl.resources(tpl.load_template(), "AWS::Serverless::Function").items():
        module = body["Properties"]["Handler"].rsplit(".", 1)[0]
        assert (folders[logical_id] / f"{module.replace('.', '/')}.py").is_file(), logical_id


def test_native_extensions_are_built_for_arm64() -> None:
    found = 0
    for artifact in _artifacts():
        for library in artifact.path.rglob("*.so*"):
            if not library.is_file():
                continue
            header = library.read_bytes()[:20]
            assert header[:4] == b"\x7fELF", library
            assert int.from_bytes(header[18:20], "little") == EM_AARCH64, library
            assert "x86_64" not in library.name, library
            found += 1
    assert found > 0  # pydantic-core at least


def test_no_runtime_provided_dev_or_test_packages_are_shipped() -> None:
    # Given: what only the tests and tools need
    runtime: set[str] = set()
    for requirements in [*ROOT.glob("layers/*/requirements.txt"), *ROOT.glob("functions/*/requirements.txt")]:
        runtime |= _requirement_names(requirements)
    dev_only = _requirement_names(ROOT / "requirements-dev.txt") - _closure(runtime)
    forbidden = dev_only | postprocess.RUNTIME_PROVIDED
    for artifact in _artifacts():
        # When
        shipped = set(postprocess.distributions(artifact.site))
        # Then
        assert not shipped & forbidden, artifact.logical_id
        assert not [p for p in artifact.path.rglob("*") if p.name in {"tests", "test", "conftest.py"}]
        assert not list(artifact.path.rglob("requirements*.txt"))


def test_each_artifact_ships_exactly_its_lock() -> None:
    """What `sam build` installed is what the locks say, package for package and version for version: two
    builds of one commit ship the same distributions whatever the index has published since."""
    built = _artifacts()
    resources = yaml.load((ROOT / "template.yaml").read_text(), Loader=postprocess._Loader)["Resources"]  # noqa: S506
    compared = 0
    for artifact in built:
        # Given: the artifact's lock, less what the runtime provides and what a layer below it ships
        props = resources[artifact.logical_id]["Properties"]
        lock = ROOT / (props.get("CodeUri") or props["ContentUri"]) / "requirements.txt"
        expected = locks.pins(lock.read_text(encoding="utf-8")) if lock.is_file() else {}
        for layer in postprocess.layers_below(artifact, built):
            for name, dist in postprocess.distributions(layer.site).items():
                if expected.get(name) == dist.version:
                    del expected[name]
        for name in postprocess.RUNTIME_PROVIDED:
            expected.pop(name, None)
        # When
        shipped = {name: dist.version for name, dist in postprocess.distributions(artifact.site).items()}
        # Then
        assert shipped == expected, artifact.logical_id
        compared += len(shipped)
    assert compared > 30  # the layers' and verify_mailbox's packages


def test_no_distribution_is_shipped_twice_to_one_function() -> None:
    artifacts = _artifacts()
    by_id = {a.logical_id: a for a in artifacts}
    for function in artifacts:
        if function.kind != "function":
            continue
        # Given: what Lambda extracts for this function (its folder, then each of its layers)
        seen: dict[str, str] = {}
        for artifact in [function, *(by_id[i] for i in function.layers)]:
            for name in postprocess.distributions(artifact.site):
                # Then
                assert name not in seen, (
                    f"{function.logical_id}: {name} in {seen.get(name)} and {artifact.logical_id}"
                )
                seen[name] = artifact.logical_id


def test_the_tracer_ships_only_with_verify_mailbox() -> None:
    for artifact in _artifacts():
        has_xray = "aws-xray-sdk" in postprocess.distributions(artifact.site)
        assert has_xray == (artifact.logical_id == "VerifyMailboxFunction"), artifact.logical_id


def test_every_module_has_valid_python_313_bytecode() -> None:
    """Python 3.13 itself checks every .pyc: its magic, unchecked-hash flags, the hash of the source
    beside it, that it unmarshals, and the Lambda path it names."""
    checker = r"""
import importlib.util, json, marshal, sys
from pathlib import Path
problems, counts = [], {"with_source": 0, "sourceless": 0}
for root, prefix in json.loads(sys.argv[1]):
    root = Path(root)
    for source in root.rglob("*.py"):
        cached = Path(importlib.util.cache_from_source(str(source)))
        if not cached.is_file():
            problems.append(f"no bytecode: {source}")
            continue
        data = cached.read_bytes()
        if data[8:16] != importlib.util.source_hash(source.read_bytes()):
            problems.append(f"stale bytecode: {source}")
        counts["with_source"] += 1
    for compiled in root.rglob("*.pyc"):
        data = compiled.read_bytes()
        if data[:4] != importlib.util.MAGIC_NUMBER:
            problems.append(f"not 3.13 bytecode: {compiled}")
        elif int.from_bytes(data[4:8], "little") != 1:
            problems.append(f"not unchecked-hash: {compiled}")
        elif not marshal.loads(data[16:]).co_filename.startswith(prefix):
            problems.append(f"names another path: {compiled}")
        if compiled.parent.name != "__pycache__":
            counts["sourceless"] += 1
            if compiled.with_suffix(".py").exists():
                problems.append(f"sourceless beside its source: {compiled}")
print(json.dumps({"problems": problems[:20], **counts}))
"""
    roots = [[str(a.path), postprocess.LAMBDA_PATHS[a.kind] + "/"] for a in _artifacts()]
    out = subprocess.run(
        [_python313(), "-c", checker, json.dumps(roots)], capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(out)
    assert result["problems"] == []
    assert result["with_source"] > 10  # our code: onboarding and the handlers
    assert result["sourceless"] > 1000  # the libraries


def test_sizes_stay_within_budget() -> None:
    artifacts = _artifacts()
    sizes = {a.logical_id: postprocess.size(a.path) for a in artifacts}
    print()
    for artifact in artifacts:
        if artifact.kind == "layer":
            print(f"{artifact.logical_id}: {sizes[artifact.logical_id] / 1e6:.1f} MB unzipped")
            assert sizes[artifact.logical_id] < LAYER_BUDGETS[artifact.logical_id], artifact.logical_id
    for artifact in artifacts:
        if artifact.kind == "function":
            total = sizes[artifact.logical_id] + sum(sizes[i] for i in artifact.layers)
            print(
                f"{artifact.logical_id}: {sizes[artifact.logical_id] / 1e6:.1f} MB, {total / 1e6:.1f} MB with its layers"
            )
            assert total < LAMBDA_UNZIPPED_LIMIT

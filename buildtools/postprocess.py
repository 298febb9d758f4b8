"""Post-process `sam build`'s artifacts (`.aws-sam/build`) into what Lambda should run.

`sam build` copies the code and pip-installs each requirements file, and nothing more. What it leaves
would cost every cold start, so this script, run by `make build` right after it:

1. removes boto3, botocore and s3transfer from every artifact: the Lambda runtime provides them, and a
   copy in a layer or function loads *ahead* of the runtime's (the X-Ray SDK pulls in a 27 MB botocore);
2. removes from each function the distributions its layers already ship at the same version (a function's
   own copy would shadow the layer's), and from a layer what a layer listed before it beside it ships (the
   credentials layer and the common one both pull in idna); the same distribution at two versions fails
   the build;
3. removes caches and type stubs (`__pycache__` of the build machine, `*.pyi`, `py.typed`), and the
   `requirements.txt` SAM copies in;
4. compiles every module with the runtime's Python (3.13) into `__pycache__`, with `unchecked-hash`
   invalidation: Lambda's code directories are read-only, so without bytecode every cold start compiles
   every module it imports; timestamp-checked bytecode would not survive the zip's file times, hash-based
   bytecode marked unchecked is used as is. Each module is compiled with the path it has on Lambda
   (`/var/task/...`, `/opt/...`), so tracebacks name the deployed file;
5. ships the third-party packages (every installed distribution) as bytecode only: `module.pyc` in place
   of `module.py`, which halves their size (the layer would be 21 MB instead of 13 MB). Tracebacks through
   them still name file and line, without the source text. Our own code (`onboarding`, the handlers) keeps
   its sources beside the bytecode.

Usage: `python -m buildtools.postprocess .aws-sam/build --python python3.13`
"""

from __future__ import annotations

import argparse
import email.parser
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer"})
"""Distributions the Lambda Python runtime ships (its boto3 and what boto3 needs of its own)."""

LAMBDA_PATHS = {"function": "/var/task", "layer": "/opt"}
JUNK_FILES = ("requirements.txt",)


class BuildError(Exception):
    """The artifacts cannot be made right (a version conflict, a module that does not compile)."""


@dataclass(frozen=True)
class Artifact:
    logical_id: str
    kind: str  # "function" or "layer"
    path: Path
    layers: tuple[str, ...] = ()  # a function's layers (logical ids, Globals' first, in Lambda's order)

    @property
    def site(self) -> Path:
        """The folder that lands on sys.path: a layer's `python/`, a function's root."""
        return self.path / "python" if self.kind == "layer" else self.path


@dataclass(frozen=True)
class Distribution:
    name: str  # normalised (PEP 503)
    version: str
    dist_info: Path
    files: tuple[Path, ...]  # relative to the site folder, from RECORD


class _Loader(yaml.SafeLoader):
    """SafeLoader that accepts CloudFormation's short tags (the built template keeps some): `!Ref X` reads
    as `{"Ref": "X"}`, like the long form `sam build` writes; other tags' values are not needed here."""


def _short_tag(loader: _Loader, suffix: str, node: yaml.Node) -> dict[str, Any] | None:
    if suffix == "Ref" and isinstance(node, yaml.ScalarNode):
        return {"Ref": loader.construct_scalar(node)}
    return None


_Loader.add_multi_constructor("!", _short_tag)


def _layer_ids(value: Any) -> list[str]:
    """The logical ids a `Layers` list references (`Ref` to a layer of this template)."""
    return [
        item["Ref"] for item in value or [] if isinstance(item, dict) and isinstance(item.get("Ref"), str)
    ]


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def artifacts(build_dir: Path) -> list[Artifact]:
    """Every function and layer folder of the built template (deduplicated: functions may share one)."""
    text = (build_dir / "template.yaml").read_text(encoding="utf-8")
    template: dict[str, Any] = yaml.load(text, Loader=_Loader)  # noqa: S506  (SafeLoader subclass)
    global_layers = _layer_ids(((template.get("Globals") or {}).get("Function") or {}).get("Layers"))
    found: dict[Path, Artifact] = {}
    for logical_id, body in template.get("Resources", {}).items():
        props = body.get("Properties") or {}
        layers: tuple[str, ...] = ()
        if body.get("Type") == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            kind, uri = "function", props["CodeUri"]
            layers = (*global_layers, *_layer_ids(props.get("Layers")))  # SAM appends a function's own
        elif body.get("Type") == "AWS::Serverless::LayerVersion" and isinstance(props.get("ContentUri"), str):
            kind, uri = "layer", props["ContentUri"]
        else:
            continue
        path = (build_dir / uri).resolve()
        if path.is_dir() and path not in found:
            found[path] = Artifact(logical_id, kind, path, layers)
    return sorted(found.values(), key=lambda a: (a.kind != "layer", a.logical_id))


def distributions(site: Path) -> dict[str, Distribution]:
    found = {}
    for dist_info in sorted(site.glob("*.dist-info")):
        metadata = email.parser.Parser().parsestr((dist_info / "METADATA").read_text(encoding="utf-8"))
        record = dist_info / "RECORD"
        files = []
        if record.is_file():
            for line in record.read_text(encoding="utf-8").splitlines():
                relative = line.rsplit(",", 2)[0]
                if relative:
                    files.append(Path(relative))
        name = normalise(metadata["Name"])
        found[name] = Distribution(name, metadata["Version"], dist_info, tuple(files))
    return found


def remove_distribution(site: Path, dist: Distribution) -> int:
    """Delete a distribution's files (per its RECORD) and the folders it leaves empty; bytes freed."""
    freed = 0
    folders: set[Path] = set()
    for relative in dist.files:
        path = (site / relative).resolve()
        if not path.is_relative_to(site.resolve()):
            continue  # scripts installed to ../bin and the like: nothing of ours
        if path.is_file():
            freed += path.stat().st_size
            path.unlink()
        folders.update(p for p in path.parents if p.is_relative_to(site.resolve()) and p != site.resolve())
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        pycache = folder / "__pycache__"
        if pycache.is_dir():
            shutil.rmtree(pycache)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    if dist.dist_info.exists():
        shutil.rmtree(dist.dist_info)
    return freed


def strip_runtime_provided(artifact: Artifact) -> list[str]:
    removed = []
    for name, dist in distributions(artifact.site).items():
        if name in RUNTIME_PROVIDED:
            remove_distribution(artifact.site, dist)
            removed.append(f"{name} {dist.version}")
    return removed


def layers_below(artifact: Artifact, found: list[Artifact]) -> list[Artifact]:
    """What an artifact is deployed on top of: a function's layers; for a layer, the layers listed before
    it in some function's `Layers` (Lambda extracts them into the same /opt, in that order)."""
    by_id = {a.logical_id: a for a in found if a.kind == "layer"}
    if artifact.kind == "function":
        ids = list(artifact.layers)
    else:
        ids = []
        for function in found:
            if artifact.logical_id in function.layers:
                ids += function.layers[: function.layers.index(artifact.logical_id)]
    return [by_id[i] for i in dict.fromkeys(ids) if i in by_id and i != artifact.logical_id]


def strip_layer_duplicates(artifact: Artifact, layers: list[Artifact]) -> list[str]:
    """Remove from an artifact what a layer below it ships at the same version; refuse two versions of one."""
    in_layers: dict[str, tuple[str, Distribution]] = {}
    for layer in layers:
        for name, dist in distributions(layer.site).items():
            in_layers[name] = (layer.logical_id, dist)
    removed = []
    for name, dist in distributions(artifact.site).items():
        if name not in in_layers:
            continue
        layer_id, other = in_layers[name]
        if other.version != dist.version:
            raise BuildError(
                f"{artifact.logical_id} ships {name} {dist.version} but {layer_id} ships {other.version}: "
                "pin one version (in the layer's requirements) so both resolve alike"
            )
        remove_distribution(artifact.site, dist)
        removed.append(f"{name} {dist.version}")
    return removed


def strip_junk(artifact: Artifact) -> None:
    for pycache in list(artifact.path.rglob("__pycache__")):
        shutil.rmtree(pycache)
    for package in artifact.site.iterdir():  # test suites some wheels ship inside their package
        for name in ("tests", "test"):
            if (package / name).is_dir():
                shutil.rmtree(package / name)
    for pattern in ("*.pyi", "py.typed"):
        for path in artifact.path.rglob(pattern):
            path.unlink()
    for name in JUNK_FILES:
        for path in (artifact.path / name, artifact.site / name):
            if path.is_file():
                path.unlink()
    # Software bills of materials some wheels ship in their dist-info (PEP 770; pydantic-core's is 123 KB):
    # build provenance, read by no import; the locks (hashes of every file) say what was installed.
    for sboms in list(artifact.site.glob("*.dist-info/sboms")):
        shutil.rmtree(sboms)


def compile_bytecode(artifact: Artifact, python: str) -> None:
    """Compile with the runtime's Python: unchecked-hash bytecode, named by its path on Lambda."""
    target = LAMBDA_PATHS[artifact.kind]
    result = subprocess.run(
        [
            python,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            "-s",
            str(artifact.path),
            "-p",
            target,
            str(artifact.path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise BuildError(f"{artifact.logical_id}: compileall failed\n{result.stdout}{result.stderr}")


def drop_third_party_sources(artifact: Artifact, version: str) -> int:
    """Replace each installed distribution's `x.py` by its compiled `x.pyc` (sourceless import)."""
    tag = "cpython-" + version.replace(".", "")
    moved = 0
    for dist in distributions(artifact.site).values():
        for relative in dist.files:
            source = artifact.site / relative
            if source.suffix != ".py" or not source.is_file():
                continue
            compiled = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
            if not compiled.is_file():
                raise BuildError(f"{artifact.logical_id}: {relative} has no bytecode")
            compiled.replace(source.with_suffix(".pyc"))
            source.unlink()
            moved += 1
    for pycache in list(artifact.site.rglob("__pycache__")):
        if not any(pycache.iterdir()):
            pycache.rmdir()
    return moved


def python_version(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def postprocess(build_dir: Path, python: str, expected_version: str = "3.13") -> list[str]:
    version = python_version(python)
    if version != expected_version:
        raise BuildError(f"{python} is Python {version}; the functions run on {expected_version}")
    found = artifacts(build_dir)
    if not found:
        raise BuildError(f"no functions or layers in {build_dir / 'template.yaml'}: run `sam build` first")
    report = []
    for artifact in found:  # layers first: what a function keeps depends on what they ship
        before = size(artifact.path)
        runtime = strip_runtime_provided(artifact)
        duplicates = strip_layer_duplicates(artifact, layers_below(artifact, found))
        strip_junk(artifact)
        compile_bytecode(artifact, python)
        drop_third_party_sources(artifact, version)
        line = f"{artifact.logical_id:24} {before / 1e6:6.1f} MB -> {size(artifact.path) / 1e6:6.1f} MB"
        if runtime:
            line += f"; runtime provides: {', '.join(runtime)}"
        if duplicates:
            line += f"; in a layer below: {', '.join(duplicates)}"
        report.append(line)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("build_dir", type=Path, nargs="?", default=Path(".aws-sam/build"))
    parser.add_argument("--python", default="python3.13", help="the runtime's Python (compiles bytecode)")
    args = parser.parse_args(argv)
    try:
        for line in postprocess(args.build_dir, args.python):
            print(line)
    except BuildError as error:
        print(f"build: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

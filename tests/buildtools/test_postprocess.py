"""buildtools.postprocess on small hand-made `sam build` outputs (the real build is tests/buildtools/
test_artifacts.py, run by .ci/run after `make build`)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from buildtools import postprocess

TAG = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
HERE = f"{sys.version_info.major}.{sys.version_info.minor}"


def _template(build: Path, functions: dict[str, str]) -> None:
    lines = ["Resources:", "  CommonLayer:", "    Type: AWS::Serverless::LayerVersion", "    Properties:"]
    lines += ["      ContentUri: CommonLayer"]
    for logical_id, folder in functions.items():
        lines += [f"  {logical_id}:", "    Type: AWS::Serverless::Function", "    Properties:"]
        lines += [
            f"      CodeUri: {folder}",
            "      Handler: app.lambda_handler",
            "      Layers: [!Ref CommonLayer]",
        ]
    (build / "template.yaml").write_text("\n".join(lines) + "\n")


def _install(site: Path, name: str, version: str, files: dict[str, str]) -> None:
    """A distribution as pip leaves it: its files and a dist-info whose RECORD lists them."""
    dist_info = site / f"{name}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    record = []
    for relative, text in files.items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).write_text(text)
        record.append(f"{relative},sha256=x,{len(text)}")
    record += [f"{dist_info.name}/METADATA,,", f"{dist_info.name}/RECORD,,"]
    (dist_info / "RECORD").write_text("\n".join(record) + "\n")


@pytest.fixture
def build(tmp_path: Path) -> Path:
    """A layer with our package and two libraries, and two functions (one with its own requirements)."""
    layer = tmp_path / "CommonLayer" / "python"
    (layer / "onboarding").mkdir(parents=True)
    (layer / "onboarding" / "__init__.py").write_text('"""ours"""\nVALUE = 1\n')
    (layer / "requirements.txt").write_text("lib==1.0\n")
    _install(layer, "lib", "1.0", {"lib/__init__.py": "NAME = 'lib'\n", "lib/tests/__init__.py": ""})
    _install(layer, "botocore", "9.9", {"botocore/__init__.py": "", "botocore/data/x.json": "{}"})
    api = tmp_path / "ApiFunction"
    api.mkdir()
    (api / "app.py").write_text("def lambda_handler(event, context):\n    return 1\n")
    worker = tmp_path / "WorkerFunction"
    worker.mkdir()
    (worker / "app.py").write_text("import lib, extra\n")
    (worker / "requirements.txt").write_text("extra==2.0\n")
    _install(worker, "extra", "2.0", {"extra.py": "X = 2\n", "extra.pyi": "X: int\n"})
    _install(worker, "lib", "1.0", {"lib/__init__.py": "NAME = 'lib'\n"})
    _install(worker, "boto3", "9.9", {"boto3/__init__.py": ""})
    (worker / "__pycache__").mkdir()
    (worker / "__pycache__" / "app.cpython-39.pyc").write_bytes(b"stale")
    _template(tmp_path, {"ApiFunction": "ApiFunction", "WorkerFunction": "WorkerFunction"})
    return tmp_path


def _run(build: Path) -> list[str]:
    return postprocess.postprocess(build, sys.executable, expected_version=HERE)


def test_runtime_provided_packages_are_removed_from_every_artifact(build: Path) -> None:
    # When
    report = _run(build)
    # Then
    assert not (build / "CommonLayer/python/botocore").exists()
    assert not list((build / "CommonLayer/python").glob("botocore-*"))
    assert not (build / "WorkerFunction/boto3").exists()
    assert any("runtime provides: botocore 9.9" in line for line in report)


def test_a_function_does_not_ship_what_the_layer_ships_at_the_same_version(build: Path) -> None:
    # When
    _run(build)
    # Then: the worker keeps its own dependency and gets `lib` from the layer
    assert not (build / "WorkerFunction/lib").exists()
    assert not list((build / "WorkerFunction").glob("lib-*.dist-info"))
    assert (build / "WorkerFunction/extra.pyc").is_file()
    assert (build / "CommonLayer/python/lib/__init__.pyc").is_file()


def test_two_versions_of_one_distribution_fail_the_build(build: Path) -> None:
    # Given
    _install(build / "ApiFunction", "lib", "2.0", {"lib/__init__.py": ""})
    # When / Then
    with pytest.raises(postprocess.BuildError, match=r"ships lib 2\.0 but CommonLayer ships 1\.0"):
        _run(build)


def test_our_code_keeps_its_source_beside_unchecked_hash_bytecode(build: Path) -> None:
    # When
    _run(build)
    # Then
    source = build / "CommonLayer/python/onboarding/__init__.py"
    compiled = source.parent / "__pycache__" / f"__init__.{TAG}.pyc"
    assert source.is_file()
    data = compiled.read_bytes()
    assert data[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(data[4:8], "little") == 0b01  # hash-based, source not checked
    assert data[8:16] == importlib.util.source_hash(source.read_bytes())
    assert (build / f"ApiFunction/__pycache__/app.{TAG}.pyc").is_file()
    assert not (build / "WorkerFunction/__pycache__/app.cpython-39.pyc").exists()


def test_libraries_ship_as_bytecode_only_and_import_from_a_read_only_copy(build: Path) -> None:
    # When
    _run(build)
    # Then
    layer = build / "CommonLayer/python"
    assert not (layer / "lib/__init__.py").exists()
    assert not (layer / "lib/tests").exists()
    assert not (build / "WorkerFunction/extra.pyi").exists()
    assert not (build / "WorkerFunction/requirements.txt").exists()
    assert not (layer / "requirements.txt").exists()
    code = (
        f"import sys; sys.path[:0] = [{str(build / 'WorkerFunction')!r}, {str(layer)!r}]; "
        "import app, lib, onboarding; print(lib.NAME, lib.__file__, app.__cached__)"
    )
    out = subprocess.run(
        [sys.executable, "-B", "-I", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split()[0] == "lib"
    assert out.split()[1].endswith("lib/__init__.pyc")


def test_bytecode_names_the_files_as_deployed_on_lambda(build: Path) -> None:
    # When
    _run(build)
    # Then
    import marshal

    data = (build / "CommonLayer/python/lib/__init__.pyc").read_bytes()
    assert marshal.loads(data[16:]).co_filename == "/opt/python/lib/__init__.py"
    data = (build / f"ApiFunction/__pycache__/app.{TAG}.pyc").read_bytes()
    assert marshal.loads(data[16:]).co_filename == "/var/task/app.py"


def test_another_python_than_the_runtimes_is_refused(build: Path) -> None:
    with pytest.raises(postprocess.BuildError, match=r"the functions run on 3\.99"):
        postprocess.postprocess(build, sys.executable, expected_version="3.99")


def test_an_empty_build_is_refused(tmp_path: Path) -> None:
    (tmp_path / "template.yaml").write_text("Resources: {}\n")
    with pytest.raises(postprocess.BuildError, match="run `sam build` first"):
        postprocess.postprocess(tmp_path, sys.executable, expected_version=HERE)


def _two_layer_build(tmp_path: Path) -> Path:
    """CommonLayer for every function (Globals), SecretsLayer for the worker only, as template.yaml does."""
    common = tmp_path / "CommonLayer" / "python"
    _install(common, "idna", "3.0", {"idna/__init__.py": ""})
    secrets = tmp_path / "SecretsLayer" / "python"
    _install(secrets, "crypto", "1.0", {"crypto/__init__.py": ""})
    _install(secrets, "idna", "3.0", {"idna/__init__.py": ""})
    for name in ("ApiFunction", "WorkerFunction"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text("")
        _install(tmp_path / name, "crypto", "1.0", {"crypto/__init__.py": ""})
    (tmp_path / "template.yaml").write_text(
        "Globals:\n  Function:\n    Layers:\n      - Ref: CommonLayer\nResources:\n"
        "  CommonLayer:\n    Type: AWS::Serverless::LayerVersion\n    Properties:\n      ContentUri: CommonLayer\n"
        "  SecretsLayer:\n    Type: AWS::Serverless::LayerVersion\n    Properties:\n      ContentUri: SecretsLayer\n"
        "  ApiFunction:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: ApiFunction\n"
        "  WorkerFunction:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: WorkerFunction\n"
        "      Layers: [!Ref SecretsLayer]\n"
    )
    return tmp_path


def test_a_function_keeps_what_only_a_layer_it_does_not_use_ships(tmp_path: Path) -> None:
    # Given
    build = _two_layer_build(tmp_path)
    # When
    _run(build)
    # Then: the worker gets crypto from its SecretsLayer; the API function has no such layer and keeps its own
    found = {a.logical_id: a for a in postprocess.artifacts(build)}
    assert found["WorkerFunction"].layers == ("CommonLayer", "SecretsLayer")
    assert found["ApiFunction"].layers == ("CommonLayer",)
    assert not (build / "WorkerFunction/crypto").exists()
    assert (build / "ApiFunction/crypto/__init__.pyc").is_file()


def test_a_layer_does_not_ship_what_a_layer_below_it_ships(tmp_path: Path) -> None:
    # Given: both layers pull in idna
    build = _two_layer_build(tmp_path)
    # When
    report = _run(build)
    # Then: the common layer, listed first wherever both are used, keeps it
    assert (build / "CommonLayer/python/idna/__init__.pyc").is_file()
    assert not (build / "SecretsLayer/python/idna").exists()
    assert (build / "SecretsLayer/python/crypto/__init__.pyc").is_file()
    assert any(line.startswith("SecretsLayer") and "in a layer below: idna 3.0" in line for line in report)


def test_junk_goes_and_what_imports_need_stays(tmp_path: Path) -> None:
    # Given a layer with a wheel's SBOM, stubs and a test suite next to its code and metadata
    site = tmp_path / "CommonLayer" / "python"
    (site / "pkg" / "tests").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_text("")
    (site / "pkg" / "__init__.pyi").write_text("")
    (site / "pkg" / "tests" / "test_pkg.py").write_text("")
    dist_info = site / "pkg-1.0.dist-info"
    (dist_info / "sboms").mkdir(parents=True)
    (dist_info / "sboms" / "pkg.cyclonedx.json").write_text("{}")
    (dist_info / "METADATA").write_text("Name: pkg\nVersion: 1.0\n")
    (dist_info / "licenses").mkdir()
    (dist_info / "licenses" / "LICENSE").write_text("MIT")
    # When the junk is stripped
    postprocess.strip_junk(postprocess.Artifact("CommonLayer", "layer", tmp_path / "CommonLayer"))
    # Then the code, its metadata and its licence stay; the SBOM, the stubs and the tests go
    left = sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file())
    assert left == ["pkg-1.0.dist-info/METADATA", "pkg-1.0.dist-info/licenses/LICENSE", "pkg/__init__.py"]

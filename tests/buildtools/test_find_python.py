"""buildtools/find-python.sh: where `make build` gets the runtime's Python (PATH, pyenv, Debian's package).

Each test runs the script with a PATH of its own (a folder holding only the shell tools the script uses),
an empty HOME and no pyenv, so the machine's own interpreters are not found unless a test puts one there.
Debian's package manager is played by two small scripts: installing a Python for real needs root and a
Debian release that has the version, and a test must not change the machine. The "installed" Python is a
link to a real interpreter with pip, so the script's own checks (`-c pass`, `-m pip --version`) run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "buildtools" / "find-python.sh"
VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"  # the interpreter running the tests has pip
EXE = f"python{VERSION}"
TOOLS = ("dirname", "grep", "cat")


def _python_with_pip() -> str:
    """This interpreter's real executable (a venv's python would not find its pip once linked elsewhere)."""
    real = Path(sys.base_prefix) / "bin" / EXE
    if not real.is_file():
        pytest.skip(f"no {real}")
    if subprocess.run([real, "-m", "pip", "--version"], capture_output=True, check=False).returncode:
        pytest.skip(f"{real} has no pip")
    return str(real)


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!{shutil.which('bash')}\n{body}\n")
    path.chmod(0o755)


def _machine(tmp_path: Path, *, root: bool, candidate: str | None) -> tuple[dict[str, str], Path, Path]:
    """A PATH with only the script's tools, `id`, and apt-get/apt-cache that log their calls.

    apt-cache reports `candidate` (None: the release has no such package); apt-get "installs" the
    Python as a link on that PATH."""
    bin_dir, log = tmp_path / "bin", tmp_path / "apt.log"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    _stub(bin_dir, "id", f"echo {0 if root else 1000}")
    policy = f"  Candidate: {candidate}" if candidate else "  Candidate: (none)"
    _stub(bin_dir, "apt-cache", f'echo "apt-cache $*" >> {log}; echo "{EXE}:"; echo "{policy}"')
    _stub(
        bin_dir,
        "apt-get",
        f'echo "apt-get $*" >> {log}\n'
        f'if [ "$1" = install ]; then {shutil.which("ln")} -s {_python_with_pip()} {bin_dir}/{EXE}; fi',
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": str(bin_dir), "HOME": str(home), "PYENV_ROOT": ""}
    return env, bin_dir, log


def _find(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("bash") or "bash", str(SCRIPT), VERSION],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_python_on_path_is_used_and_nothing_is_installed(tmp_path: Path) -> None:
    # Given
    env, bin_dir, log = _machine(tmp_path, root=True, candidate="3.x-1")
    (bin_dir / EXE).symlink_to(_python_with_pip())
    # When
    result = _find(env)
    # Then
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(bin_dir)
    assert not log.exists()


def test_a_pyenv_version_is_found_without_it_being_on_path(tmp_path: Path) -> None:
    # Given: pyenv's layout under PYENV_ROOT, not on PATH
    env, _, log = _machine(tmp_path, root=True, candidate="3.x-1")
    versions = tmp_path / "pyenv" / "versions" / f"{VERSION}.9" / "bin"
    versions.mkdir(parents=True)
    (versions / EXE).symlink_to(_python_with_pip())
    env["PYENV_ROOT"] = str(tmp_path / "pyenv")
    # When
    result = _find(env)
    # Then
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(versions)
    assert not log.exists()


def test_as_root_on_debian_the_package_is_installed(tmp_path: Path) -> None:
    # Given: no such Python anywhere, root, and a Debian release that packages it
    env, bin_dir, log = _machine(tmp_path, root=True, candidate="3.x-1")
    # When
    result = _find(env)
    # Then
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(bin_dir)
    calls = log.read_text().splitlines()
    assert calls[0] == "apt-get update -qq"
    assert calls[-1] == f"apt-get install -y -qq {EXE} {EXE}-venv python3-pip"


def test_a_debian_release_without_the_package_fails_saying_what_to_install(tmp_path: Path) -> None:
    # Given
    env, _, log = _machine(tmp_path, root=True, candidate=None)
    # When
    result = _find(env)
    # Then
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"No Python {VERSION} with pip found" in result.stderr
    assert f"pyenv install {VERSION}" in result.stderr
    assert not [c for c in log.read_text().splitlines() if c.startswith("apt-get install")]


def test_without_root_nothing_is_installed(tmp_path: Path) -> None:
    # Given
    env, _, log = _machine(tmp_path, root=False, candidate="3.x-1")
    # When
    result = _find(env)
    # Then
    assert result.returncode == 1
    assert f"apt-get install {EXE} {EXE}-venv python3-pip" in result.stderr
    assert not log.exists()


@pytest.mark.skipif(os.name != "posix", reason="a POSIX shell script")
def test_the_script_is_executable() -> None:
    assert os.access(SCRIPT, os.X_OK)

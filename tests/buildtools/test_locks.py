"""buildtools.locks: the repository's locks match their input lists, and `--check` names what is stale.

The checks need no network (CI runs `make lock-check` offline from the index's point of view); resolving
(`make lock`) is not run here: it asks the package index, whose answers change with every release.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from buildtools import locks, postprocess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of what the locks are made from and of the locks themselves, to change freely."""
    shutil.copy(ROOT / "template.yaml", tmp_path / "template.yaml")
    for artifact in postprocess.artifacts(ROOT):
        folder = tmp_path / artifact.path.relative_to(ROOT)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("requirements.in", "requirements.txt"):
            if (artifact.path / name).is_file():
                shutil.copy(artifact.path / name, folder / name)
    for lock in locks.locks(ROOT):
        for path in [lock.path, *lock.sources(ROOT)]:
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / path, tmp_path / path)
    return tmp_path


def test_the_repository_locks_are_up_to_date_and_agree() -> None:
    assert locks.check(ROOT) == []


def test_every_artifact_with_dependencies_has_a_lock_resolved_within_the_deployment() -> None:
    # Given the template's artifacts
    listed = locks.artifact_inputs(ROOT)
    # Then each input list has its lock, resolved for Lambda within the one deployment-wide resolution
    assert set(listed) == {
        "layers/common/requirements.in",
        "layers/credentials/requirements.in",
        "functions/verify_mailbox/requirements.in",
        "functions/check_mailbox/requirements.in",
    }
    by_path = {lock.path: lock for lock in locks.locks(ROOT)}
    for path in listed:
        lock = by_path[path.removesuffix(".in") + ".txt"]
        assert lock.constraints == (locks.DEPLOYMENT,)
        assert lock.target == locks.LAMBDA_TARGET
    assert set(listed) <= set(by_path[locks.DEPLOYMENT].inputs)
    assert by_path["requirements-dev.txt"].constraints == (locks.DEPLOYMENT,)


def test_every_lock_pins_each_package_with_hashes() -> None:
    for lock in locks.locks(ROOT):
        text = (ROOT / lock.path).read_text(encoding="utf-8")
        pinned = locks.pins(text)
        entries = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
        # every requirement line is an exact pin (a universal lock may pin one package per Python version)
        assert len({entry.split("==")[0] for entry in entries}) == len(pinned) > 0, lock.path
        assert all("==" in entry for entry in entries), lock.path
        assert text.count("--hash=sha256:") >= len(entries), lock.path


def test_direct_dependencies_are_pinned_as_listed(repo: Path) -> None:
    """Each input list's exact pins (and those of the lists it includes) are the versions its lock holds."""
    for lock in locks.locks(repo):
        pinned = locks.pins((repo / lock.path).read_text(encoding="utf-8"))
        listed = list(lock.inputs)
        for source in listed:
            listed += [path for path in locks.included(repo, source) if path not in listed]
            for name, version in locks.pins((repo / source).read_text(encoding="utf-8")).items():
                assert pinned[name] == version, (lock.path, source, name)


def test_an_input_changed_without_make_lock_names_the_lock_and_the_input(repo: Path) -> None:
    # Given: a version bumped in the common layer's list, and nothing locked again
    listed = repo / "layers/common/requirements.in"
    listed.write_text(listed.read_text().replace("jinja2==3.1.6", "jinja2==3.1.7"))
    # When
    problems = locks.check(repo)
    # Then: its lock, the deployment's and the dev lock (which include it) are all named as stale
    stale = [p for p in problems if "is out of date with" in p]
    assert any(
        p.startswith("layers/common/requirements.txt is out of date with layers/common/requirements.in")
        for p in stale
    )
    assert any(
        p.startswith("requirements-lambda.txt is out of date with layers/common/requirements.in")
        for p in stale
    )
    assert any(p.startswith("requirements-dev.txt is out of date with") for p in stale)
    assert all("run `make lock`" in p for p in stale)
    # and nothing else: the SAM CLI's lock and the credentials layer's were not made from that list (the
    # latter becomes stale when `make lock` rewrites the deployment's lock it is constrained by)
    assert not any(p.startswith(("requirements-sam.txt", "layers/credentials/")) for p in problems)


def test_a_removed_input_line_is_stale_too(repo: Path) -> None:
    listed = repo / "functions/verify_mailbox/requirements.in"
    listed.write_text(listed.read_text().replace("aws-xray-sdk==2.15.0\n", ""))
    problems = locks.check(repo)
    assert any(p.startswith("functions/verify_mailbox/requirements.txt is out of date") for p in problems)


def test_a_function_and_its_layer_at_two_versions_is_refused(repo: Path) -> None:
    # Given: the function's lock edited by hand to another version of what the credentials layer ships
    lock = repo / "functions/verify_mailbox/requirements.txt"
    lock.write_text(lock.read_text().replace("\ncryptography==50.0.2 ", "\ncryptography==51.0.1 "))
    # When
    problems = locks.check(repo)
    # Then: the disagreement names the function, both versions and both locks
    assert any(
        p.startswith("VerifyMailboxFunction gets cryptography")
        and "51.0.1 (functions/verify_mailbox/requirements.txt)" in p
        and "50.0.2 (layers/credentials/requirements.txt)" in p
        for p in problems
    ), problems
    assert any(
        p == "functions/verify_mailbox/requirements.txt pins cryptography 51.0.1 but "
        "requirements-lambda.txt 50.0.2: run `make lock`"
        for p in problems
    ), problems


def test_a_lock_without_an_input_list_is_refused(repo: Path) -> None:
    (repo / "functions/add_agent/requirements.txt").write_text("six==1.17.0\n")
    assert "functions/add_agent/requirements.txt has no requirements.in beside it" in "\n".join(
        locks.check(repo)
    )


def test_a_new_artifact_list_joins_the_deployment_resolution(repo: Path) -> None:
    # Given: a function that gains its own dependencies
    (repo / "functions/add_agent/requirements.in").write_text("six==1.17.0\n")
    # Then: it has a lock of its own to make, and the deployment's resolution includes it
    by_path = {lock.path: lock for lock in locks.locks(repo)}
    assert "functions/add_agent/requirements.txt" in by_path
    assert "functions/add_agent/requirements.in" in by_path[locks.DEPLOYMENT].inputs
    problems = locks.check(repo)
    assert "functions/add_agent/requirements.txt is missing: run `make lock`" in problems


def test_pins_reads_extras_and_markers() -> None:
    text = (
        "# header\n"
        "boto3-stubs[iam, s3]==1.43.126 \\\n    --hash=sha256:00\n"
        "colorama==0.4.6 ; sys_platform == 'win32' \\\n    --hash=sha256:11\n"
        "Typing_Extensions==4.16.0\n"
        "    # via pydantic\n"
    )
    assert locks.pins(text) == {"boto3-stubs": "1.43.126", "colorama": "0.4.6", "typing-extensions": "4.16.0"}

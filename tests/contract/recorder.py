"""pytest plugin: IAM enforced on every AWS call a function or state machine makes in this process
(devstack/iam/enforce.py, with the tests' resource names), and what ran under enforcement recorded.

Each call a function or the state machine makes is evaluated against its own policy from template.yaml;
a call the policy refuses fails with AWS's AccessDeniedException. Who calls: the function whose handler
module is on the calling stack (a test that calls `app.lambda_handler`), the runner's function (workflow
tests), the state machine (moto's interpreter); a test's own set-up and assertions are the account's.

Each pytest process writes what ran under enforcement (the requests, canonical: ids that vary per test
as placeholders; and each call site in layers/ or functions/) to `.pytest-contract/`; at the end of a run
of the whole suite (and only then: a partial run has not exercised everything), the main process merges
them into `tests/contract/calls.json`. When that record changes, the run fails: review the diff and
commit it. `tests/contract/test_iam_contract.py` reads it: least privilege (every grant used), and every
AWS call site of the code exercised under enforcement by a function that reaches it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from devstack import template as tpl
from devstack.iam import build, enforce
from devstack.iam.policy import Request

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).with_name("calls.json")
SCRATCH = ROOT / ".pytest-contract"
ACCOUNT, REGION = "123456789012", "us-east-1"
STAGE = "test"  # the tests' functions are named test-<logical id> (tests/statemachine)

_calls: set[tuple[str, Request]] = set()
_sites: set[tuple[str, str]] = set()
_lock = threading.Lock()


def _environment_refs() -> dict[str, str]:
    """Environment variable -> the reference template.yaml gives it (`CREDENTIALS_KEY_ARN` ->
    `CredentialsKey.Arn`): what a test creates (a key, a secret) is named by the variable it sets."""
    template = tpl.load_template()
    found = {}
    for logical_id in tpl.resources(template, "AWS::Serverless::Function"):
        variables = (
            template["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
        )
        for name, value in variables.items():
            if isinstance(value, dict) and "Ref" in value:
                found[name] = str(value["Ref"])
            elif isinstance(value, dict) and "Fn::GetAtt" in value:
                found[name] = ".".join(value["Fn::GetAtt"])
    return found


def refs_now() -> dict[str, str]:
    """The template's references as the tests name their resources, now."""
    from tests.conftest import TEST_REFS

    refs = {**TEST_REFS}
    for logical_id in tpl.resources(tpl.load_template(), "AWS::Serverless::Function"):
        refs[logical_id] = f"{STAGE}-{logical_id}"
    for variable, ref in _ENV_REFS.items():
        if os.environ.get(variable):
            refs[ref] = os.environ[variable]
    return refs


_ENV_REFS: dict[str, str] = {}


def _canonical_arn(arn: str) -> str:
    """Resources created per test get random ids: name them as tests/conftest.TEST_REFS does."""
    from tests.conftest import TEST_REFS

    if arn and arn == os.environ.get("CREDENTIALS_KEY_ARN"):
        return TEST_REFS["CredentialsKey.Arn"]
    if re.fullmatch(rf"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:csrf-key-\w{{6}}", arn):
        return TEST_REFS["CsrfKeySecret"]
    if re.fullmatch(rf"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:entra-app-\w{{6}}", arn):
        return TEST_REFS["EntraClientSecretArn"]
    # An execution is named after its agent and attempt.
    return re.sub(r"(:execution:[^:]+:)[^:]+$", r"\1<agentId>-<attempt>", arn)


def canonical(request: Request) -> Request:
    """The request with what varies per test (ids, keys, addresses) as placeholders."""
    context: dict[str, tuple[str, ...]] = {}
    for key, values in request.context:
        if key == "dynamodb:LeadingKeys":
            values = tuple(sorted({re.sub(r"#.*", "#<id>", v) for v in values}))
        elif key.startswith("kms:EncryptionContext:") and key != "kms:EncryptionContext:purpose":
            values = (f"<{key.rsplit(':', 1)[-1]}>",)
        elif key == "secretsmanager:SecretId":
            values = tuple(_canonical_arn(v) for v in values)
        elif key in ("ses:Recipients", "ses:FromDisplayName"):
            values = (f"<{key.rsplit(':', 1)[-1]}>",)
        context[key] = values
    return Request(request.action, _canonical_arn(request.resource), tuple(sorted(context.items())))


def _record(decision: enforce.Decision) -> None:
    """What a role did: its allowed calls (a refused call, as the enforcement tests make, did nothing)."""
    if decision.denied is not None:
        return
    who = decision.principal.logical_id
    with _lock:
        _calls.update((who, canonical(r)) for r in decision.requests)
        if decision.site is not None:
            _sites.add((who, f"{decision.site} {decision.service}.{decision.operation}"))


def snapshot(rows: list[Mapping[str, Any]]) -> dict[str, dict[str, list[Any]]]:
    """calls.json: for each role, its canonical requests and its call sites."""
    merged: dict[str, tuple[set[Request], set[str]]] = {}
    for row in rows:
        requests, sites = merged.setdefault(row["principal"], (set(), set()))
        if "site" in row:
            sites.add(row["site"])
        else:
            requests.add(Request.from_json(row))
    return {
        who: {"calls": [r.to_json() for r in sorted(requests)], "sites": sorted(sites)}
        for who, (requests, sites) in sorted(merged.items())
    }


# ---------------------------------------------------------------- pytest hooks
def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _whole_suite(config: pytest.Config) -> bool:
    args = [Path(a).resolve() for a in config.args]
    return (
        all(a in (ROOT, ROOT / "tests") for a in args)
        and not config.getoption("keyword")
        and not config.getoption("markexpr")
        and not config.getoption("lf", False)
    )


_failed_elsewhere: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Failures outside tests/contract (the controller sees its workers' reports too)."""
    if report.failed and not report.nodeid.startswith("tests/contract/"):
        _failed_elsewhere.append(report.nodeid)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _failed_elsewhere.append(report.nodeid or "collection")


def _roles() -> set[str]:
    template = tpl.load_template()
    return set(tpl.resources(template, "AWS::Serverless::Function")) | set(
        tpl.resources(template, "AWS::Serverless::StateMachine")
    )


def _run_dir() -> Path:
    return SCRATCH / os.environ["CONTRACT_RUN_ID"]


def pytest_configure(config: pytest.Config) -> None:
    _ENV_REFS.update(_environment_refs())
    enforcer = enforce.install(build.enforcer(refs_now, stack_name=STAGE))
    enforcer.listeners.append(_record)
    if not _is_worker(config):
        # One folder per run (xdist workers inherit the variable), so runs side by side do not mix.
        os.environ["CONTRACT_RUN_ID"] = f"{os.getpid()}"
        shutil.rmtree(_run_dir(), ignore_errors=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    enforce.uninstall()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    name = config.workerinput["workerid"] if _is_worker(config) else "main"  # type: ignore[attr-defined]
    _run_dir().mkdir(parents=True, exist_ok=True)
    rows = [{"principal": who, **r.to_json()} for who, r in sorted(_calls)]
    rows += [{"principal": who, "site": site} for who, site in sorted(_sites)]
    (_run_dir() / f"{name}.json").write_text(json.dumps(rows), encoding="utf-8")
    if _is_worker(config):
        return
    parts = sorted(_run_dir().glob("*.json"))
    # The tests that read the record may fail on a stale one; any other failure: the record is not whole.
    if _failed_elsewhere or exitstatus not in (0, pytest.ExitCode.TESTS_FAILED) or not _whole_suite(config):
        return
    rows = [row for part in parts for row in json.loads(part.read_text(encoding="utf-8"))]
    record = snapshot(rows)
    if not _roles() <= set(record) or session.testscollected == 0:
        return  # not a whole run (nothing ran, or a role never ran): the record is kept as it is
    text = json.dumps(record, indent=1, sort_keys=True) + "\n"
    shutil.rmtree(_run_dir(), ignore_errors=True)
    if SNAPSHOT.exists() and SNAPSHOT.read_text(encoding="utf-8") == text:
        return
    SNAPSHOT.write_text(text, encoding="utf-8")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"What ran under IAM enforcement changed: {SNAPSHOT.relative_to(ROOT)} rewritten. Review the "
            "diff, make template.yaml grant exactly that (tests/contract), and commit both.",
            red=True,
        )

"""pytest plugin: record every AWS call each function makes across the test suite.

A botocore event hook (`provide-client-params`, registered on every client botocore creates, Powertools'
own clients included) turns each call into the IAM authorization requests AWS would evaluate for it
(action, resource ARN, condition keys). The call belongs to the function whose handler module is on the
calling thread's stack (`functions.<name>.<module>`, mapped to its logical id by template.yaml); calls a
test makes itself (set-up, assertions) belong to no function and are not recorded.

Each pytest process writes what it saw to `.pytest-contract/`; at the end of a run of the whole suite
(and only then: a partial run has not exercised everything), the main process merges them into
`tests/contract/calls.json`. When that snapshot changes, the run fails: the functions now make calls the
committed contract did not know. Review the diff, adjust template.yaml, commit both;
`tests/contract/test_iam_contract.py` checks the snapshot against the template.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from tests.contract.iam import Request

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).with_name("calls.json")
SCRATCH = ROOT / ".pytest-contract"
ACCOUNT, REGION = "123456789012", "us-east-1"

_calls: set[tuple[str, Request]] = set()
_lock = threading.Lock()
_modules: dict[str, str] = {}


def _function_modules() -> dict[str, str]:
    from devstack import template as tpl

    template = tpl.load_template()
    return {
        tpl.function_module(body)[0]: logical_id
        for logical_id, body in tpl.resources(template, "AWS::Serverless::Function").items()
    }


def _calling_function() -> str | None:
    frame = sys._getframe(2)
    while frame is not None:
        function = _modules.get(frame.f_globals.get("__name__", ""))
        if function:
            return function
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _canonical(arn: str) -> str:
    """Resources created per test get random ids: name them as tests/conftest.TEST_REFS does."""
    from tests.conftest import TEST_REFS

    if arn and arn == os.environ.get("CREDENTIALS_KEY_ARN"):
        return TEST_REFS["CredentialsKey.Arn"]
    if re.fullmatch(rf"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:csrf-key-\w{{6}}", arn):
        return TEST_REFS["CsrfKeySecret"]
    if re.fullmatch(rf"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:entra-app-\w{{6}}", arn):
        return TEST_REFS["EntraClientSecretArn"]
    return arn


def _table(name: str, index: str | None = None) -> str:
    arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
    return f"{arn}/index/{index}" if index else arn


def requests_for(service: str, operation: str, params: dict[str, Any]) -> list[Request]:
    """The authorization requests AWS evaluates for one API call (the operations our code uses)."""
    if service == "dynamodb":
        if operation == "TransactWriteItems":
            kinds = {
                "Put": "PutItem",
                "Update": "UpdateItem",
                "Delete": "DeleteItem",
                "ConditionCheck": "ConditionCheckItem",
            }
            found = []
            for item in params["TransactItems"]:
                ((kind, body),) = item.items()
                found.append(Request(f"dynamodb:{kinds[kind]}", _table(body["TableName"])))
            return found
        if operation == "BatchWriteItem":
            return [Request("dynamodb:BatchWriteItem", _table(name)) for name in params["RequestItems"]]
        context = {"dynamodb:ReturnValues": params["ReturnValues"]} if "ReturnValues" in params else {}
        item_key = params.get("Key") or params.get("Item") or {}
        if "pk" in item_key:
            # What AWS gives conditions on an item operation: its partition key (ids vary per test: the
            # prefix is kept, e.g. `OAUTH#<id>`).
            context["dynamodb:LeadingKeys"] = re.sub(r"#.*", "#<id>", str(item_key["pk"].get("S", "")))
        return [
            Request(
                f"dynamodb:{operation}",
                _table(params["TableName"], params.get("IndexName")),
                tuple((k, (v,)) for k, v in context.items()),
            )
        ]
    if service == "kms":
        encryption = params.get("EncryptionContext") or {}
        # Ids vary per test: kept as placeholders (the policies condition on the keys and the purpose).
        context: dict[str, tuple[str, ...]] = {
            f"kms:EncryptionContext:{k}": (v if k == "purpose" else f"<{k}>",) for k, v in encryption.items()
        }
        if encryption:
            context["kms:EncryptionContextKeys"] = tuple(sorted(encryption))
        return [
            Request(
                f"kms:{operation}", _canonical(str(params.get("KeyId", "*"))), tuple(sorted(context.items()))
            )
        ]
    if service == "secretsmanager":
        return [Request(f"secretsmanager:{operation}", _canonical(str(params["SecretId"])))]
    if service in ("sfn", "stepfunctions"):
        resource = params.get("stateMachineArn") or params.get("executionArn") or "*"
        # An execution is named after its agent and attempt (ids vary per test).
        resource = re.sub(r"(:execution:[^:]+:)[^:]+$", r"\1<agentId>-<attempt>", str(resource))
        return [Request(f"states:{operation}", resource)]
    if service == "sesv2" and operation == "SendEmail":
        address = parseaddr(params.get("FromEmailAddress", ""))[1]
        context = (("ses:ApiVersion", ("2",)), ("ses:FromAddress", (address,)))
        found = [Request("ses:SendEmail", f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/{address}", context)]
        if params.get("ConfigurationSetName"):
            name = params["ConfigurationSetName"]
            found.append(
                Request("ses:SendEmail", f"arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/{name}", context)
            )
        return found
    return [Request(f"{service}:{operation}", "*")]  # unknown to this recorder: shows up as denied


def _on_call(params: dict[str, Any], model: Any, **_: Any) -> None:
    function = _calling_function()
    if function is None:
        return
    service = model.service_model.service_name
    found = requests_for(service, model.name, params)
    with _lock:
        _calls.update((function, request) for request in found)


_original_create_client = botocore.session.Session.create_client


def _create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
    client = _original_create_client(self, *args, **kwargs)
    client.meta.events.register("provide-client-params", _on_call)
    return client


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


def _run_dir() -> Path:
    return SCRATCH / os.environ["CONTRACT_RUN_ID"]


def pytest_configure(config: pytest.Config) -> None:
    _modules.update(_function_modules())
    botocore.session.Session.create_client = _create_client  # type: ignore[method-assign]
    if not _is_worker(config):
        # One folder per run (xdist workers inherit the variable), so runs side by side do not mix.
        os.environ["CONTRACT_RUN_ID"] = f"{os.getpid()}"
        shutil.rmtree(_run_dir(), ignore_errors=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    botocore.session.Session.create_client = _original_create_client  # type: ignore[method-assign]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    name = config.workerinput["workerid"] if _is_worker(config) else "main"  # type: ignore[attr-defined]
    _run_dir().mkdir(parents=True, exist_ok=True)
    (_run_dir() / f"{name}.json").write_text(
        json.dumps([{"function": f, **r.to_json()} for f, r in sorted(_calls)]), encoding="utf-8"
    )
    if _is_worker(config):
        return
    parts = sorted(_run_dir().glob("*.json"))
    if exitstatus != 0 or not _whole_suite(config):
        return
    merged: dict[str, set[Request]] = {}
    for part in parts:
        for row in json.loads(part.read_text(encoding="utf-8")):
            merged.setdefault(row["function"], set()).add(Request.from_json(row))
    snapshot = {f: [r.to_json() for r in sorted(merged[f])] for f in sorted(merged)}
    text = json.dumps(snapshot, indent=1, sort_keys=True) + "\n"
    shutil.rmtree(_run_dir(), ignore_errors=True)
    if SNAPSHOT.exists() and SNAPSHOT.read_text(encoding="utf-8") == text:
        return
    SNAPSHOT.write_text(text, encoding="utf-8")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"The AWS calls the functions make changed: {SNAPSHOT.relative_to(ROOT)} rewritten. Review the "
            "diff, make template.yaml grant exactly that (tests/contract), and commit both.",
            red=True,
        )

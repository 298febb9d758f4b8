"""Cold start as shipped: the import cost of each function's handler from the built artifacts (`make build`,
.aws-sam/build), as Lambda imports them, beside a bare `import boto3` from the runtime.

As Lambda does it:
- a fresh Python 3.13 per measurement, with Lambda's search path order: the function's folder (/var/task),
  its layers' `python/` (/opt/python), the standard library, then the runtime's boto3 (pinned as in
  buildtools/lambda-runtime.in, bytecode compiled, as Lambda's runtime ships it) -- no site-packages;
- code folders read-only (PYTHONDONTWRITEBYTECODE: nothing compiled on import is kept, like /var/task);
- the function's environment from template.yaml (Globals + its own variables, parameters at their
  defaults), plus the variables Lambda sets.
The artifacts are arm64 and this machine may not be: every distribution with native extensions is
replaced by the same version's wheel for this machine, compiled the same way (its Python code is the
shipped code; only the .so differs).

Figures: instructions executed (valgrind callgrind; the same on every run, whatever the machine's
load) and wall time (median of --runs), each net of the bare interpreter's start, and the ratio to a bare
`import boto3`. Every function of the template is measured (new ones automatically), and verify_mailbox's
first Exchange step (the exchangelib import it makes lazily) on top of its init.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import callgrind
from buildtools import postprocess
from devstack import template as tpl

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".aws-sam" / "build"
REGION, ACCOUNT = "us-east-1", "123456789012"
SAMPLE_PARAMETERS = {  # parameters without a default: plausible values, as an operator would give
    "JwtIssuer": f"https://cognito-idp.{REGION}.amazonaws.com/{REGION}_Example",
    "JwtAudience": "example-client-id",
    "InviteSender": "onboarding@example.com",
}
INTERPRETER = "interpreter (python -c pass)"
EXCHANGE_STEP = "import exchangelib, exchangelib.autodiscover, exchangelib.protocol"
BARE = "import boto3 (runtime)"
BARE_FIRST = "bare: boto3 client + GetItem"
FIRST_REQUEST = "init + first request (GET one agent)"
# Where add_agent's import goes: each stage imports one more layer of it, in the order the handler does,
# cumulative, in the function's own environment (what the README's breakdown quotes).
BREAKDOWN = [
    ("botocore (session, client)", "import botocore.session"),
    ("+ pydantic (models, fields, types, TypeAdapter)", "from pydantic import BaseModel, Field, TypeAdapter"),
    ("+ Powertools event_handler package", "import aws_lambda_powertools.event_handler"),
    ("+ its OpenAPI params (validation)", "import aws_lambda_powertools.event_handler.openapi.params"),
    ("+ our settings and models", "import onboarding.settings, onboarding.agents.models"),
    (
        "+ our use cases and adapters",
        "import onboarding.agents.manage, onboarding.invites.delivery, onboarding.api, onboarding.deps",
    ),
    ("+ the handler (its routes)", "import app"),
]

# The first request of a cold start, over a replayed AWS response (no network, no service): botocore's
# transport (`Endpoint._send`, in the measured process only) answers every call with the recorded
# response, so the client is created, and the request serialized, signed, sent and parsed as on Lambda.
# Ours: the dashboard API's `GET /agents/{agentId}` (one GetItem); bare: `boto3.client("dynamodb")` and
# the same GetItem. Moving work from the import to the first request cannot improve both figures.
AGENT_ID = "01JF0000000000000000000000"
AGENT_ITEM = {  # what DynamoDB answers for the agent (its fields: reads of the public agent project them)
    "agentId": {"S": AGENT_ID},
    "tenantId": {"S": "demo"},
    "name": {"S": "Ann"},
    "email": {"S": "ann@contoso.com"},
    "type": {"S": "ms_exchange"},
    "status": {"S": "invited"},
    "createdAt": {"S": "2026-01-01T00:00:00.000Z"},
    "updatedAt": {"S": "2026-01-01T00:00:00.000Z"},
    "version": {"N": "2"},
}
REPLAY = """
import botocore.awsrequest, botocore.endpoint
class _Body:
    def __init__(self, data): self._data = data
    def stream(self, **_): yield self._data
def _send(endpoint, request):
    return botocore.awsrequest.AWSResponse(
        request.url, 200, {{"Content-Type": "application/x-amz-json-1.0"}}, _Body({body!r}))
botocore.endpoint.Endpoint._send = _send
"""
CONTEXT = """
class _Context:
    function_name = "AddAgentFunction"; memory_limit_in_mb = 512; aws_request_id = "r-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:AddAgentFunction"
"""


@dataclass
class Case:
    name: str
    code: str
    path: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    base: str = INTERPRETER  # the case whose cost is subtracted (net figures)


def _refs(template: dict[str, Any]) -> dict[str, str]:
    """What Ref/GetAtt/Sub give on AWS, with placeholder names, ARNs of the right shapes."""
    refs = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws"}
    refs.update({"AWS::StackName": "mailbox-onboarding", "AWS::URLSuffix": "amazonaws.com"})
    refs.update(tpl.parameter_defaults(template))
    for name in template.get("Parameters", {}):
        refs.setdefault(name, SAMPLE_PARAMETERS.get(name, f"example-{name.lower()}"))
    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:{{}}"
    for logical_id, body in template["Resources"].items():
        kind = body["Type"]
        if kind == "AWS::Serverless::StateMachine":
            refs[logical_id] = arn.format("states", f"stateMachine:{logical_id}")
            alias = body["Properties"].get("AutoPublishAlias")
            if alias:  # SAM's alias resource (`<id>Alias<alias>`), what the connect page starts
                refs[f"{logical_id}Alias{alias}"] = f"{refs[logical_id]}:{alias}"
        elif kind == "AWS::SecretsManager::Secret":
            refs[logical_id] = arn.format("secretsmanager", f"secret:{logical_id}-AbCdEf")
        elif kind == "AWS::KMS::Key":
            refs[logical_id] = "1234abcd-12ab-34cd-56ef-1234567890ab"
        elif kind in {"AWS::SQS::Queue"}:
            refs[logical_id] = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{logical_id}"
        else:
            refs[logical_id] = logical_id
        service = {"AWS::Serverless::Function": "lambda", "AWS::SQS::Queue": "sqs"}.get(kind, "service")
        refs[f"{logical_id}.Arn"] = arn.format(service, logical_id)
        refs[f"{logical_id}.Name"] = logical_id
        refs[f"{logical_id}.StreamArn"] = arn.format("dynamodb", f"table/{logical_id}/stream/2026")
        if kind == "AWS::KMS::Key":
            refs[f"{logical_id}.Arn"] = arn.format("kms", f"key/{refs[logical_id]}")
    refs["KeyArn"] = refs.get("KeyArn", "")
    return refs


def _lambda_env(logical_id: str, handler: str, memory: int) -> dict[str, str]:
    return {
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": logical_id,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{logical_id}",
        "AWS_ACCESS_KEY_ID": "ASIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "example",
        "AWS_SESSION_TOKEN": "example",
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "_HANDLER": handler,
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PATH": "/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",  # read-only code folders: what is compiled on import is lost
    }


def _pip(python: str) -> list[str]:
    return [
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--root-user-action=ignore",
    ]


def _host_twin(build: Path, python: str, into: Path) -> None:
    """Copy the artifacts; swap each native distribution for this machine's wheel of the same version."""
    shutil.copytree(build, into)
    machine = os.uname().machine
    for artifact in postprocess.artifacts(into):
        native = [
            dist
            for dist in postprocess.distributions(artifact.site).values()
            if any(".so" in f.name for f in dist.files)
        ]
        if not native or machine == "aarch64":
            continue
        for dist in native:
            postprocess.remove_distribution(artifact.site, dist)
        pins = [f"{d.name}=={d.version}" for d in native]
        subprocess.run(
            [
                *_pip(python),
                "--no-deps",
                "--only-binary=:all:",
                "--platform",
                f"manylinux2014_{machine}",
                "--python-version",
                "3.13",
                "--target",
                str(artifact.site),
                "--upgrade",
                *pins,
            ],
            check=True,
        )
        postprocess.strip_junk(artifact)
        postprocess.compile_bytecode(artifact, python)
        postprocess.drop_third_party_sources(artifact, "3.13")


def _runtime_boto3(python: str, into: Path) -> Path:
    pins = [
        line.strip()
        for line in (ROOT / "buildtools" / "lambda-runtime.in").read_text().splitlines()
        if re.match(r"^(boto3|botocore)==", line.strip())
    ]
    subprocess.run(
        [*_pip(python), "--target", str(into), *pins],
        check=True,
    )
    subprocess.run(
        [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(into)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return into


def _cases(twin: Path, runtime: Path) -> list[Case]:
    template = tpl.load_template()
    refs = _refs(template)
    artifacts = {a.logical_id: a for a in postprocess.artifacts(twin)}
    runtime_path = [str(runtime)]
    body = json.dumps({"Item": AGENT_ITEM}).encode()
    bare_first = (
        "import boto3, json\n"
        f"client = boto3.client('dynamodb', region_name={REGION!r})\n"
        + REPLAY.format(body=body)
        + "item = client.get_item(TableName='agents', Key={'pk': {'S': 'TENANT#demo'}, "
        f"'sk': {{'S': 'AGENT#{AGENT_ID}'}}}}, ConsistentRead=True)['Item']\n"
        "print(json.dumps({'statusCode': 200, 'body': json.dumps(item)}))"
    )
    bare_env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_ACCESS_KEY_ID": "ASIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "example",
    }
    cases = [
        Case(INTERPRETER, "pass", runtime_path, base=""),
        Case(BARE, "import boto3", runtime_path),
        Case(BARE_FIRST, bare_first, runtime_path, bare_env),
    ]
    globals_ = template.get("Globals", {}).get("Function", {})
    for logical_id, body in tpl.resources(template, "AWS::Serverless::Function").items():
        props = body["Properties"]
        module = props["Handler"].rsplit(".", 1)[0]
        env = tpl.function_environment(logical_id, refs, template)
        memory = int(props.get("MemorySize", globals_.get("MemorySize", 128)))
        env.update(_lambda_env(logical_id, props["Handler"], memory))
        # Lambda extracts the function's layers into one /opt/python (they ship no package twice)
        layers = [str(artifacts[i].site) for i in artifacts[logical_id].layers]
        path = [str(artifacts[logical_id].path), *layers, *runtime_path]
        cases.append(Case(logical_id, f"import {module}", path, env))
        if logical_id == "AddAgentFunction":
            cases.append(Case(f"{logical_id}: {FIRST_REQUEST}", _first_request(module), path, env))
        if "exchangelib" in postprocess.distributions(artifacts[logical_id].site):
            step = Case(
                f"{logical_id}: first Exchange step",
                f"import {module}; {EXCHANGE_STEP}",
                path,
                env,
                base=logical_id,
            )
            cases.append(step)
    return cases


def _first_request(module: str) -> str:
    from devstack.events import api_event

    event = api_event(
        "GET", f"/agents/{AGENT_ID}", route="/agents/{agentId}", path_params={"agentId": AGENT_ID}
    )
    body = json.dumps({"Item": AGENT_ITEM}).encode()
    return (
        f"import {module}, json\n"
        + REPLAY.format(body=body)
        + CONTEXT
        + f"response = {module}.lambda_handler(json.loads({json.dumps(event)!r}), _Context())\n"
        "assert response['statusCode'] == 200, response"
    )


def _command(case: Case, python: str) -> tuple[list[str], dict[str, str]]:
    code = f"import sys; sys.path[:0] = {case.path[:-1]!r}; sys.path.append({case.path[-1]!r})\n{case.code}"
    env = case.env or {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    return [python, "-I", "-S", "-c", code], env


def _instructions(case: Case, python: str) -> int:
    command, env = _command(case, python)
    return callgrind.instructions(command, env, case.name)


def _seconds(case: Case, python: str) -> float:
    command, env = _command(case, python)
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _artifact_sizes(build: Path) -> list[tuple[str, float, float]]:
    rows = []
    for artifact in postprocess.artifacts(build):
        with tempfile.TemporaryDirectory() as scratch:
            archive = shutil.make_archive(str(Path(scratch) / "a"), "zip", artifact.path)
            rows.append(
                (
                    artifact.logical_id,
                    postprocess.size(artifact.path) / 1e6,
                    Path(archive).stat().st_size / 1e6,
                )
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="wall-time runs per case (median)")
    parser.add_argument("--no-callgrind", action="store_true", help="wall time only (fast, noisy)")
    parser.add_argument("--build-dir", type=Path, default=BUILD)
    args = parser.parse_args(argv)
    if not args.no_callgrind and shutil.which("valgrind") is None:
        print("valgrind not found (Debian: apt-get install valgrind): wall time only.")
        args.no_callgrind = True
    if not (args.build_dir / "template.yaml").is_file():
        print("No build found: running `make build` first.", flush=True)
        subprocess.run(["make", "-C", str(ROOT), "build"], check=True)
    folder = subprocess.run(
        [str(ROOT / "buildtools" / "find-python.sh"), "3.13"], capture_output=True, text=True, check=True
    ).stdout.strip()
    python = f"{folder}/python3.13"
    with tempfile.TemporaryDirectory(prefix="cold-start-") as scratch:
        twin = Path(scratch) / "build"
        _host_twin(args.build_dir, python, twin)
        runtime = _runtime_boto3(python, Path(scratch) / "runtime")
        cases = _cases(twin, runtime)
        for case in cases:  # each must import cleanly before it is measured
            _seconds(case, python)
        seconds: dict[str, list[float]] = {c.name: [] for c in cases}
        for _ in range(args.runs):  # interleaved, so machine noise hits every case alike
            for case in cases:
                seconds[case.name].append(_seconds(case, python))
        wall = {name: statistics.median(values) for name, values in seconds.items()}
        counts: dict[str, int] = {}
        if not args.no_callgrind:
            with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                counts = dict(
                    zip(
                        [c.name for c in cases],
                        pool.map(lambda c: _instructions(c, python), cases),
                        strict=False,
                    )
                )
        breakdown: list[tuple[str, int]] = []
        if not args.no_callgrind:
            api = next(c for c in cases if c.name == "AddAgentFunction")
            codes = ["\n".join(code for _, code in BREAKDOWN[: i + 1]) for i in range(len(BREAKDOWN))]
            with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                stage_counts = list(
                    pool.map(lambda code: _instructions(dataclasses.replace(api, code=code), python), codes)
                )
            breakdown = [(label, n) for (label, _), n in zip(BREAKDOWN, stage_counts, strict=True)]
    by_name = {c.name: c for c in cases}

    def net(figures: dict[str, Any], name: str) -> float:
        base = by_name[name].base
        return figures[name] - (figures[base] if base else 0)

    def reference(name: str) -> str:
        """What a case is compared with: a bare first request for a first request, else a bare import."""
        return BARE_FIRST if FIRST_REQUEST in name else BARE

    print(
        f"\nCold start as shipped ({args.build_dir.relative_to(ROOT) if args.build_dir.is_relative_to(ROOT) else args.build_dir}),"
        " Python 3.13, net of the interpreter's start; x = ratio to the bare reference (below)"
    )
    print(f"{'case':56} {'M instr':>9} {'x bare':>8} {'wall ms':>8} {'x bare':>8}")
    for case in cases:
        if not case.base:
            instr = f"{counts[case.name] / 1e6:9.0f}" if counts else f"{'-':>9}"
            print(f"{case.name:56} {instr} {'':>8} {wall[case.name] * 1000:8.1f} {'':>8}")
            continue
        instr_cell, ratio_cell = f"{'-':>9}", f"{'-':>8}"
        if counts:
            instr_cell = f"{net(counts, case.name) / 1e6:9.0f}"
            ratio_cell = f"{net(counts, case.name) / net(counts, reference(case.name)):8.2f}"
        wall_ratio = net(wall, case.name) / net(wall, reference(case.name))
        label = case.name if case.base == INTERPRETER else f"  + {case.name.split(': ', 1)[1]}"
        print(f"{label:56} {instr_cell} {ratio_cell} {net(wall, case.name) * 1000:8.1f} {wall_ratio:8.2f}")
    print(f"A first request is compared with the bare one ({BARE_FIRST}), an import with `import boto3`.")
    print("Goals: HTTP functions and send_invite <= 1.5x, verify_mailbox's init <= 2.0x (instructions).")
    if breakdown:
        base, bare = counts[INTERPRETER], net(counts, BARE)
        print(
            "\nWhere AddAgentFunction's import goes (cumulative, net of the interpreter; x = ratio to `import boto3`)"
        )
        previous = base
        for label, n in breakdown:
            print(
                f"{label:56} {(n - base) / 1e6:9.0f} {(n - base) / bare:8.2f}   step {(n - previous) / bare:+.2f}x"
            )
            previous = n
    print(f"\nArtifacts ({args.build_dir.name}): MB unzipped / zipped")
    for name, unzipped, zipped in _artifact_sizes(args.build_dir):
        print(f"{name:56} {unzipped:9.1f} {zipped:8.1f}")


if __name__ == "__main__":
    main()

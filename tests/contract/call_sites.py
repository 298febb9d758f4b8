"""Where the shipped code (layers/, functions/) calls AWS, found statically, and which function reaches it.

A call site is `module:qualname service.Operation`, the same words devstack/iam/enforce.py records for a
call that ran under enforcement (the innermost frame in shipped code, `co_qualname`), so the two can be
compared: every site the code has must have run under the policy of a function that imports it.

Found: `<client>.<operation>(...)`, an operation of a service the code creates a client for
(`aws.client("dynamodb")`, `aws.LazyClient("stepfunctions")`), named as botocore names its methods, on
anything but a fresh object (`AESGCM(key).decrypt(...)` is no KMS call; pydantic's
`SecretStr.get_secret_value()` is no Secrets Manager call); and the Powertools parameters
utilities that call Secrets Manager for us (`parameters.get_secret(...)`, `<...>secrets_provider.get(...)`).
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import botocore.session
from botocore import xform_name

from devstack import template as tpl

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {ROOT / "layers" / "common": "", ROOT / "functions": "functions."}
_CLIENT = re.compile(r"""(?:aws\.client|LazyClient)\(\s*["'](\w+)["']""")
# Client method names the code also calls on things that are not clients: pydantic's SecretStr has
# `get_secret_value()`; the code reads secrets only through Powertools (found below).
_NOT_CLIENT_CALLS = frozenset({"get_secret_value"})


@dataclass(frozen=True, order=True)
class Site:
    module: str
    qualname: str
    operation: str  # service.Operation, botocore's names

    def __str__(self) -> str:
        return f"{self.module}:{self.qualname} {self.operation}"


def _modules() -> dict[str, Path]:
    found = {}
    for root, prefix in SOURCES.items():
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            if parts:
                found[prefix + ".".join(parts)] = path
    if (ROOT / "functions" / "__init__.py").exists():
        found["functions"] = ROOT / "functions" / "__init__.py"
    return found


@functools.cache
def services() -> frozenset[str]:
    """The services the code creates clients for (and Secrets Manager when Powertools reads secrets)."""
    found = set()
    for path in _modules().values():
        text = path.read_text(encoding="utf-8")
        found.update(_CLIENT.findall(text))
        if "aws_lambda_powertools.utilities" in text and "parameters" in text:
            found.add("secretsmanager")
    return frozenset(found)


@functools.cache
def _operations() -> dict[str, tuple[str, ...]]:
    """Client method name -> `service.Operation` for each service in use (a name may be in several)."""
    session = botocore.session.get_session()
    methods: dict[str, list[str]] = {}
    for service in sorted(services()):
        for operation in session.get_service_model(service).operation_names:
            methods.setdefault(xform_name(operation), []).append(f"{service}.{operation}")
    return {name: tuple(ops) for name, ops in methods.items()}


class _Visitor(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.scope: list[tuple[str, bool]] = []  # (name, is a function)
        self.sites: list[Site] = []

    def _qualname(self) -> str:
        if not self.scope:
            return "<module>"
        parts = []
        for index, (name, _) in enumerate(self.scope):
            if index and self.scope[index - 1][1]:
                parts.append("<locals>")
            parts.append(name)
        return ".".join(parts)

    def _enter(self, name: str, is_function: bool, node: ast.AST) -> None:
        self.scope.append((name, is_function))
        self.generic_visit(node)
        self.scope.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._enter(node.name, False, node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._enter(node.name, True, node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._enter(node.name, True, node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._enter("<lambda>", True, node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and not isinstance(func.value, ast.Call):
            receiver = ast.unparse(func.value)
            operations: tuple[str, ...] = ()
            if func.attr not in _NOT_CLIENT_CALLS:
                operations = _operations().get(func.attr, ())
            if (func.attr, receiver) == ("get_secret", "parameters") or (
                func.attr == "get" and receiver.endswith("secrets_provider")
            ):
                operations = ("secretsmanager.GetSecretValue",)  # Powertools reads the secret for us
            for operation in operations:
                self.sites.append(Site(self.module, self._qualname(), operation))
        self.generic_visit(node)


@functools.cache
def call_sites() -> frozenset[Site]:
    found: set[Site] = set()
    for module, path in _modules().items():
        visitor = _Visitor(module)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        found.update(visitor.sites)
    return frozenset(found)


def _imports(module: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for name in names:
            parts = name.split(".")
            for end in range(1, len(parts) + 1):  # a module imports its packages too
                if ".".join(parts[:end]) in known:
                    yield ".".join(parts[:end])


@functools.cache
def reach(logical_id: str) -> frozenset[str]:
    """The shipped modules a function's handler imports, directly or not (lazy imports included)."""
    known = _modules()
    body = tpl.resources(tpl.load_template(), "AWS::Serverless::Function")[logical_id]
    todo = [tpl.function_module(body)[0]]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen or module not in known:
            continue
        seen.add(module)
        todo.extend(_imports(module, known[module], known))
    return frozenset(seen)

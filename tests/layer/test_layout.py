"""The layer's layout tells its architecture: a package per feature, on floors, and imports only go down.

Floors, bottom up (a module may import its own package and anything on a lower floor, never a sibling on
its floor nor anything above):

0. `core`: AWS clients, DynamoDB typing, ids, domain errors, observability, sealed secrets;
1. the adapters to the outside world: `exchange` (with its SSRF guard) and `m365` (Microsoft's identity
   platform and Graph);
2. `agents`: the aggregate, its repository, the dashboard's use cases;
3. `invites`: links, their store, the email, delivery;
4. the use cases of the two other surfaces: `connect` (the hosted page, Microsoft sign-in) and
   `verification` (the workflow's steps);
5. the wiring at the package root: `api`, `settings`, `deps`.

Every import counts: at module level, inside functions (lazy imports for cold starts) and under
TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "common" / "onboarding"
FLOORS = {
    "core": 0,
    "exchange": 1,
    "m365": 1,
    "agents": 2,
    "invites": 3,
    "connect": 4,
    "verification": 4,
    "health": 4,  # scheduled checks of connected mailboxes
    "wiring": 5,  # api, settings, deps
}
WIRING = {"api", "settings", "deps"}  # the only modules at the package root


def _group(module: str) -> str:
    """`onboarding.agents.store` -> `agents`; a module at the package root (`onboarding.settings`) ->
    `wiring`."""
    parts = module.split(".")
    if len(parts) < 2:
        return ""
    return parts[1] if (PACKAGE / parts[1]).is_dir() else "wiring"


def _module_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every `onboarding` import in a file; `from onboarding import x` names
    the module `onboarding.x`."""
    found = []
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("onboarding.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target == "onboarding":
                found += [(node.lineno, f"onboarding.{a.name}") for a in node.names]
            elif target.startswith("onboarding."):
                found.append((node.lineno, target))
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_belongs_to_a_floor() -> None:
    homeless = []
    for path in _modules():
        module = _module_of(path)
        if module == "onboarding":
            continue
        group = _group(module)
        if group not in FLOORS or (group == "wiring" and module.split(".")[1] not in WIRING):
            homeless.append(module)
    assert homeless == [], "put each module in a feature package (or add the package to FLOORS)"


def test_imports_only_go_down() -> None:
    upward = []
    for path in _modules():
        source = _module_of(path)
        if source == "onboarding":
            continue
        mine = _group(source)
        for line, target in _imports(path):
            theirs = _group(target)
            if theirs == mine:
                continue
            if theirs not in FLOORS or FLOORS[theirs] >= FLOORS[mine]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} {source} -> {target}")
    assert upward == []


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        ("onboarding.agents.manage", "onboarding.core.errors", True),
        ("onboarding.connect.forms", "onboarding.agents.store", True),
        ("onboarding.m365.oauth", "onboarding.connect.microsoft", False),  # an adapter importing a use case
        ("onboarding.agents.manage", "onboarding.invites.delivery", False),  # up a floor
        ("onboarding.connect.forms", "onboarding.verification.steps", False),  # a sibling on its floor
        ("onboarding.core.aws", "onboarding.settings", False),
        ("onboarding.deps", "onboarding.settings", True),  # the wiring at the root is one floor
    ],
)
def test_the_floor_rule_itself(source: str, target: str, allowed: bool) -> None:
    mine, theirs = _group(source), _group(target)
    assert (theirs == mine or FLOORS[theirs] < FLOORS[mine]) is allowed

"""The migration boundary, read from source: forbidden imports, docstrings, twin modules."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HTTP_METHODS = {"get", "post", "put", "patch", "delete", "head", "options", "api_route"}


@dataclass(frozen=True)
class Rule:
    """Dotted names a package must not reference: modules (and below), or bare names anywhere."""

    modules: tuple[str, ...]
    names: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()  # exact names exempt from `modules`


LEGACY_RULE = Rule(
    modules=("sqlalchemy.ext.asyncio", "asyncpg", "gateway.database.queries"), names=("AsyncDB",)
)
ASYNC_RULE = Rule(modules=("sqlalchemy.orm.Session", "psycopg"), names=("SyncDB",))
# Request schemas may use the gateway's field types that take JSON as their schema says.
SHARED_RULE = Rule(
    allowed=("gateway.JsonInteger",),
    modules=(
        "gateway",
        "sqlalchemy.ext.asyncio",
        "asyncpg",
        "psycopg",
        "sqlalchemy.orm.Session",
        "sqlalchemy.orm.sessionmaker",
        "sqlalchemy.Engine",
        "sqlalchemy.Connection",
        "sqlalchemy.engine",
    ),
    names=("create_engine",),
)
SEED_RULE = Rule(
    modules=tuple(
        m for m in SHARED_RULE.modules if m not in {"sqlalchemy.Engine", "sqlalchemy.Connection"}
    ),
    names=SHARED_RULE.names,
)
# The alembic environment builds its own engine when alembic is run with `-x url=...`, and
# keeps autogenerate off the gateway's tables with the hook every adopter's env.py imports.
MIGRATIONS_RULE = Rule(modules=SHARED_RULE.modules, allowed=("gateway.exclude_gateway_tables",))


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def absolute(node: ast.ImportFrom, path: Path) -> str:
    if not node.level:
        return node.module or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def imported_aliases(tree: ast.Module, path: Path) -> dict[str, str]:
    """Each local name an import binds, and the dotted name it stands for."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                aliases[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom):
            module = absolute(node, path)
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
    return aliases


def dotted(node: ast.expr) -> list[str] | None:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return None if base is None else [*base, node.attr]
    return None


def referenced_names(source: str, path: Path) -> set[str]:
    """Every dotted name the module imports, or reaches through an imported name's attributes."""
    tree = ast.parse(source)
    aliases = imported_aliases(tree, path)
    found = set(aliases.values())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add(absolute(node, path))
        elif isinstance(node, ast.Attribute):
            parts = dotted(node)
            if parts and parts[0] in aliases:
                found.add(".".join([aliases[parts[0]], *parts[1:]]))
    return found


def violations(source: str, path: Path, rule: Rule) -> list[str]:
    found = []
    bound = set(imported_aliases(ast.parse(source), path).values())
    for name in sorted(referenced_names(source, path)):
        imported_from = name not in bound and any(a.startswith(name + ".") for a in rule.allowed)
        if name in rule.allowed or imported_from:
            continue  # the allowed name itself, or the module it is imported from
        in_module = any(name == m or name.startswith(m + ".") for m in rule.modules)
        if in_module or name.rsplit(".", 1)[-1] in rule.names:
            found.append(name)
    return found


def rule_for(path: Path) -> Rule:
    relative = path.relative_to(ROOT)
    package = relative.parts[0]
    if package == "legacy_routes":
        return LEGACY_RULE
    if package == "async_routes":
        return ASYNC_RULE
    if relative == Path("shared_models/seed.py"):
        return SEED_RULE
    if relative.parts[:2] == ("shared_models", "migrations"):
        return MIGRATIONS_RULE
    return SHARED_RULE


def guarded_files() -> Iterator[Path]:
    for package in ("legacy_routes", "async_routes", "shared_models"):
        yield from python_files(package)


@pytest.mark.parametrize("path", list(guarded_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_stays_on_its_side_of_the_boundary(path: Path) -> None:
    assert violations(path.read_text(), path, rule_for(path)) == []


BROKEN_EXAMPLES = [
    (
        "legacy_routes/x.py",
        "from sqlalchemy.ext.asyncio import AsyncSession",
        "sqlalchemy.ext.asyncio.AsyncSession",
    ),
    ("legacy_routes/x.py", "from gateway import AsyncDB", "gateway.AsyncDB"),
    ("legacy_routes/x.py", "from gateway.database import queries", "gateway.database.queries"),
    ("legacy_routes/x.py", "import asyncpg.pool as pool", "asyncpg.pool"),
    ("async_routes/x.py", "from sqlalchemy.orm import Session", "sqlalchemy.orm.Session"),
    (
        "async_routes/x.py",
        "import sqlalchemy.orm as orm\nS = orm.Session",
        "sqlalchemy.orm.Session",
    ),
    ("async_routes/x.py", "from ..gateway import SyncDB", "gateway.SyncDB"),
    ("async_routes/x.py", "import psycopg", "psycopg"),
    (
        "shared_models/x.py",
        "import sqlalchemy as sa\nengine = sa.create_engine('x')",
        "sqlalchemy.create_engine",
    ),
    ("shared_models/x.py", "from gateway.settings import Settings", "gateway.settings"),
    ("shared_models/x.py", "from sqlalchemy import Engine", "sqlalchemy.Engine"),
    ("shared_models/migrations/x.py", "import gateway", "gateway"),
]


@pytest.mark.parametrize(("where", "source", "expected"), BROKEN_EXAMPLES)
def test_the_boundary_check_catches_crossings(where: str, source: str, expected: str) -> None:
    path = ROOT / where
    assert expected in violations(source, path, rule_for(path))


def test_seed_may_take_an_engine_and_a_connection() -> None:
    path = ROOT / "shared_models/seed.py"
    assert (
        violations("from sqlalchemy import Connection, Engine, insert", path, rule_for(path)) == []
    )


@pytest.mark.parametrize(
    "path",
    [*python_files("legacy_routes"), *python_files("async_routes")],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_route_module_has_a_docstring(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and docstring.strip()


def endpoint_names(path: Path) -> list[str]:
    """Module-level functions decorated with `<router>.<http method>(...)`, in source order."""
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
            isinstance(d, ast.Call)
            and isinstance(d.func, ast.Attribute)
            and d.func.attr in HTTP_METHODS
            for d in node.decorator_list
        ):
            names.append(node.name)
    return names


def twin_module_names() -> list[str]:
    legacy = {p.name for p in (ROOT / "legacy_routes").glob("*.py")}
    migrated = {p.name for p in (ROOT / "async_routes").glob("*.py")}
    return sorted((legacy & migrated) - {"__init__.py"})


def test_there_are_twin_modules() -> None:
    assert {"users.py", "items.py"} <= set(twin_module_names())


@pytest.mark.parametrize("name", twin_module_names())
def test_twin_modules_define_the_same_endpoints_in_order(name: str) -> None:
    legacy = endpoint_names(ROOT / "legacy_routes" / name)
    migrated = endpoint_names(ROOT / "async_routes" / name)
    assert legacy, f"legacy_routes/{name} defines no endpoint"
    assert legacy == migrated

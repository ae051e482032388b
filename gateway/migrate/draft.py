"""A draft async twin of a legacy module, written from the analysis of that module.

The draft keeps the module as it is (docstring, comments, function names and
order, paths, schemas), and changes only what the analysis settled
(`gateway.migrate.modules`): `def` becomes `async def`, the sync session
becomes `AsyncDB` (or `AsyncSession` in a helper), each idiom the translation
table covers becomes its async form, and the imports follow. What it cannot
translate safely stays, under a `# MIGRATE:` comment saying why; the run lists
each one.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import libcst as cst
from fastapi import APIRouter
from fastapi.routing import APIRoute

from gateway.migrate import import_edits
from gateway.migrate.facts import ModuleFacts
from gateway.migrate.layout import formatted, leading, wrapped
from gateway.migrate.modules import Context, analyse
from gateway.migrate.sources import installed_roots, source

MARK = "# MIGRATE:"
CONTINUED = "#   "  # a note's next lines
DEFAULT_WIDTH = 88  # ruff's and black's default line length


@dataclass(frozen=True)
class Draft:
    """The draft's text, and each spot left to a person: (line in the draft, why)."""

    code: str
    marks: list[tuple[int, str]]


class Drafting(cst.CSTTransformer):
    """Applies the settled changes of one module's analysis to its tree."""

    def __init__(self, facts: ModuleFacts, width: int) -> None:
        super().__init__()
        self.facts = facts
        self.width = width
        self.asynchronous = {
            facts.source.functions[name]
            for name in facts.asynchronous
            if name in facts.source.functions
        }

    # A rewrite may give a node of another type (an awaited call for a call): untyped here.
    def on_leave(  # type: ignore[override]
        self, original_node: cst.CSTNode, updated_node: cst.CSTNode
    ) -> cst.CSTNode | cst.RemovalSentinel | cst.FlattenSentinel[cst.CSTNode]:
        facts = self.facts
        if original_node in facts.removed:
            return cst.RemovalSentinel.REMOVE
        rewrite = facts.rewrites.get(original_node)
        node = rewrite(updated_node) if rewrite is not None else updated_node
        if original_node in self.asynchronous and isinstance(node, cst.FunctionDef):
            node = node.with_changes(asynchronous=cst.Asynchronous())
        node = _parenthesized(node)
        notes = facts.notes.get(original_node)
        if notes and isinstance(node, cst.BaseStatement):
            room = self.width - facts.source.column(original_node)
            node = node.with_changes(leading_lines=[*leading(node), *_comments(notes, room)])
        if original_node in facts.replaced:
            indent = facts.source.column(original_node)
            laid = [wrapped(s, indent, self.width) for s in facts.replaced[original_node]]
            return cst.FlattenSentinel(laid)
        return node


def _parenthesized(node: cst.CSTNode) -> cst.CSTNode:
    """`(await x).y`: an awaited value read further needs its parentheses."""
    if isinstance(node, cst.Attribute | cst.Subscript) and _bare_await(node.value):
        return node.with_changes(value=_in_parentheses(node.value))
    if isinstance(node, cst.Call) and _bare_await(node.func):
        return node.with_changes(func=_in_parentheses(node.func))
    return node


def _bare_await(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Await) and not node.lpar


def _in_parentheses(node: cst.BaseExpression) -> cst.BaseExpression:
    return node.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def _comments(notes: list[str], width: int) -> list[cst.EmptyLine]:
    """`# MIGRATE: why` for each note, wrapped to `width` columns."""
    lines = []
    for note in notes:
        words, line = note.split(), MARK
        for word in words:
            if len(line) + len(word) + 1 > width:
                lines.append(line)
                line = CONTINUED[:-1]
            line += " " + word
        lines.append(line)
    return [cst.EmptyLine(indent=True, comment=cst.Comment(line)) for line in lines]


def draft_module(module: ModuleType, context: Context, width: int | None = None) -> Draft:
    """The draft async twin of `module` (a legacy module of the app, imported)."""
    if module.__file__ is None:
        raise ImportError(f"{module.__name__} has no file to draft from")
    path = Path(module.__file__)
    found = source(path, module)
    facts = analyse(found, context, endpoints_in(module))
    width = width or line_length(path)
    drafted = found.tree.visit(Drafting(facts, width))
    drafted = import_edits.fixed(drafted, found.tree, facts, width, project_package(context.root))
    code = formatted(found.tree.code, drafted.code, path)
    return Draft(code, marks_in(code))


def marks_in(code: str) -> list[tuple[int, str]]:
    """Each `# MIGRATE:` note of `code`: its line and its whole text."""
    marks: list[tuple[int, str]] = []
    continues = False
    for number, line in enumerate(code.splitlines(), 1):
        text = line.strip()
        if text.startswith(MARK):
            marks.append((number, text[len(MARK) :].strip()))
            continues = True
        elif continues and text.startswith(CONTINUED):
            marks[-1] = (marks[-1][0], f"{marks[-1][1]} {text[len(CONTINUED) :].strip()}")
        else:
            continues = False
    return marks


def endpoints_in(module: ModuleType) -> dict[str, Any]:
    """The module's endpoints (routes of its routers), each with its response model."""
    found: dict[str, Any] = {}
    for value in vars(module).values():
        if isinstance(value, APIRouter):
            for route in value.routes:
                endpoint = getattr(route, "endpoint", None)
                if (
                    isinstance(route, APIRoute)
                    and getattr(endpoint, "__module__", "") == module.__name__
                ):
                    found[route.endpoint.__name__] = route.response_model
    return found


def module_at(path: Path) -> ModuleType:
    """The module the file at `path` is, imported from the entry of sys.path that holds it."""
    resolved = path.resolve()
    for module in list(sys.modules.values()):
        filename = getattr(module, "__file__", None)
        if filename and Path(filename).resolve() == resolved:
            return module
    for entry in sys.path:
        base = Path(entry or ".").resolve()
        if resolved.is_relative_to(base) and resolved.suffix == ".py":
            parts = list(resolved.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            if all(part.isidentifier() for part in parts):
                return importlib.import_module(".".join(parts))
    raise ImportError(f"{path} is not importable from the working directory or sys.path")


def line_length(path: Path) -> int:
    """[tool.ruff] line-length of the nearest pyproject.toml above `path`, else 88."""
    for folder in path.resolve().parents:
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            ruff = tomllib.loads(pyproject.read_text()).get("tool", {}).get("ruff", {})
            return int(ruff.get("line-length", DEFAULT_WIDTH))
    return DEFAULT_WIDTH


def project_package(root: Path) -> Callable[[str], bool]:
    """Whether a top-level package is the project's own (below `root`, not installed)."""

    def first_party(top: str) -> bool:
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return False
        origin = spec.origin if spec is not None else None
        if origin is None or origin in ("built-in", "frozen"):
            return False
        path = Path(origin).resolve()
        installed = installed_roots()
        return path.is_relative_to(root) and not any(path.is_relative_to(i) for i in installed)

    return first_party

"""What the analysis of one module found: idioms per function, and the draft's changes.

The analysis and the draft share these records, so the scan reports exactly
what the draft will do: an idiom is automatic when the draft rewrites it, and
everything else carries the reason its `# MIGRATE:` comment will give.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import libcst as cst

from gateway.migrate.idioms import Kind
from gateway.migrate.names import Imports
from gateway.migrate.sources import Source

Rewrite = Callable[[cst.CSTNode], cst.CSTNode]  # applied to the node as the draft has it by then


@dataclass
class Found:
    """One idiom in a function, before its async form is rendered."""

    kind: Kind
    node: cst.CSTNode  # where it is
    code: str
    automatic: bool
    statement: cst.CSTNode | None  # where its `# MIGRATE:` comment goes
    form: str = ""  # the async form; rendered from the rewrite of `node` when empty
    why: str = ""


@dataclass
class Call:
    """A call from one function to another function of the app."""

    callee: str  # a top-level function of the same module, or module.function elsewhere
    node: cst.Call
    statement: cst.CSTNode | None
    in_sync_scope: bool  # in a lambda, nested def or generator: no await possible there
    sessions: dict[int | str, str] = field(default_factory=dict)  # argument -> session passed


@dataclass
class FunctionFacts:
    """One top-level function of the module."""

    name: str
    node: cst.FunctionDef
    endpoint: bool
    sessions: set[str]
    found: list[Found] = field(default_factory=list)
    awaits: bool = False  # the draft awaits something in it
    local_calls: list[Call] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)  # the module's own, it depends on
    app_calls: list[Call] = field(default_factory=list)
    followed: list[tuple[ModuleFacts, str]] = field(default_factory=list)  # helpers elsewhere
    sleeps: list[tuple[Found, cst.Call]] = field(default_factory=list)  # time.sleep calls
    blocks: list[Found] = field(default_factory=list)  # its own blocking calls
    answers: str | None = None  # the schema it now answers instead of the model, if it does


@dataclass
class ModuleFacts:
    """Every function of one module, and the changes a draft of it makes."""

    source: Source
    imports: Imports
    functions: dict[str, FunctionFacts] = field(default_factory=dict)
    rewrites: dict[cst.CSTNode, Rewrite] = field(default_factory=dict)
    replaced: dict[cst.CSTNode, list[cst.BaseStatement]] = field(default_factory=dict)
    removed: set[cst.CSTNode] = field(default_factory=set)
    notes: dict[cst.CSTNode, list[str]] = field(default_factory=dict)
    moved: dict[str, str] = field(default_factory=dict)  # imported name -> its async module
    asynchronous: set[str] = field(default_factory=set)  # functions the draft makes async

    def note(self, statement: cst.CSTNode | None, why: str) -> None:
        if statement is not None and why not in self.notes.setdefault(statement, []):
            self.notes[statement].append(why)

    def line(self, node: cst.CSTNode) -> int:
        return self.source.line(node)

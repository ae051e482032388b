"""What every part of the analysis of a module shares: what it knows of each function.

`Target` is what the caller knows of a function before it is read (from its
runtime signature and the app's routes); `State` is what the reading keeps
while it goes through the function's statements in order; `ReaderBase`
resolves names to the module's runtime values and records what is found.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import libcst as cst
from libcst.metadata import ExpressionContextProvider, QualifiedNameProvider

from gateway.migrate.chains import Chain
from gateway.migrate.facts import Found, FunctionFacts, ModuleFacts
from gateway.migrate.idioms import Kind
from gateway.migrate.names import dotted
from gateway.migrate.sources import MISSING
from gateway.migrate.tracking import Held, Loader, class_names

NO_AWAIT_HERE = "an `await` cannot go in a lambda, a nested `def` or a generator expression"


@dataclass
class Target:
    """What the caller knows of one function before reading it."""

    endpoint: bool
    response_model: Any = None
    sessions: set[str] = field(default_factory=set)
    session_dependencies: dict[str, Any] = field(default_factory=dict)  # param -> dependency
    mapped: dict[str, Any] = field(default_factory=dict)  # param -> the mapped class it holds
    provided: set[str] = field(default_factory=set)  # sessions a dependency provides
    twin_of: Callable[[str, str], str | None] = lambda module, name: None


@dataclass
class State:
    """One function being read."""

    facts: FunctionFacts
    target: Target
    body: dict[cst.BaseStatement, int]  # the function body's statements, by position
    reads: Counter[str]
    writes: int
    queries: dict[str, Chain] = field(default_factory=dict)
    held: dict[str, Held] = field(default_factory=dict)
    chains: dict[cst.CSTNode, Chain] = field(default_factory=dict)  # by the call that ends each
    loaders: dict[cst.CSTNode, Loader] = field(default_factory=dict)  # by the call that loads
    statements: list[cst.CSTNode] = field(default_factory=list)
    consumed: set[cst.CSTNode] = field(default_factory=set)
    skipped: set[cst.CSTNode] = field(default_factory=set)
    lazy_reported: set[tuple[int, tuple[str, ...]]] = field(default_factory=set)
    loops: int = 0
    sync_scopes: int = 0

    @property
    def statement(self) -> cst.CSTNode | None:
        return self.statements[-1] if self.statements else None


class ReaderBase(cst.CSTVisitor):
    """The reading of one module's targeted top-level functions into `facts`."""

    METADATA_DEPENDENCIES = (QualifiedNameProvider, ExpressionContextProvider)

    def __init__(self, facts: ModuleFacts, targets: dict[str, Target]) -> None:
        super().__init__()
        self.facts = facts
        self.source = facts.source
        self.targets = targets
        self.state: State | None = None
        self.classes = class_names(vars(self.source.module) if self.source.module else {})

    def value_of(self, expression: cst.BaseExpression) -> Any:
        """The runtime value of a (dotted) name at the module's top level, or MISSING."""
        path = dotted(expression)
        if not path:
            return MISSING
        head, *rest = path.split(".")
        value = self.source.value(head)
        for part in rest:
            value = getattr(value, part, MISSING)
        return value

    def name_of(self, value: Any) -> str | None:
        """How the module names `value` (a class, or a generic schema like `Page[UserRead]`)."""
        if value in self.classes:
            return self.classes[value]
        metadata = getattr(value, "__pydantic_generic_metadata__", None) or {}
        origin, arguments = metadata.get("origin"), metadata.get("args", ())
        names = [self.name_of(argument) for argument in arguments]
        if origin is None or None in names or self.name_of(origin) is None:
            return None
        return f"{self.name_of(origin)}[{', '.join(n for n in names if n)}]"

    def _found(
        self, state: State, kind: Kind, node: cst.CSTNode, automatic: bool, *,
        code: str = "", form: str = "", why: str = "",
    ) -> Found:  # fmt: skip
        found = Found(
            kind, node, code or self.source.code(node), automatic, state.statement, form, why
        )
        state.facts.found.append(found)
        return found

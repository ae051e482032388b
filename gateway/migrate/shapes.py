"""The statement shapes lean patterns are made of, and how a pattern writes its helper call.

`v = <M by key k>`, `if v is None: raise E`, `db.commit()` as a statement of
its own, `raise not_found("m", k)`: each recognised on the tree, with the
function's sessions and the module's runtime values at hand (`Scope`). A
pattern's replacement is written from a template, its query helper imported
under a name the module leaves free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import libcst as cst
import libcst.matchers as m
from libcst.helpers import parse_template_statement

from gateway.database.reads import entity_name
from gateway.errors import not_found
from gateway.migrate.chains import Chain, flatten
from gateway.migrate.names import Imports, dotted
from gateway.migrate.orm import primary_key_name, reads_columns_only
from gateway.migrate.syntax import session_method

QUERIES = "gateway.database.queries"
PARSER = cst.PartialParserConfig()
HELPERS = (
    "read_or_404", "read_one", "insert_returning", "update_or_404", "update_returning",
    "delete_or_404", "delete_returning", "read_page", "list_page",
)  # fmt: skip


@dataclass
class Scope:
    """What a pattern needs to know about the function it is looking at."""

    sessions: set[str]
    queries: dict[str, Chain]  # query variables, as the chains that made them
    resolve: Callable[[cst.BaseExpression], Any]  # the runtime value of a name, if known
    schema_name: Callable[[Any], str | None]  # how the module names a schema class
    response_model: Any
    imports: Imports
    reads: Callable[[str], int]  # how often the function reads a name
    writes: int  # session writes in the whole function


@dataclass
class Lean:
    """A match: the statements it replaces and what replaces them."""

    name: str  # read, insert, update, delete, page
    statements: list[cst.BaseStatement]
    replacement: list[cst.BaseStatement]
    returns: str | None = None  # the schema the function now returns, when it changed
    parametrized: dict[cst.Call, str] = field(default_factory=dict)  # return calls to subscript


@dataclass(frozen=True)
class KeyRead:
    session: str
    model: cst.BaseExpression
    key: cst.BaseExpression
    cls: Any


def only_small(statement: cst.BaseStatement) -> cst.BaseSmallStatement | None:
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        return statement.body[0]
    return None


def assignment(statement: cst.BaseStatement) -> tuple[str, cst.BaseExpression] | None:
    """`name = value` as (name, value)."""
    small = only_small(statement)
    if isinstance(small, cst.Assign) and len(small.targets) == 1:
        target = small.targets[0].target
        if isinstance(target, cst.Name):
            return target.value, small.value
    return None


def return_value(statement: cst.BaseStatement) -> cst.BaseExpression | None:
    small = only_small(statement)
    return small.value if isinstance(small, cst.Return) else None


def session_call(statement: cst.BaseStatement, scope: Scope, method: str) -> cst.Call | None:
    """`db.method(...)` as a statement of its own, on one of the function's sessions."""
    small = only_small(statement)
    call = small.value if isinstance(small, cst.Expr) else None
    found = session_method(call, scope.sessions) if call is not None else None
    return call if isinstance(call, cst.Call) and found and found[1] == method else None


def raise_if(statement: cst.BaseStatement, test: m.BaseMatcherNode) -> cst.Raise | None:
    """`if <test>: raise E` with nothing else in it."""
    if not (isinstance(statement, cst.If) and statement.orelse is None):
        return None
    block = statement.body
    if isinstance(block, cst.SimpleStatementSuite):
        small = block.body[0] if len(block.body) == 1 else None
    else:
        inner = block.body[0] if len(block.body) == 1 else None
        small = only_small(inner) if isinstance(inner, cst.BaseStatement) else None
    if m.matches(statement.test, test) and isinstance(small, cst.Raise):
        return small
    return None


def is_none(name: str) -> m.BaseMatcherNode:
    return m.Comparison(
        left=m.Name(name),
        comparisons=[m.ComparisonTarget(operator=m.Is(), comparator=m.Name("None"))],
    )


def is_not(name: str) -> m.BaseMatcherNode:
    return m.UnaryOperation(operator=m.Not(), expression=m.Name(name))


def read_by_key(expression: cst.BaseExpression, scope: Scope, runs: set[str]) -> KeyRead | None:
    """`db.query(M).filter(M.pk == k).<run>()`, `db.query(M).get(k)` or `db.get(M, k)`."""
    base, links = flatten(expression)
    if not (isinstance(base, cst.Name) and base.value in scope.sessions and links):
        return None
    arguments = [arg.value for arg in links[0].call.args]
    if links[0].name == "get" and len(links) == 1 and len(arguments) == 2:
        return _key_read(base.value, arguments[0], arguments[1], scope)
    if links[0].name != "query" or len(arguments) != 1:
        return None
    model = arguments[0]
    if [link.name for link in links[1:]] == ["get"] and "get" in runs:
        return _key_read(base.value, model, links[1].call.args[0].value, scope)
    if len(links) != 3 or links[1].name != "filter" or links[2].name not in runs:
        return None
    key = _key_compared(links[1].call, model, scope)
    return None if key is None else _key_read(base.value, model, key, scope)


def _key_read(
    session: str, model: cst.BaseExpression, key: cst.BaseExpression, scope: Scope
) -> KeyRead | None:
    cls = scope.resolve(model)
    return KeyRead(session, model, key, cls) if primary_key_name(cls) is not None else None


def _key_compared(
    call: cst.Call, model: cst.BaseExpression, scope: Scope
) -> cst.BaseExpression | None:
    """k in `.filter(M.pk == k)` (either side)."""
    if len(call.args) != 1 or not isinstance(call.args[0].value, cst.Comparison):
        return None
    comparison = call.args[0].value
    if len(comparison.comparisons) != 1 or not isinstance(
        comparison.comparisons[0].operator, cst.Equal
    ):
        return None
    key_name = primary_key_name(scope.resolve(model))
    column = f"{dotted(model)}.{key_name}"
    left, right = comparison.left, comparison.comparisons[0].comparator
    if dotted(left) == column:
        return right
    return left if dotted(right) == column else None


def answers_404(raised: cst.Raise, read: KeyRead, scope: Scope) -> bool:
    """`raise not_found("<entity>", k)`: what the lean helpers raise themselves."""
    call = raised.exc
    if not (isinstance(call, cst.Call) and scope.resolve(call.func) is not_found):
        return False
    if len(call.args) != 2 or not isinstance(call.args[0].value, cst.SimpleString):
        return False
    entity, key = call.args[0].value.evaluated_value, call.args[1].value
    return entity == entity_name(read.cls) and key.deep_equals(read.key)


def schema_of(read: KeyRead, scope: Scope) -> str | None:
    schema = scope.response_model
    if not reads_columns_only(read.cls, schema):
        return None
    return scope.schema_name(schema)


Parts = dict[str, cst.BaseExpression | str]


def written(template: str, scope: Scope, **parts: cst.BaseExpression | str) -> cst.BaseStatement:
    """A statement from `template`, helpers (`{read_page}`) imported and named as free."""
    replacements: dict[str, cst.BaseExpression] = {}
    for name, part in parts.items():
        replacements[name] = cst.Name(part) if isinstance(part, str) else part
    for helper in HELPERS:
        if "{" + helper + "}" in template:
            replacements[helper] = cst.Name(scope.imports.use(QUERIES, helper))
    return parse_template_statement(template, PARSER, **replacements)


def key_equals(read: KeyRead) -> cst.Comparison:
    """`M.pk == k`."""
    column = cst.Attribute(read.model, cst.Name(primary_key_name(read.cls) or ""))
    return cst.Comparison(column, [cst.ComparisonTarget(cst.Equal(), read.key)])

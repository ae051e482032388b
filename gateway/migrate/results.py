"""ORM objects returned by 2.0-style reads, sync or awaited: what they are, what came with them.

`db.get(M, k)`, `db.scalars(select(M)...)`, `db.execute(select(M)...).scalars().all()`,
the gateway's `get_or_404` and `first`, each maybe awaited or wrapped in
`list(...)`: the objects' class, and the relationship paths the statement's
loader options (or `options=[...]`) load. Only the session's `get` of a legacy
function is rewritten by the draft, so only its loads can be added to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import libcst as cst
from sqlalchemy import select

from gateway.database import queries
from gateway.migrate.chains import flatten, loaded_paths
from gateway.migrate.names import dotted
from gateway.migrate.orm import is_mapped
from gateway.migrate.tracking import Held, Loader

Resolve = Callable[[cst.BaseExpression], Any]
ONE = frozenset({"first", "one", "one_or_none", "scalar_one", "scalar_one_or_none", "scalar"})
BY_KEY = (queries.get_or_404,)
BY_STATEMENT = (queries.first,)


def _unwrapped(value: cst.BaseExpression, resolve: Resolve) -> cst.BaseExpression:
    """`value` without `await` and `list(...)` around it."""
    while True:
        if isinstance(value, cst.Await):
            value = value.expression
        elif isinstance(value, cst.Call) and resolve(value.func) is list and len(value.args) == 1:
            value = value.args[0].value
        else:
            return value


def held_result(
    value: cst.BaseExpression,
    loaders: dict[cst.CSTNode, Loader],
    resolve: Resolve,
    line: Callable[[cst.CSTNode], int],
) -> Held | None:
    """What the objects `value` evaluates to are, if it reads ORM objects."""
    value = _unwrapped(value, resolve)
    if not isinstance(value, cst.Call):
        return None
    if value in loaders:
        return Held(loaders[value].root, loaders[value])
    helper = resolve(value.func)
    positional = [arg.value for arg in value.args if arg.keyword is None]
    if helper in BY_KEY and len(positional) >= 2:
        return _got(positional[1], value, resolve, line)
    if helper in BY_STATEMENT and len(positional) >= 2:
        return _selected(positional[1], resolve, line)
    _, links = flatten(value)
    names = [link.name for link in links]
    if not names or names[0] not in ("get", "execute", "scalars", "scalar") or not positional:
        return None
    call = links[0].call
    if names[0] == "get":
        return _got(call.args[0].value, call, resolve, line) if call.args else None
    statement = _unwrapped(call.args[0].value, resolve) if call.args else None
    held = _selected(statement, resolve, line) if statement is not None else None
    if held is None:
        return None
    one = names[-1] in ONE or names[0] == "scalar"
    many = names[0] == "scalars" or "scalars" in names
    return Held(held.model, held.loader, collection=many and not one)


def _got(
    model_expression: cst.BaseExpression,
    call: cst.Call,
    resolve: Resolve,
    line: Callable[[cst.CSTNode], int],
) -> Held | None:
    """`db.get(M, k, options=[...])` or `get_or_404(db, M, k, options=[...])`."""
    model = resolve(model_expression)
    if not is_mapped(model):
        return None
    origin = f"the get on line {line(call)}"
    loader = Loader(origin, model, dotted(model_expression), can_add=False)
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "options":
            for element in getattr(arg.value, "elements", ()):
                loader.loaded.update(loaded_paths(element.value)[0])
    return Held(model, loader)


def _selected(
    statement: cst.BaseExpression, resolve: Resolve, line: Callable[[cst.CSTNode], int]
) -> Held | None:
    """`select(M).where(...).options(...)`: M and what its options load."""
    base, links = flatten(statement)
    start = base if isinstance(base, cst.Call) else None
    if start is None and links:
        start, links = links[0].call, links[1:]
    if start is None or resolve(start.func) is not select or len(start.args) != 1:
        return None
    model = resolve(start.args[0].value)
    if not is_mapped(model):
        return None
    origin = f"the select on line {line(start)}"
    loader = Loader(origin, model, dotted(start.args[0].value), can_add=False)
    for link in links:
        if link.name == "options":
            for arg in link.call.args:
                loader.loaded.update(loaded_paths(arg.value)[0])
    return Held(model, loader)

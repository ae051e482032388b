"""Lean patterns: a few legacy statements that become one query helper answering the schema.

Each pattern is the translation table's lean row, recognised only where the
lean helper answers exactly what the legacy statements did:

    read    v = <M by key k>; if v is None: raise E; return v
            -> return await read_or_404(db, M, k, S)  (E is not_found("m", k))
            -> v = await read_one(db, M, k, S)        (any other E, kept)
    insert  v = M(**values); db.add(v); db.commit(); [db.refresh(v);] return v
            -> return await insert_returning(db, M, values, S)
    update  n = db.query(M).filter(M.pk == k).update(values); if not n: raise E;
            db.commit(); return <M by key k>
            -> return await update_or_404(db, M, k, values, S)
    delete  n = db.query(M).filter(M.pk == k).delete(); if not n: raise E; db.commit()
            -> await delete_or_404(db, M, k)
    page    rows = q.order_by(o).limit(n).offset(k).all(); total = q.count()
            -> rows, total = await read_page(db, q.order_by(o), S, limit=n, offset=k)

S is the route's response schema (for a page, its items' schema) and must be
made of M's columns only; writes need a model without `@validates` or mapper
events (lean writes skip the unit of work) and the pattern's write must be the
function's only one, so that committing when the helper returns, as a lean
write outside a transaction does, commits what the legacy commit did. The
variable must not be read anywhere else. Anything else is left to the ORM
forms of the chains.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import libcst as cst
import libcst.matchers as m

from gateway.migrate.chains import flatten
from gateway.migrate.names import dotted
from gateway.migrate.orm import has_write_hooks, primary_key_name, reads_columns_only
from gateway.migrate.pages import page
from gateway.migrate.shapes import (
    KeyRead,
    Lean,
    Parts,
    Scope,
    answers_404,
    assignment,
    is_none,
    is_not,
    key_equals,
    raise_if,
    read_by_key,
    return_value,
    schema_of,
    session_call,
    written,
)

__all__ = ["Lean", "Scope", "match"]

READ_OR_404 = "return await {read_or_404}({db}, {model}, {key}, {schema})"
READ_ONE = "{name} = await {read_one}({db}, {model}, {key}, {schema})"
INSERT = "return await {insert_returning}({db}, {model}, {values}, {schema})"
UPDATE_OR_404 = "return await {update_or_404}({db}, {model}, {key}, {values}, {schema})"
UPDATE_RETURNING = (
    "{name} = await {update_returning}({db}, {model}, {where}, values={values}, schema={schema})"
)
DELETE_OR_404 = "await {delete_or_404}({db}, {model}, {key})"
DELETE_RETURNING = "{name} = await {delete_returning}({db}, {model}, {where})"


def match(body: Sequence[cst.BaseStatement], index: int, scope: Scope) -> Lean | None:
    """The lean pattern starting at `body[index]`, if one does."""
    for pattern in (_read, _insert, _update, _delete, page):
        found = pattern(list(body[index:]), scope)
        if found is not None:
            return found
    return None


def _read(statements: list[cst.BaseStatement], scope: Scope) -> Lean | None:
    if len(statements) < 3:
        return None
    assigned = assignment(statements[0])
    if assigned is None or scope.reads(assigned[0]) != 2:
        return None
    name, value = assigned
    read = read_by_key(value, scope, {"first", "one_or_none", "get"})
    raised = raise_if(statements[1], is_none(name))
    returned = return_value(statements[2])
    if read is None or raised is None or returned is None or not m.matches(returned, m.Name(name)):
        return None
    schema = schema_of(read, scope)
    if schema is None:
        return None
    parts: Parts = {"db": read.session, "model": read.model, "key": read.key, "schema": schema}
    if answers_404(raised, read, scope):
        answer = written(READ_OR_404, scope, **parts)
        return Lean("read", statements[:3], [answer], returns=schema)
    fetched = written(READ_ONE, scope, name=name, **parts)
    return Lean("read", statements[:1], [fetched], returns=schema)


def _constructed(value: cst.BaseExpression, scope: Scope) -> tuple[Any, cst.BaseExpression] | None:
    """`M(**values)` or `M(a=x, b=y)` for a mapped M: (M, the values as one expression)."""
    if not isinstance(value, cst.Call) or not value.args:
        return None
    cls = scope.resolve(value.func)
    if primary_key_name(cls) is None or has_write_hooks(cls):
        return None
    args = value.args
    if len(args) == 1 and args[0].star == "**":
        return cls, args[0].value
    if any(arg.keyword is None or arg.star for arg in args):
        return None
    elements = [
        cst.DictElement(cst.SimpleString(f'"{arg.keyword.value}"'), arg.value)
        for arg in args
        if arg.keyword is not None
    ]
    return cls, cst.Dict(elements)


def _insert(statements: list[cst.BaseStatement], scope: Scope) -> Lean | None:
    assigned = assignment(statements[0]) if len(statements) >= 4 else None
    if assigned is None or scope.writes != 2:
        return None
    name, value = assigned
    constructed = _constructed(value, scope)
    added = session_call(statements[1], scope, "add")
    committed = session_call(statements[2], scope, "commit")
    if constructed is None or added is None or committed is None:
        return None
    end = 3
    refreshed = session_call(statements[3], scope, "refresh")
    if refreshed is not None and m.matches(refreshed.args[0].value, m.Name(name)):
        end = 4
    returned = return_value(statements[end]) if len(statements) > end else None
    reads = 3 if end == 4 else 2
    if returned is None or not m.matches(returned, m.Name(name)) or scope.reads(name) != reads:
        return None
    if not m.matches(added.args[0].value, m.Name(name)) or len(added.args) != 1:
        return None
    cls, values = constructed
    schema = scope.response_model
    schema_name = scope.schema_name(schema) if reads_columns_only(cls, schema) else None
    db = dotted(added.func.value) if isinstance(added.func, cst.Attribute) else ""
    if schema_name is None:
        return None
    model = value.func if isinstance(value, cst.Call) else value
    parts: Parts = {"db": db, "model": model, "values": values, "schema": schema_name}
    replacement = written(INSERT, scope, **parts)
    return Lean("insert", statements[: end + 1], [replacement], returns=schema_name)


def _by_key_write(
    statement: cst.BaseStatement, scope: Scope, verb: str
) -> tuple[str, KeyRead, cst.Call] | None:
    """`n = db.query(M).filter(M.pk == k).<verb>(...)`: (n, the key read, the verb's call)."""
    assigned = assignment(statement)
    if assigned is None or not isinstance(assigned[1], cst.Call):
        return None
    name, call = assigned
    _base, links = flatten(call)
    if not links or links[-1].name != verb:
        return None
    read = read_by_key(call, scope, {verb})
    if read is None or has_write_hooks(read.cls):
        return None
    return name, read, links[-1].call


def _update(statements: list[cst.BaseStatement], scope: Scope) -> Lean | None:
    found = _by_key_write(statements[0], scope, "update") if len(statements) >= 4 else None
    if found is None or scope.writes != 2:
        return None
    name, read, call = found
    raised = raise_if(statements[1], is_not(name))
    committed = session_call(statements[2], scope, "commit")
    returned = return_value(statements[3])
    read_back = (
        read_by_key(returned, scope, {"first", "one", "one_or_none", "get"}) if returned else None
    )
    if raised is None or committed is None or read_back is None or len(call.args) != 1:
        return None
    same = read_back.cls is read.cls and read_back.key.deep_equals(read.key)
    schema = schema_of(read, scope)
    if not same or schema is None or scope.reads(name) != 1:
        return None
    values = call.args[0].value
    parts: Parts = {
        "db": read.session,
        "model": read.model,
        "key": read.key,
        "schema": schema,
        "values": values,
    }
    if answers_404(raised, read, scope):
        answer = written(UPDATE_OR_404, scope, **parts)
        return Lean("update", statements[:4], [answer], returns=schema)
    updated = written(UPDATE_RETURNING, scope, name=name, where=key_equals(read), **parts)
    answer = cst.parse_statement(f"return {name}[0]")
    return Lean("update", statements[:4], [updated, statements[1], answer], returns=schema)


def _delete(statements: list[cst.BaseStatement], scope: Scope) -> Lean | None:
    found = _by_key_write(statements[0], scope, "delete") if len(statements) >= 3 else None
    if found is None or scope.writes != 2:
        return None
    name, read, call = found
    raised = raise_if(statements[1], is_not(name))
    committed = session_call(statements[2], scope, "commit")
    if raised is None or committed is None or call.args or scope.reads(name) != 1:
        return None
    parts: Parts = {"db": read.session, "model": read.model, "key": read.key}
    if answers_404(raised, read, scope):
        deleted = written(DELETE_OR_404, scope, **parts)
        return Lean("delete", statements[:3], [deleted])
    counted = written(DELETE_RETURNING, scope, name=name, where=key_equals(read), **parts)
    return Lean("delete", statements[:3], [counted, statements[1]])

"""The page pattern: a page of a query and its total, as one lean read or one ORM call.

    rows = q.order_by(o).limit(n).offset(k).all(); total = q.count()
    -> rows, total = await read_page(db, q.order_by(o), S, limit=n, offset=k)

S is the schema of the items of the route's response model (`Page[UserRead]`
lists `UserRead`): made of the model's columns, the page is read lean, and
the return's `Page(...)` becomes `Page[UserRead](...)`, the very class the
route declares; otherwise `list_page` reads ORM objects.
"""

from __future__ import annotations

from typing import Any

import libcst as cst
import libcst.matchers as m

from gateway.migrate.chains import flatten
from gateway.migrate.orm import reads_columns_only
from gateway.migrate.shapes import Lean, Parts, Scope, assignment, return_value, written

READ_PAGE = (
    "{rows}, {total} = await {read_page}("
    "{db}, {statement}, {schema}, limit={limit}, offset={offset})"
)
LIST_PAGE = "{rows}, {total} = await {list_page}({db}, {statement}, limit={limit}, offset={offset})"


def _paged(
    value: cst.BaseExpression, scope: Scope
) -> tuple[str, cst.Call, dict[str, cst.Arg]] | None:
    """`q.order_by(...).limit(n).offset(k).all()`: (q, the order_by call, limit and offset)."""
    base, links = flatten(value)
    names = [link.name for link in links]
    query = base.value if isinstance(base, cst.Name) else ""
    chain = scope.queries.get(query)
    if chain is None or chain.model is None or chain.joined:
        return None
    if names not in (
        ["order_by", "limit", "offset", "all"],
        ["order_by", "offset", "limit", "all"],
    ):
        return None
    page = {link.name: link.call.args[0] for link in links[1:3] if len(link.call.args) == 1}
    return (query, links[0].call, page) if len(page) == 2 else None


def _counted(statement: cst.BaseStatement, query: str) -> str | None:
    """`total = q.count()`: total."""
    assigned = assignment(statement)
    if assigned is None:
        return None
    base, links = flatten(assigned[1])
    if m.matches(base, m.Name(query)) and [link.name for link in links] == ["count"]:
        return assigned[0]
    return None


def page(statements: list[cst.BaseStatement], scope: Scope) -> Lean | None:
    if len(statements) < 2:
        return None
    for rows_at, count_at in ((0, 1), (1, 0)):
        assigned = assignment(statements[rows_at])
        paged = _paged(assigned[1], scope) if assigned is not None else None
        if assigned is None or paged is None:
            continue
        total = _counted(statements[count_at], paged[0])
        if total is not None and scope.reads(assigned[0]) == 1 and scope.reads(total) == 1:
            return _page_of(statements, scope, assigned[0], total, paged)
    return None


def _page_of(
    statements: list[cst.BaseStatement],
    scope: Scope,
    rows: str,
    total: str,
    paged: tuple[str, cst.Call, dict[str, cst.Arg]],
) -> Lean | None:
    query, ordered, page = paged
    db = scope.queries[query].session
    call, keyword = _returned_with(statements[2:], rows)
    if call is None or keyword is None:
        return None
    schema = _items_schema(scope.response_model, keyword)
    statement = ordered.with_changes(func=ordered.func.with_changes(value=cst.Name(query)))
    parts: Parts = {
        "db": db,
        "statement": statement,
        "limit": page["limit"].value,
        "offset": page["offset"].value,
    }
    lean = reads_columns_only(scope.queries[query].model, schema)
    name = scope.schema_name(schema) if lean else None
    if name is None:
        listed = written(LIST_PAGE, scope, rows=rows, total=total, **parts)
        return Lean("page", statements[:2], [listed])
    replacement = written(READ_PAGE, scope, rows=rows, total=total, schema=name, **parts)
    parametrized = {}
    model_name = scope.schema_name(scope.response_model)
    origin = getattr(scope.response_model, "__pydantic_generic_metadata__", {}).get("origin")
    if origin is not None and scope.resolve(call.func) is origin and model_name is not None:
        parametrized[call] = model_name
    return Lean("page", statements[:2], [replacement], parametrized=parametrized)


def _returned_with(
    statements: list[cst.BaseStatement], rows: str
) -> tuple[cst.Call | None, str | None]:
    """The call a later `return Page(items=rows, ...)` makes, and the keyword `rows` fills."""
    for statement in statements:
        returned = return_value(statement)
        if isinstance(returned, cst.Call):
            for arg in returned.args:
                if arg.keyword is not None and m.matches(arg.value, m.Name(rows)):
                    return returned, arg.keyword.value
    return None, None


def _items_schema(response_model: Any, keyword: str) -> Any:
    """The schema of each item the response model's `keyword` field lists."""
    fields = getattr(response_model, "model_fields", {})
    annotation = fields[keyword].annotation if keyword in fields else None
    arguments: tuple[Any, ...] = getattr(annotation, "__args__", ())
    return arguments[0] if len(arguments) == 1 else None

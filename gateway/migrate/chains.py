"""`Query` chains and their 2.0 form: `db.query(M).filter(...).first()` read, then rewritten.

A chain starts at the session's `.query(...)`, or at a variable holding one,
and goes through builders (`filter`, `order_by`, `options` ...) to at most one
method that runs it (`all`, `first`, `count` ...). Builders map one to one
onto `select()` (`filter` becomes `where`); the run becomes an awaited
`execute` or a query helper, as the translation table says. A method without
a known `select()` form leaves the chain to a person.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import libcst as cst
from libcst.helpers import parse_template_expression

from gateway.migrate.names import Imports, dotted
from gateway.migrate.orm import is_mapped
from gateway.migrate.tracking import Loader

BUILDERS = {
    "filter": "where",
    "where": "where",
    "filter_by": "filter_by",
    "order_by": "order_by",
    "limit": "limit",
    "offset": "offset",
    "join": "join",
    "outerjoin": "outerjoin",
    "group_by": "group_by",
    "having": "having",
    "distinct": "distinct",
    "options": "options",
    "with_for_update": "with_for_update",
    "select_from": "select_from",
    "execution_options": "execution_options",
    "with_entities": "with_only_columns",
    "correlate": "correlate",
}
SELECTABLES = frozenset({"subquery", "scalar_subquery", "cte", "exists"})
RUNS = frozenset(
    {"all", "first", "one", "one_or_none", "scalar", "count", "get", "update", "delete"}
)
LOADERS = frozenset(
    {"joinedload", "selectinload", "subqueryload", "immediateload", "contains_eager", "defaultload"}
)
PARSER = cst.PartialParserConfig()
NO_SPACES = cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace(""))  # `options=[...]`
JOINED = frozenset({"joinedload", "contains_eager"})  # rows repeat: results need .unique()
WHERE_ONLY = frozenset({"filter", "where", "filter_by"})
BY_MODEL = frozenset(
    {"get", "update", "delete"}
)  # rebuilt on the model: db.get, update(), delete()


@dataclass(frozen=True)
class Link:
    """One method call of a chain."""

    name: str
    call: cst.Call


def flatten(node: cst.BaseExpression) -> tuple[cst.BaseExpression, list[Link]]:
    """The expression a chain of method calls starts from, and its calls, first one first."""
    links: list[Link] = []
    while isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        links.append(Link(node.func.attr.value, node))
        node = node.func.value
    links.reverse()
    return node, links


@dataclass
class Chain:
    """A `Query` chain as the analysis read it; `problem` says why it stays as it is."""

    session: str
    starts: bool  # at the session's .query(...); else it continues a query variable
    model: Any  # the one mapped class it selects, or None (columns, several entities)
    loader: Loader  # what its options load, and the loads the draft adds
    builders: list[str] = field(default_factory=list)
    run: str | None = None  # the method that runs it; None for a query kept in a variable
    joined: bool = False
    problem: str | None = None

    def shape(self) -> str:
        """`query.filter.first` and the like: what the chain does, without its arguments."""
        start = ["query"] if self.starts else []
        return ".".join([*start, *self.builders, *([self.run] if self.run else [])])


def read_chain(
    base: str,
    links: list[Link],
    sessions: set[str],
    queries: dict[str, Chain],
    resolve: Callable[[cst.BaseExpression], Any],
    origin: str,
) -> tuple[Chain, int] | None:
    """The chain `base.<links>` starts or continues, and the index of its last link."""
    if base in sessions and links[0].name == "query":
        arguments = links[0].call.args
        entity = resolve(arguments[0].value) if len(arguments) == 1 else None
        model = entity if is_mapped(entity) else None
        root_name = dotted(arguments[0].value) if model is not None else None
        chain, first = Chain(base, True, model, Loader(origin, model, root_name)), 1
    elif base in queries:
        known = queries[base]
        loader = Loader(origin, known.loader.root, known.loader.root_name, set(known.loader.loaded))
        chain = Chain(known.session, False, known.model, loader, joined=known.joined)
        chain.builders, first = [], 0
    else:
        return None
    end = first - 1
    for end in range(first, len(links)):
        if not _step(chain, links[end]):
            break
    if chain.run in BY_MODEL:
        chain.problem = chain.problem or _by_model_problem(chain, links[end].call)
    return chain, end


def _step(chain: Chain, link: Link) -> bool:
    """Take `link` into the chain; False when it ends the chain (a run, or the unknown)."""
    if link.name in SELECTABLES:
        chain.builders.append(link.name)
        return False
    if link.name in RUNS:
        chain.run = link.name
        return False
    if link.name not in BUILDERS:
        chain.problem = f"`.{link.name}()` has no select() form the assistant knows"
        return False
    chain.builders.append(link.name)
    if link.name == "with_entities":
        chain.model = None
    if link.name == "options":
        for arg in link.call.args:
            paths, joined = loaded_paths(arg.value)
            chain.loader.loaded.update(paths)
            chain.joined = chain.joined or joined
    return True


def _by_model_problem(chain: Chain, run: cst.Call) -> str | None:
    """Why `.get()`, `.update()` or `.delete()` cannot be rebuilt on the model, if it cannot."""
    allowed = {"options"} if chain.run == "get" else WHERE_ONLY
    wanted_args = 0 if chain.run == "delete" else 1
    if not chain.starts or chain.model is None or not set(chain.builders) <= allowed:
        return f"`.{chain.run}()` on this query: rewrite it by hand on the model"
    if len(run.args) != wanted_args or any(arg.keyword or arg.star for arg in run.args):
        return f"`.{chain.run}()` with these arguments: rewrite it by hand on the model"
    return None


def loaded_paths(option: cst.BaseExpression) -> tuple[set[tuple[str, ...]], bool]:
    """The relationship paths a loader option loads, and whether it joins them in."""
    base, links = flatten(option)
    calls = ([Link(_callee(base), base)] if isinstance(base, cst.Call) else []) + links
    path: tuple[str, ...] = ()
    paths, joined = set(), False
    for link in calls:
        if link.name not in LOADERS or not link.call.args:
            break
        target = link.call.args[0].value
        if not isinstance(target, cst.Attribute):
            break
        path = (*path, target.attr.value)
        paths.add(path)
        joined = joined or link.name in JOINED
    return paths, joined


def _callee(call: cst.Call) -> str:
    func = call.func
    if isinstance(func, cst.Name):
        return func.value
    return func.attr.value if isinstance(func, cst.Attribute) else ""


def build(node: cst.Call, chain: Chain, imports: Imports) -> cst.BaseExpression:
    """The 2.0 form of the chain ending at `node` (a call of the chain, maybe already rewritten)."""
    base, links = flatten(node)
    start, rest = (links[0].call, links[1:]) if chain.starts else (None, links)
    if chain.run in BY_MODEL and start is not None:
        return _by_model(chain, start, rest, imports)
    statement: cst.BaseExpression = base
    if start is not None:
        statement = cst.Call(cst.Name(imports.use("sqlalchemy", "select")), start.args)
    for link in rest[:-1] if chain.run else rest:
        statement = _renamed(link, statement)
    if chain.loader.added:
        statement = with_options(statement, chain.loader.options())
    if chain.run is None:
        return statement
    return ran(chain, statement, imports)


def _renamed(link: Link, statement: cst.BaseExpression) -> cst.Call:
    func = link.call.func
    if not isinstance(func, cst.Attribute):
        raise TypeError("a chain link calls an attribute")
    renamed = func.with_changes(value=statement, attr=cst.Name(BUILDERS[link.name]))
    return link.call.with_changes(func=renamed)


TEMPLATES = {
    ("all", True): "(await {db}.execute({statement})).scalars().all()",
    ("all", False): "(await {db}.execute({statement})).all()",
    ("first", True): "await {first}({db}, {statement})",
    ("first", False): "(await {db}.execute({statement}.limit(1))).first()",
    ("one", True): "(await {db}.execute({statement})).scalars().one()",
    ("one", False): "(await {db}.execute({statement})).one()",
    ("one_or_none", True): "(await {db}.execute({statement})).scalars().one_or_none()",
    ("one_or_none", False): "(await {db}.execute({statement})).one_or_none()",
    ("scalar", True): "(await {db}.execute({statement})).scalar_one_or_none()",
    ("scalar", False): "(await {db}.execute({statement})).scalar_one_or_none()",
    ("count", True): "await {count}({db}, {statement})",
    ("count", False): "await {count}({db}, {statement})",
}
UNIQUE_TEMPLATES = {
    "all": "(await {db}.execute({statement})).unique().scalars().all()",
    "first": "(await {db}.execute({statement}.limit(1))).unique().scalars().first()",
    "one": "(await {db}.execute({statement})).unique().scalars().one()",
    "one_or_none": "(await {db}.execute({statement})).unique().scalars().one_or_none()",
}


def ran(chain: Chain, statement: cst.BaseExpression, imports: Imports) -> cst.BaseExpression:
    """The awaited form of running `statement` the way the chain ran its query."""
    run, single = chain.run or "", chain.model is not None
    template = UNIQUE_TEMPLATES.get(run) if chain.joined and single else None
    template = template or TEMPLATES[(run, single)]
    parts: dict[str, cst.BaseExpression] = {"db": cst.Name(chain.session), "statement": statement}
    for name in ("first", "count"):
        if "{" + name + "}" in template:
            parts[name] = cst.Name(imports.use("gateway.database.queries", name))
    return parse_template_expression(template, PARSER, **parts)


def _by_model(
    chain: Chain, start: cst.Call, rest: list[Link], imports: Imports
) -> cst.BaseExpression:
    """`.get(k)`, `.update(v)`, `.delete()`: `db.get`, `update()`, `delete()` on the model."""
    model, db = start.args[0].value, cst.Name(chain.session)
    builders, run = rest[:-1], rest[-1].call
    if chain.run == "get":
        options = [cst.Element(a.value) for link in builders for a in link.call.args]
        options += [cst.Element(option) for option in chain.loader.options()]
        arguments = [cst.Arg(model), run.args[0].with_changes(comma=cst.MaybeSentinel.DEFAULT)]
        if options:
            arguments.append(
                cst.Arg(cst.List(options), keyword=cst.Name("options"), equal=NO_SPACES)
            )
        return cst.Await(cst.Call(cst.Attribute(db, cst.Name("get")), arguments))
    verb = imports.use("sqlalchemy", "update" if chain.run == "update" else "delete")
    statement: cst.BaseExpression = cst.Call(cst.Name(verb), [cst.Arg(model)])
    for link in builders:
        statement = _renamed(link, statement)
    if chain.run == "update":
        statement = cst.Call(cst.Attribute(statement, cst.Name("values")), [run.args[0]])
    return parse_template_expression(
        "(await {db}.execute({statement})).rowcount", db=db, statement=statement
    )


def with_options(node: cst.BaseExpression, options: list[cst.BaseExpression]) -> cst.Call:
    """`node.options(...)`; for a `db.get(...)` call, its `options=[...]` argument extended."""
    if (
        isinstance(node, cst.Call)
        and _callee(node) == "get"
        and isinstance(node.func, cst.Attribute)
    ):
        given = [a for a in node.args if a.keyword is not None and a.keyword.value == "options"]
        listed = given[0].value if given and isinstance(given[0].value, cst.List) else None
        elements = [*(listed.elements if listed else ()), *(cst.Element(o) for o in options)]
        kept = [a for a in node.args if a not in given]
        argument = cst.Arg(cst.List(elements), keyword=cst.Name("options"), equal=NO_SPACES)
        return node.with_changes(args=[*kept, argument])
    return cst.Call(cst.Attribute(node, cst.Name("options")), [cst.Arg(o) for o in options])


FORMS = {
    "first": "await first(db, select(M).where(...)), or get_or_404",
    "all": "(await db.execute(select(M).where(...))).scalars().all()",
    "one": "(await db.execute(select(M).where(...))).scalars().one()",
    "one_or_none": "(await db.execute(select(M).where(...))).scalars().one_or_none()",
    "count": "await count(db, select(M).where(...))",
    "get": "await db.get(M, key), or await get_or_404(db, M, key)",
    "update": "await db.execute(update(M).where(...).values(...))",
    "delete": "await db.execute(delete(M).where(...))",
    "scalar": "(await db.execute(select(...))).scalar_one_or_none()",
    "": "select(M).where(...)",
}

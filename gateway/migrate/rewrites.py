"""The draft's rewrites: each turns a node, as the draft has it by then, into its async form.

The analysis decides which node changes and how; the draft applies the
rewrite to the node after its children were rewritten, so rewrites compose
(an awaited session call whose argument is a rebuilt `select()`).
"""

from __future__ import annotations

import libcst as cst

from gateway.migrate import chains
from gateway.migrate.chains import Chain
from gateway.migrate.facts import Rewrite
from gateway.migrate.names import Imports
from gateway.migrate.tracking import Loader


def built(chain: Chain, imports: Imports) -> Rewrite:
    """`db.query(...)...` as its `select()` form (`gateway.migrate.chains`)."""

    def rewrite(node: cst.CSTNode) -> cst.CSTNode:
        if not isinstance(node, cst.Call):
            return node
        return chains.build(node, chain, imports)

    return rewrite


def awaited(loader: Loader | None = None) -> Rewrite:
    """`await call`; a `db.get(...)` with the loads the analysis added to it."""

    def rewrite(node: cst.CSTNode) -> cst.CSTNode:
        if not isinstance(node, cst.Call):
            return node
        if loader is not None and loader.added:
            node = chains.with_options(node, loader.options())
        return cst.Await(node)

    return rewrite


def subscripted(name: str) -> Rewrite:
    """`Page(...)` as `Page[UserRead](...)`: the very class the route declares."""

    def rewrite(node: cst.CSTNode) -> cst.CSTNode:
        if not isinstance(node, cst.Call):
            return node
        return node.with_changes(func=cst.parse_expression(name))

    return rewrite


def asynchronous_with(node: cst.CSTNode) -> cst.CSTNode:
    """`with db.begin():` as `async with db.begin():`."""
    return (
        node.with_changes(asynchronous=cst.Asynchronous()) if isinstance(node, cst.With) else node
    )


def sleep(imports: Imports) -> Rewrite:
    """`time.sleep(s)` as `await asyncio.sleep(s)`."""

    def rewrite(node: cst.CSTNode) -> cst.CSTNode:
        if not isinstance(node, cst.Call):
            return node
        return cst.Await(node.with_changes(func=cst.Name(imports.use("asyncio", "sleep"))))

    return rewrite


def session_param(imports: Imports, provided: bool) -> Rewrite:
    """A session parameter as `AsyncDB` (a dependency gives it) or `AsyncSession` (a helper's)."""

    def rewrite(node: cst.CSTNode) -> cst.CSTNode:
        if not isinstance(node, cst.Param):
            return node
        if not provided:
            if node.annotation is None:
                return node
            name = imports.use("sqlalchemy.ext.asyncio", "AsyncSession")
            return node.with_changes(annotation=cst.Annotation(cst.Name(name)))
        name = imports.use("gateway", "AsyncDB")
        return node.with_changes(
            annotation=cst.Annotation(cst.Name(name)), default=None, equal=cst.MaybeSentinel.DEFAULT
        )

    return rewrite


def annotation(schema: str) -> Rewrite:
    """A return annotation naming the model, as the schema a lean helper answers."""

    def rewrite(node: cst.CSTNode) -> cst.CSTNode:
        if not isinstance(node, cst.Annotation):
            return node
        return node.with_changes(annotation=cst.parse_expression(schema))

    return rewrite


def keyword_only_from(name: str, typed: Rewrite) -> Rewrite:
    """Parameters keyword-only from `name` on, `name` typed by `typed`: `AsyncDB` has no
    default, and a parameter without one cannot follow parameters with defaults."""

    def rewrite(node: cst.CSTNode) -> cst.CSTNode:
        if not isinstance(node, cst.Parameters) or not isinstance(node.star_arg, cst.MaybeSentinel):
            return node
        names = [param.name.value for param in node.params]
        if name not in names:
            return node
        at = names.index(name)
        moved = [*node.params[at:], *node.kwonly_params]
        session = typed(moved[0])
        moved[0] = session if isinstance(session, cst.Param) else moved[0]
        moved[-1] = moved[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return node.with_changes(
            params=node.params[:at], star_arg=cst.ParamStar(), kwonly_params=moved
        )

    return rewrite

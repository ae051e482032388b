"""Small questions about code: the names it reads, the session writes it makes, a dependency.

Answered on the tree alone, before or while a function is read.
"""

from __future__ import annotations

from collections import Counter

import libcst as cst

WRITES = frozenset(
    {"add", "add_all", "delete", "merge", "flush", "commit", "execute", "update",
     "bulk_save_objects", "bulk_insert_mappings", "bulk_update_mappings"}
)  # fmt: skip


class Counting(cst.CSTVisitor):
    """How often a function reads each name, and how many calls in it may write.

    A call may write when its method is one a session writes with, whatever it
    is called on: counting one too many only keeps a lean pattern away.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reads: Counter[str] = Counter()
        self.writes = 0

    def visit_Name(self, node: cst.Name) -> None:
        self.reads[node.value] += 1

    def visit_Assign(self, node: cst.Assign) -> bool:
        for target in node.targets:
            if not isinstance(target.target, cst.Name):
                target.target.visit(self)
        node.value.visit(self)
        return False

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        node.value.visit(self)
        return False

    def visit_Arg(self, node: cst.Arg) -> bool:
        node.value.visit(self)
        return False

    def visit_Param(self, node: cst.Param) -> bool:
        return False

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Attribute) and node.func.attr.value in WRITES:
            self.writes += 1


def session_method(node: cst.BaseExpression, sessions: set[str]) -> tuple[str, str] | None:
    """(session, method) for `db.method(...)` on one of `sessions`."""
    if not (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute)):
        return None
    owner = node.func.value
    if isinstance(owner, cst.Name) and owner.value in sessions:
        return owner.value, node.func.attr.value
    return None


def names_in(node: cst.CSTNode) -> list[str]:
    """The names `node` binds or reads, in order (attribute and keyword names left out)."""
    found: list[str] = []

    class Names(cst.CSTVisitor):
        def visit_Name(self, name: cst.Name) -> None:
            found.append(name.value)

        def visit_Attribute(self, attribute: cst.Attribute) -> bool:
            attribute.value.visit(self)
            return False  # `x.count` reads no `count`

        def visit_Arg(self, arg: cst.Arg) -> bool:
            arg.value.visit(self)
            return False  # nor does `f(count=1)`

    node.visit(Names())
    return found


def dependency_name(param: cst.Param) -> str | None:
    """The imported name a parameter's dependency is written with (`ProjectDep`, `get_x`)."""
    annotation = param.annotation.annotation if param.annotation else None
    if isinstance(annotation, cst.Name):
        return annotation.value
    default = param.default
    if (
        isinstance(default, cst.Call)
        and default.args
        and isinstance(default.args[0].value, cst.Name)
    ):
        return default.args[0].value.value
    return None

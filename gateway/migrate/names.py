"""The names a draft takes from other modules, each under a name its module leaves free.

A draft needs `select`, `AsyncDB` or a query helper such as `count`; a module
that already imports it from the same place reuses that import, and one that
binds the name to something else gets it under another name
(`queries_count`), so no name of the legacy module changes meaning.
"""

from __future__ import annotations

import libcst as cst

from gateway.migrate.syntax import names_in


class Imports:
    """What a draft imports besides the legacy module's own imports."""

    def __init__(self, imported: dict[str, tuple[str, str]], bound: set[str]) -> None:
        self.imported = imported  # local name -> (module, name) of the legacy module's imports
        self.bound = bound  # every other name the module binds or uses
        self.added: dict[tuple[str, str], str] = {}  # (module, name) -> local name

    def use(self, module: str, name: str) -> str:
        """The local name under which the draft refers to `module.name`, imported if needed."""
        wanted = (module, name)
        if wanted in self.added:
            return self.added[wanted]
        for local, source in self.imported.items():
            if source == wanted:
                return local
        local = name
        if local in self.imported or local in self.bound:
            local = f"{module.rsplit('.', 1)[-1]}_{name}"
        self.added[wanted] = local
        return local


def dotted(node: cst.BaseExpression) -> str:
    """`a.b.c` for an attribute chain of names; empty for anything else."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        inner = dotted(node.value)
        return f"{inner}.{node.attr.value}" if inner else ""
    return ""


def imported_names(tree: cst.Module) -> dict[str, tuple[str, str]]:
    """Each name the module's top-level `from m import n [as a]` binds: a -> (m, n)."""
    found: dict[str, tuple[str, str]] = {}
    for statement in tree.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if not isinstance(small, cst.ImportFrom) or isinstance(small.names, cst.ImportStar):
                continue
            module = dotted(small.module) if small.module is not None else ""
            for alias in small.names:
                name = dotted(alias.name)
                local = alias.asname.name if alias.asname is not None else None
                found[dotted(local) if isinstance(local, cst.Name) else name] = (module, name)
    return found


def used_names(tree: cst.CSTNode) -> set[str]:
    """Every name the code binds or reads (attribute and keyword names left out)."""
    return set(names_in(tree))

"""A draft's imports: what it no longer uses goes, what it now uses comes, sorted as isort would.

Only names the legacy code used and the draft no longer does are removed
(`SyncDB`, `not_found` once the lean helpers raise it); a name imported but
unused before stays. A dependency with an async twin is imported from the
twin's module instead. A new name joins an existing `from module import` line
when there is one, else gets a line of its own in its section (standard
library, third party, first party), in module order, wrapped in parentheses
when it would be longer than the line length.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import libcst as cst

from gateway.migrate.facts import ModuleFacts
from gateway.migrate.layout import leading
from gateway.migrate.names import dotted, used_names

SECTIONS = ("__future__", "stdlib", "thirdparty", "firstparty")
FirstParty = Callable[[str], bool]  # whether a top-level package is the project's own


def fixed(
    draft: cst.Module, legacy: cst.Module, facts: ModuleFacts, width: int, first_party: FirstParty
) -> cst.Module:
    """`draft` with its imports settled (see the module's docstring)."""
    used_before = used_names(_without_imports(legacy))
    used_now = used_names(_without_imports(draft))
    dropped = {name for name in used_before if name not in used_now} | set(facts.moved)
    wanted: dict[str, list[tuple[str, str | None]]] = {}
    for (module, name), local in facts.imports.added.items():
        if local in used_now:
            wanted.setdefault(module, []).append((name, None if local == name else local))
    for name, module in facts.moved.items():
        wanted.setdefault(module, []).append((name, None))
    kept: list[cst.BaseStatement] = []
    orphaned: cst.SimpleStatementLine | None = None  # an import removed whole: its blank lines stay
    for statement in draft.body:
        trimmed = _trimmed(statement, dropped)
        if trimmed is None:
            orphaned = orphaned or statement  # type: ignore[assignment]
            continue
        if orphaned is not None and not leading(trimmed):
            trimmed = trimmed.with_changes(leading_lines=orphaned.leading_lines)
        orphaned = None
        kept.append(trimmed)
    for module, names in sorted(wanted.items()):
        kept = _added(kept, module, names, first_party, width)
    return draft.with_changes(body=kept)


def _without_imports(tree: cst.Module) -> cst.Module:
    return tree.with_changes(body=[s for s in tree.body if _import_of(s) is None])


def _import_of(statement: cst.CSTNode) -> cst.Import | cst.ImportFrom | None:
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        small = statement.body[0]
        if isinstance(small, cst.Import | cst.ImportFrom):
            return small
    return None


def _trimmed(statement: cst.BaseStatement, dropped: set[str]) -> cst.BaseStatement | None:
    """The import without the `dropped` names (None when none is left); other statements as is."""
    found = _import_of(statement)
    if found is None or isinstance(found.names, cst.ImportStar):
        return statement
    aliases = [alias for alias in found.names if _local(alias) not in dropped]
    if len(aliases) == len(found.names):
        return statement
    if not aliases:
        return None
    aliases[-1] = aliases[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    if isinstance(found, cst.ImportFrom) and len(aliases) == 1:
        found = found.with_changes(lpar=None, rpar=None)
    return statement.with_changes(body=[found.with_changes(names=aliases)])


def _local(alias: cst.ImportAlias) -> str:
    if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
        return alias.asname.name.value
    return (
        dotted(alias.name).split(".")[0]
        if isinstance(alias.name, cst.Attribute)
        else dotted(alias.name)
    )


def section(module: str, first_party: FirstParty) -> int:
    top = module.split(".")[0]
    if top == "__future__":
        return 0
    if top in sys.stdlib_module_names:
        return 1
    return 3 if first_party(top) else 2


def order(name: str) -> tuple[int, str]:
    """isort's order by type: CONSTANTS, then Classes, then functions."""
    if name.isupper() and len(name) > 1:
        return 0, name
    return (1 if name[:1].isupper() else 2), name


def _added(
    body: list[cst.BaseStatement],
    module: str,
    names: list[tuple[str, str | None]],
    first_party: FirstParty,
    width: int,
) -> list[cst.BaseStatement]:
    for index, statement in enumerate(body):
        found = _import_of(statement)
        if isinstance(found, cst.ImportFrom) and found.relative == () and _module(found) == module:
            merged = _import_line(module, [*_names(found), *names], width)
            body[index] = merged.with_changes(leading_lines=leading(statement))
            return body
    return _inserted(body, _import_line(module, names, width), module, first_party)


def _module(found: cst.ImportFrom) -> str:
    return dotted(found.module) if found.module is not None else ""


def _names(found: cst.ImportFrom) -> list[tuple[str, str | None]]:
    if isinstance(found.names, cst.ImportStar):
        return []
    listed = []
    for alias in found.names:
        asname = alias.asname.name if alias.asname is not None else None
        listed.append((dotted(alias.name), asname.value if isinstance(asname, cst.Name) else None))
    return listed


def _import_line(
    module: str, names: list[tuple[str, str | None]], width: int
) -> cst.SimpleStatementLine:
    unique = sorted(set(names), key=lambda pair: order(pair[0]))
    written = [name if alias is None else f"{name} as {alias}" for name, alias in unique]
    flat = f"from {module} import {', '.join(written)}"
    if len(flat) <= width:
        return cst.parse_statement(flat + "\n")  # type: ignore[return-value]
    listed = "".join(f"    {name},\n" for name in written)
    return cst.parse_statement(f"from {module} import (\n{listed})\n")  # type: ignore[return-value]


def _key(statement: cst.BaseStatement, first_party: FirstParty) -> tuple[int, int, str] | None:
    """Where an import line sorts: section, then `import x` lines before `from x import` ones."""
    found = _import_of(statement)
    if found is None:
        return None
    if isinstance(found, cst.Import):
        module = dotted(found.names[0].name)
        return section(module, first_party), 0, module
    if found.relative:
        return len(SECTIONS), 1, _module(found)  # relative imports come last
    module = _module(found)
    return section(module, first_party), 1, module


def _inserted(
    body: list[cst.BaseStatement],
    line: cst.SimpleStatementLine,
    module: str,
    first_party: FirstParty,
) -> list[cst.BaseStatement]:
    """`body` with `line` among the imports at the top, where its key sorts it."""
    key = (section(module, first_party), 1, module)
    imports = [(i, k) for i, s in enumerate(body) if (k := _key(s, first_party)) is not None]
    blank = [cst.EmptyLine()]
    if not imports:
        at = 1 if body and _is_docstring(body[0]) else 0
        return [*body[:at], line.with_changes(leading_lines=blank if at else []), *body[at:]]
    before = [(i, k) for i, k in imports if k <= key]
    later = [(i, k) for i, k in imports if k > key]
    if before:
        at, previous = before[-1][0] + 1, before[-1][1]
        starts_section = previous[0] != key[0]
        body.insert(at, line.with_changes(leading_lines=blank if starts_section else []))
        if starts_section and later and later[0][1][0] == key[0]:
            body[at + 1] = body[at + 1].with_changes(leading_lines=[])
        return body
    first, first_key = imports[0]
    shown = body[first]
    body.insert(first, line.with_changes(leading_lines=leading(shown)))
    body[first + 1] = shown.with_changes(leading_lines=[] if first_key[0] == key[0] else blank)
    return body


def _is_docstring(statement: cst.BaseStatement) -> bool:
    small = statement.body[0] if isinstance(statement, cst.SimpleStatementLine) else None
    return isinstance(small, cst.Expr) and isinstance(
        small.value, cst.SimpleString | cst.ConcatenatedString
    )

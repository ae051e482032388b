"""Python source read with libcst: a module's tree, its metadata, and where its functions are.

libcst keeps every comment and blank line, so a draft made from a tree reads
like the module it came from. Each file is parsed once per run. The runtime
module beside the tree resolves the names a function uses (a model, a helper)
to the objects the app imported; nothing in a function body is ever run.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import sysconfig
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

MISSING = object()
GATEWAY_PACKAGE = Path(__file__).resolve().parent.parent


@dataclass
class Source:
    """One parsed file and the module it was imported as."""

    path: Path
    module: ModuleType | None
    wrapper: MetadataWrapper
    functions: dict[str, cst.FunctionDef] = field(default_factory=dict)  # top level, by name
    _positions: Mapping[cst.CSTNode, CodeRange] | None = None

    @property
    def tree(self) -> cst.Module:
        return self.wrapper.module

    def line(self, node: cst.CSTNode) -> int:
        """The line `node` starts on (for a decorated function, its `def` line)."""
        if isinstance(node, cst.FunctionDef):
            node = node.name
        return self._position(node).start.line

    def column(self, node: cst.CSTNode) -> int:
        return self._position(node).start.column

    def _position(self, node: cst.CSTNode) -> CodeRange:
        if self._positions is None:
            self._positions = self.wrapper.resolve(PositionProvider)
        return self._positions[node]

    def code(self, node: cst.CSTNode) -> str:
        return self.tree.code_for_node(node)

    def value(self, name: str) -> Any:
        """What `name` is bound to at the top of the module, or MISSING."""
        return getattr(self.module, name, MISSING) if self.module is not None else MISSING


_parsed: dict[Path, tuple[tuple[int, int], Source]] = {}


def source(path: Path, module: ModuleType | None = None) -> Source:
    """The parsed file at `path` (parsed again only once it changed), with its runtime module."""
    path = path.resolve()
    stat = path.stat()
    version = (stat.st_mtime_ns, stat.st_size)
    known = _parsed.get(path)
    if known is None or known[0] != version:
        wrapper = MetadataWrapper(cst.parse_module(path.read_text()))
        functions = {
            statement.name.value: statement
            for statement in wrapper.module.body
            if isinstance(statement, cst.FunctionDef)
        }
        known = _parsed[path] = (version, Source(path, module, wrapper, functions))
    found = known[1]
    if found.module is None and module is not None:
        found.module = module
    return found


def source_of(function: Callable[..., Any]) -> Source | None:
    """The parsed file that defines `function` at its top level, or None."""
    try:
        filename = inspect.getsourcefile(function)
    except TypeError:
        return None
    if filename is None or "<" in function.__qualname__:
        return None
    found = source(Path(filename), sys.modules.get(function.__module__))
    return found if function.__name__ in found.functions else None


@functools.cache
def installed_roots() -> frozenset[Path]:
    """Where the interpreter's own and installed packages live: never the app's code."""
    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    return frozenset(Path(paths[key]).resolve() for key in keys)


def is_app_code(path: Path, root: Path) -> bool:
    """Whether `path` is the app's own code: under `root`, not the gateway, not installed."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root) or resolved.is_relative_to(GATEWAY_PACKAGE):
        return False
    return not any(resolved.is_relative_to(installed) for installed in installed_roots())


def shown_path(path: Path, root: Path) -> str:
    """`path` as the report shows it: relative to `root` when it is below it."""
    resolved = path.resolve()
    if resolved.is_relative_to(root):
        return resolved.relative_to(root).as_posix()
    return os.fspath(resolved)

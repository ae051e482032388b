"""Which variables hold ORM objects, what was loaded with them, and reads that would lazy-load.

Under a sync Session, reading a relationship that was not loaded runs a query
on the spot. Under an AsyncSession that query cannot run (it raises
`MissingGreenlet`), so a twin loads what it reads with the query that fetched
the objects. The analysis follows objects from the query that returned them
(`first()`, `all()`, `db.get()`, `select(M)` executed), through `for` loops
and into their relationships, and checks each relationship read, and each
object an endpoint returns for its response schema to read, against the
paths the query's loader options (`selectinload`, `joinedload` ...) load.

Objects made in the function (`Order(...)`) load nothing: their relationships
are what the code put there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import libcst as cst

from gateway.migrate.names import Imports
from gateway.migrate.orm import lazy_relationships, relationship_target

Path = tuple[str, ...]


@dataclass
class Loader:
    """Where objects came from: the loads it made, and the loads the draft adds to it."""

    origin: str  # "the query on line 12", for messages
    root: Any  # the mapped class the query selects
    root_name: str | None  # how the module names that class, to write loader options
    loaded: set[Path] = field(default_factory=set)
    added: dict[Path, cst.BaseExpression] = field(default_factory=dict)
    can_add: bool = True  # False: a dependency or helper fetched them, out of the draft's reach

    def add(self, path: Path, names: dict[Any, str], imports: Imports) -> bool:
        """Load `path` with the query as well; False when the draft cannot write the option."""
        option = self.option(path, names, imports) if self.can_add else None
        if option is None:
            return False
        self.loaded.add(path)
        self.added[path] = option
        return True

    def option(
        self, path: Path, names: dict[Any, str], imports: Imports
    ) -> cst.BaseExpression | None:
        """`selectinload(A.b).selectinload(B.c)` for `path` from the root class, if nameable."""
        owner, option = self.root, None
        loader = imports.use("sqlalchemy.orm", "selectinload")
        for step in path:
            owner_name = self.root_name if owner is self.root else names.get(owner)
            target = relationship_target(owner, step)
            if owner_name is None or target is None:
                return None
            attribute = cst.Attribute(cst.Name(owner_name), cst.Name(step))
            func = cst.Name(loader) if option is None else cst.Attribute(option, cst.Name(loader))
            option = cst.Call(func, [cst.Arg(attribute)])
            owner = target[0]
        return option

    def options(self) -> list[cst.BaseExpression]:
        return list(self.added.values())


@dataclass(frozen=True)
class Held:
    """ORM objects a name holds: one or a collection, `path` below the loader's root."""

    model: Any
    loader: Loader | None  # None: made here, nothing to load
    path: Path = ()
    collection: bool = False

    def element(self) -> Held:
        return Held(self.model, self.loader, self.path, collection=False)

    def through(self, relationship: str) -> Held | None:
        target = relationship_target(self.model, relationship)
        if target is None:
            return None
        model, collection = target
        return Held(model, self.loader, (*self.path, relationship), collection)

    def unloaded(self, relationship: str) -> bool:
        """Whether reading `relationship` would query: a lazy one the loader did not load."""
        if self.loader is None or relationship not in lazy_relationships(self.model):
            return False
        return (*self.path, relationship) not in self.loader.loaded


def held_by(expression: cst.BaseExpression, names: dict[str, Held]) -> Held | None:
    """What `expression` holds: a tracked name, its relationships, an element of either."""
    if isinstance(expression, cst.Name):
        return names.get(expression.value)
    if isinstance(expression, cst.Attribute):
        owner = held_by(expression.value, names)
        return None if owner is None or owner.collection else owner.through(expression.attr.value)
    if isinstance(expression, cst.Subscript):
        owner = held_by(expression.value, names)
        return owner.element() if owner is not None and owner.collection else None
    return None


def class_names(module_values: dict[str, Any]) -> dict[Any, str]:
    """How a module names each class it holds at its top level (first name wins)."""
    found: dict[Any, str] = {}
    for name, value in module_values.items():
        if isinstance(value, type) and not name.startswith("_"):
            found.setdefault(value, name)
    return found

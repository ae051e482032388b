"""What the assistant reads from an app's mapped classes: columns, keys, relationships, hooks.

The analysis is static, but the models are real: an app's module is imported
to read its routes, so each name a route uses resolves to its class, and
`sqlalchemy.inspect` says which attributes are columns and which are
relationships that would load lazily.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import inspect
from sqlalchemy.orm import Mapper, RelationshipProperty

# Strategies that load a relationship with its parent: reading it never queries.
EAGER = frozenset({"joined", "selectin", "subquery", "immediate", "noload"})
# Mapper events a lean statement would skip (it writes the table without the unit of work).
WRITE_EVENTS = (
    "before_insert",
    "after_insert",
    "before_update",
    "after_update",
    "before_delete",
    "after_delete",
)


def mapper_of(value: Any) -> Mapper[Any] | None:
    """The mapper of `value` if it is a mapped class, else None."""
    if not isinstance(value, type):
        return None
    found: Any = inspect(value, raiseerr=False)
    return found if isinstance(found, Mapper) else None


def is_mapped(value: Any) -> bool:
    return mapper_of(value) is not None


def column_names(model: type[Any]) -> set[str]:
    mapper = mapper_of(model)
    return set() if mapper is None else {prop.key for prop in mapper.column_attrs}


def primary_key_name(model: type[Any]) -> str | None:
    """The attribute name of `model`'s primary key, when it is one column."""
    mapper = mapper_of(model)
    if mapper is None or len(mapper.primary_key) != 1:
        return None
    column = mapper.primary_key[0]
    for prop in mapper.column_attrs:
        if column in prop.columns:
            return prop.key
    return None


def lazy_relationships(model: type[Any]) -> dict[str, type[Any]]:
    """`model`'s relationships that load on first access, by name, with their target class."""
    mapper = mapper_of(model)
    if mapper is None:
        return {}
    found: dict[str, type[Any]] = {}
    for relationship in mapper.relationships:
        if str(relationship.lazy) not in EAGER:
            found[relationship.key] = relationship.mapper.class_
    return found


def relationship_target(model: type[Any], name: str) -> tuple[type[Any], bool] | None:
    """The class a relationship of `model` leads to, and whether it holds a collection."""
    mapper = mapper_of(model)
    prop = None if mapper is None else mapper.relationships.get(name)
    if not isinstance(prop, RelationshipProperty):
        return None
    return prop.mapper.class_, bool(prop.uselist)


def has_write_hooks(model: type[Any]) -> bool:
    """Whether `model` has `@validates` or mapper write events, which lean writes skip."""
    mapper = mapper_of(model)
    if mapper is None:
        return True
    if mapper.validators:
        return True
    return any(len(getattr(mapper.dispatch, event)) for event in WRITE_EVENTS)


def reads_columns_only(model: type[Any], schema: Any) -> bool:
    """Whether every field of `schema` is a column of `model`: the lean path can fill it."""
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        return False
    return set(schema.model_fields) <= column_names(model)


def schema_fields(schema: Any) -> set[str]:
    """The field names of `schema` and of every schema nested in it (lists and pages too)."""
    found: set[str] = set()
    pending, seen = [schema], set()
    while pending:
        current = pending.pop()
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            pending.extend(getattr(current, "__args__", ()))
            continue
        if current in seen:
            continue
        seen.add(current)
        for name, field in current.model_fields.items():
            found.add(name)
            pending.append(field.annotation)
    return found

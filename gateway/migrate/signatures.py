"""Which parameters of a function hand it the sync session, directly or through a dependency.

Read from the function's runtime signature, so an app's own aliases
(`SessionDep = Annotated[Session, Depends(get_db)]`), the gateway's `SyncDB`
and the old `db: Session = Depends(get_db)` all count, whatever they are
called. A dependency counts when it, or a dependency of its own, takes the
sync session: its twin needs an async dependency of its own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from gateway.database.providers import dependencies_of, unwrapped
from gateway.migrate.orm import is_mapped

DEPTH = 4  # dependencies of dependencies followed this deep


def parameters(function: Any) -> list[inspect.Parameter]:
    """`function`'s parameters, their annotations evaluated where they can be."""
    try:
        return list(inspect.signature(function, eval_str=True).parameters.values())
    except (NameError, TypeError, ValueError, SyntaxError):
        pass
    try:
        return list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return []


def is_sync_session(annotation: Any) -> bool:
    return (
        isinstance(annotation, type)
        and issubclass(annotation, Session)
        and not issubclass(annotation, AsyncSession)
    )


def session_parameters(function: Any) -> set[str]:
    """The names of `function`'s parameters typed as a sync `Session`."""
    return {p.name for p in parameters(function) if is_sync_session(unwrapped(p)[0])}


def uses_sync_session(dependency: Callable[..., Any], depth: int = DEPTH) -> bool:
    """Whether `dependency`, or one of its own dependencies, takes the sync session."""
    if depth == 0:
        return False
    for parameter in parameters(dependency):
        if is_sync_session(unwrapped(parameter)[0]):
            return True
        if any(uses_sync_session(sub, depth - 1) for sub in dependencies_of(parameter)):
            return True
    return False


def session_dependencies(function: Any) -> dict[str, Callable[..., Any]]:
    """Parameters (not sessions themselves) whose dependency takes the sync session."""
    found = {}
    for parameter in parameters(function):
        if is_sync_session(unwrapped(parameter)[0]):
            continue
        for dependency in dependencies_of(parameter):
            if uses_sync_session(dependency):
                found[parameter.name] = dependency
    return found


def mapped_parameters(function: Any) -> dict[str, Any]:
    """Parameters whose value is an ORM object a dependency fetched: name -> mapped class."""
    found = {}
    for parameter in parameters(function):
        annotation = unwrapped(parameter)[0]
        if is_mapped(annotation) and any(dependencies_of(parameter)):
            found[parameter.name] = annotation
    return found


def provided_sessions(function: Any) -> set[str]:
    """Session parameters whose value a dependency provides (`SyncDB`, `Depends(get_db)`)."""
    return {
        parameter.name
        for parameter in parameters(function)
        if is_sync_session(unwrapped(parameter)[0]) and any(dependencies_of(parameter))
    }

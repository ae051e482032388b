"""Route keys, and the shape that pairs twins whatever their path parameters are called.

A route key is `METHOD /path/template`, the template as the legacy side wrote
it: `GET /users/{user_id}`. Two paths have the same shape when they differ only
in the names or converters of their parameters (`/books/{id}` and
`/books/{book_id:int}`): they match the same requests, so they can never be two
routes, and twins that differ that way are refused at start-up.
"""

from __future__ import annotations

import re

PARAMETER = re.compile(r"\{([^{}:]+)(?::([^{}]*))?\}")


def route_key(method: str, path: str) -> str:
    return f"{method.upper()} {path}"


def normalized(key: str) -> str:
    """`get  /users` -> `GET /users`: the method in capitals, one space before the path."""
    method, _, path = key.strip().partition(" ")
    return route_key(method, path.strip()) if path.strip() else key


def split_key(key: str) -> tuple[str, str]:
    """(method, path template) of a route key."""
    method, _, path = key.partition(" ")
    return method, path


def shape(method: str, path: str) -> str:
    """The key of `path` with its parameters unnamed: what the router actually matches on."""
    return route_key(method, PARAMETER.sub("{}", path))


def naming_differences(legacy_path: str, async_path: str) -> list[str]:
    """How the parameters of two paths of one shape differ, one line per parameter."""
    return [
        f"path parameter {position}: legacy {{{left}}} vs async {{{right}}}"
        for position, (left, right) in enumerate(
            zip(written_parameters(legacy_path), written_parameters(async_path), strict=True), 1
        )
        if left != right
    ]


def written_parameters(path: str) -> list[str]:
    """The path's parameters as written, `name` or `name:converter`, in order."""
    return [
        name if not converter else f"{name}:{converter}"
        for name, converter in PARAMETER.findall(path)
    ]

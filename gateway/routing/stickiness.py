"""Where each route reads the sticky key that puts a request in its canary bucket.

`GATEWAY_STICKY_KEYS` maps a route key, or `*` for every route without an
entry, to a source:

    header:NAME   a request header
    cookie:NAME   a cookie of the request's Cookie header
    path:PARAM    a path parameter of the route
    query:PARAM   a query parameter (its first value)

A route neither names nor `*` covers reads the `GATEWAY_STICKY_HEADER` header.
A key naming no route of the app, or a path parameter a route's path lacks,
stops the start. Each route's reader is built once: per request, a header or
cookie source is a look-up in the headers the dispatcher collects in its one
pass over them, and the cookie, path or query is only parsed for a request in
canary mode. A missing or empty value is no key: the request draws a random
bucket.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.requests import cookie_parser
from starlette.types import Scope

from gateway.errors import ConfigurationError
from gateway.routing.keys import PARAMETER, normalized, split_key
from gateway.settings import ENV_PREFIX

EVERY_ROUTE = "*"
Headers = Mapping[bytes, bytes]  # the headers the dispatcher collected, by lower-case name
ReadKey = Callable[[Scope, Headers], str | None]


class InvalidStickyKeys(ConfigurationError):
    """`GATEWAY_STICKY_KEYS` names a route the app lacks, or a parameter a route's path lacks."""


@dataclass(frozen=True, slots=True)
class StickyReader:
    """How one route finds a request's sticky key; `header` is the one header it needs, if any."""

    source: str
    header: bytes | None
    read: ReadKey


def present(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def from_header(name: bytes) -> ReadKey:
    def read(scope: Scope, headers: Headers) -> str | None:
        value = headers.get(name)
        return None if value is None else present(value.decode("latin-1"))

    return read


def from_cookie(name: str) -> ReadKey:
    def read(scope: Scope, headers: Headers) -> str | None:
        cookies = headers.get(b"cookie")
        if cookies is None:
            return None
        return present(cookie_parser(cookies.decode("latin-1")).get(name))

    return read


def from_path(param: str) -> ReadKey:
    def read(scope: Scope, headers: Headers) -> str | None:
        return present(scope.get("path_params", {}).get(param))

    return read


def from_query(param: str) -> ReadKey:
    def read(scope: Scope, headers: Headers) -> str | None:
        query = scope.get("query_string", b"").decode("latin-1")
        return next((present(v) for k, v in parse_qsl(query) if k == param), None)

    return read


def sticky_reader(source: str) -> StickyReader:
    """The reader of a source the settings accepted: `header:X-Tenant`, `path:user_id`, ..."""
    kind, _, name = source.partition(":")
    if kind == "header":
        header = name.lower().encode("latin-1")
        return StickyReader(source, header, from_header(header))
    if kind == "cookie":
        return StickyReader(source, b"cookie", from_cookie(name))
    if kind == "path":
        return StickyReader(source, None, from_path(name))
    return StickyReader(source, None, from_query(name))


def path_parameters(key: str) -> set[str]:
    return {name for name, _ in PARAMETER.findall(split_key(key)[1])}


def sticky_readers(
    routes: Collection[str], configured: Mapping[str, str], sticky_header: str
) -> dict[str, StickyReader]:
    """Each route's reader; `InvalidStickyKeys` lists every entry that cannot apply."""
    named = {normalized(key): source for key, source in configured.items() if key != EVERY_ROUTE}
    fallback = configured.get(EVERY_ROUTE, f"header:{sticky_header}")
    problems = [unknown_route(key, routes) for key in named if key not in routes]
    readers = {}
    for key in routes:
        source = named.get(key, fallback)
        kind, _, name = source.partition(":")
        if kind == "path" and name not in path_parameters(key):
            given = "" if key in named else f" (from {EVERY_ROUTE})"
            problems.append(f"{key}: {source}{given}, but its path has no {{{name}}}")
        readers[key] = sticky_reader(source)
    if problems:
        raise InvalidStickyKeys(
            f"{ENV_PREFIX}STICKY_KEYS cannot apply to this app:\n"
            + "\n".join(f"  {problem}" for problem in problems)
        )
    return readers


def unknown_route(key: str, routes: Collection[str]) -> str:
    close = difflib.get_close_matches(key, routes, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{key}: the app has no such route{hint}"

"""What the assistant finds in legacy code: one sync-only idiom, where, and its async form.

Kinds (a fixed vocabulary, for `--json` and the summary):

    query           a `Query`: db.query(M), .filter(), .filter_by(), .first(), .all(), .count() ...
    lean            a read or write by key, or a page with its total, answered as the schema
    session         a session call that does I/O: commit, refresh, delete, execute, get ...
    dependency      a parameter whose dependency hands the endpoint the sync session
    commit_in_loop  a commit inside a loop: every pass is its own transaction
    lazy_load       a relationship read that would load lazily, which raises under AsyncSession
    blocking        a call that blocks the thread: HTTP clients, time.sleep, files, sync drivers
    helper          a call into the app's own code that does one of the above
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

Kind = Literal[
    "query",
    "lean",
    "session",
    "dependency",
    "commit_in_loop",
    "lazy_load",
    "blocking",
    "helper",
]
SNIPPET_WIDTH = 120


@dataclass(frozen=True)
class Idiom:
    """One sync-only idiom of a function, and what its async twin does instead.

    `automatic`: the draft writes `async_form` in its place. Otherwise the draft
    keeps the legacy code under a `# MIGRATE:` comment saying `why`.
    """

    kind: Kind
    path: str
    line: int
    code: str
    async_form: str
    automatic: bool
    why: str = ""
    via: str = ""  # the helper it was found in, when it was not in the endpoint itself

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def one_line(code: str, width: int | None = None) -> str:
    """`code` on one line, its whitespace collapsed (and cut to `width` characters, if given)."""
    flat = " ".join(code.split())
    for opening in "([{":
        flat = flat.replace(f"{opening} ", opening)
    for closing in ")]},":
        flat = flat.replace(f" {closing}", closing)
    flat = re.sub(r"\s+\.(?=[A-Za-z_])", ".", flat)  # a chain written one call per line
    return flat if width is None or len(flat) <= width else flat[: width - 3] + "..."


def counted(number: int, noun: str) -> str:
    """`1 router`, `2 routers`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"

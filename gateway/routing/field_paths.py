"""Field paths: how shadow rules and learned noise name places in a JSON answer's body.

    updated_at           the body's field `updated_at`
    items[].created_at   `created_at` in every element of the list `items`
    [].id                `id` in every element of a body that is a list
    prices.*.amount      `amount` in the value of every key of the object `prices`

A path starts at the body's root: `.` steps into an object, `[]` into every
element of a list, `*` stands for any key. A path covers what lies below it.
The grammar is `gateway.settings.FIELD_PATH`, which validates configured paths.
DeepDiff names a place as `root['items'][0]['created_at']`; `regex` turns
paths into a pattern over those names, and `field_path` turns a place DeepDiff
reports back into the path that covers it in every element.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from gateway.settings import FIELD_NAME

ANY_KEY = r"""\[(?:'[^']*'|"[^"]*")\]"""
ANY_INDEX = r"\[\d+\]"
ROOT = "root"


def key_step(name: str) -> str:
    """A key as DeepDiff writes it in a path: quoted with the quote the key does not hold."""
    return f'["{name}"]' if "'" in name else f"['{name}']"


def step_pattern(step: str) -> str:
    name = step.rstrip("[]")
    lists = (len(step) - len(name)) // 2
    if name == "*":
        key = ANY_KEY
    elif name:
        escaped = re.escape(name)
        key = rf"""\[(?:'{escaped}'|"{escaped}")\]"""
    else:
        key = ""
    return key + ANY_INDEX * lists


@functools.lru_cache(maxsize=1024)
def regex(paths: tuple[str, ...]) -> re.Pattern[str] | None:
    """One pattern matching the DeepDiff names of every place `paths` name (None: no path)."""
    if not paths:
        return None
    each = ["".join(map(step_pattern, path.split("."))) for path in paths]
    return re.compile(rf"^{ROOT}(?:{'|'.join(each)})$")


def field_path(steps: Sequence[object]) -> str:
    """The path of a place given as DeepDiff's list of steps: `['items', 0, 'id']` -> `items[].id`.

    A key the grammar cannot hold (a dot, a bracket, a star) becomes `*`. The
    body itself is the empty path.
    """
    path = ""
    for step in steps:
        if isinstance(step, int):
            path += "[]"
            continue
        name = step if isinstance(step, str) and re.fullmatch(FIELD_NAME, step) else "*"
        path += f".{name}" if path else name
    return path

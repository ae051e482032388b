"""How two answers to one request are compared: by shadow runs, and by parity checks.

Status codes must be equal; bodies are compared as JSON, without regard to key
order and without the fields named as ignored (at any depth); a body that is
not JSON is compared as text. A difference is shown as a unified diff of the
two answers, keys sorted, so it reads the same whichever side produced it.
"""

from __future__ import annotations

import difflib
import json
from typing import Any


def without(value: Any, ignored: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: without(v, ignored) for k, v in value.items() if k not in ignored}
    if isinstance(value, list):
        return [without(item, ignored) for item in value]
    return value


def comparable(body: bytes, ignored: frozenset[str]) -> Any:
    try:
        return without(json.loads(body), ignored)
    except ValueError:
        return body.decode(errors="replace")


def readable_diff(primary: Any, shadow: Any, labels: tuple[str, str]) -> str:
    def lines(value: Any) -> list[str]:
        return json.dumps(value, sort_keys=True, indent=2, default=str).splitlines()

    diff = difflib.unified_diff(lines(primary), lines(shadow), *labels, lineterm="")
    return "\n".join(diff)


def compared(status: int, body: bytes, ignored: frozenset[str]) -> dict[str, Any]:
    """A response as compared: its status and its comparable body."""
    return {"status": status, "body": comparable(body, ignored)}

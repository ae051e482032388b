"""How two answers to one request are compared: by shadow runs, and by parity checks.

Status codes must be equal; bodies are compared as JSON, without regard to key
order and without the fields named as ignored (at any depth); a body that is
not JSON is compared as text. A difference is shown as a unified diff of the
two answers, keys sorted, so it reads the same whichever side produced it.
"""

from __future__ import annotations

import difflib
import hmac
import json
import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode


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


REDACTED = "[redacted]"


class Redactor:
    """Replaces the values of some fields, at any depth, for showing (never for comparing).

    A value becomes `[redacted 1a2b3c4d]`: a keyed hash, so that a diff still
    shows whether two redacted values differ, and the key, random per process,
    keeps the value from being guessed from the tag.
    """

    def __init__(self, fields: Iterable[str]) -> None:
        self.fields = frozenset(fields)
        self._key = secrets.token_bytes(16)

    def tag(self, value: Any) -> str:
        shown = json.dumps(value, sort_keys=True, default=str).encode()
        return f"[redacted {hmac.new(self._key, shown, 'sha256').hexdigest()[:8]}]"

    def __call__(self, value: Any) -> Any:
        if not self.fields:
            return value
        if isinstance(value, dict):
            return {k: self.tag(v) if k in self.fields else self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(item) for item in value]
        return value


def redacted_query(query: bytes, fields: Iterable[str]) -> str:
    """A query string with the values of the parameters in `fields` replaced."""
    fields = frozenset(fields)
    pairs = parse_qsl(query.decode(errors="replace"), keep_blank_values=True)
    return urlencode([(name, REDACTED if name in fields else v) for name, v in pairs], safe="[]")

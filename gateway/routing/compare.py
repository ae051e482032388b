"""How two answers to one request are compared: by shadow runs, and by parity checks.

Status codes must be equal; bodies are compared as JSON, without regard to key
order and without the fields named as ignored (at any depth); a body that is
not JSON is compared as text. A route's `BodyRules` may also leave out field
paths (`gateway.routing.field_paths`), compare lists without their order and
numbers within a tolerance; DeepDiff applies them and names the places that
still differ. A difference is shown as a unified diff of the two answers, keys
sorted, so it reads the same whichever side produced it; what the rules leave
out is left out of it too.
"""

from __future__ import annotations

import difflib
import hmac
import json
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

from deepdiff import DeepDiff
from deepdiff.model import DiffLevel
from deepdiff.operator import BaseOperatorPlus

from gateway.routing.field_paths import ROOT, field_path, key_step, regex
from gateway.settings import ShadowRule


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


@dataclass(frozen=True)
class BodyRules:
    """What does not count when one route's two bodies are compared, besides key order."""

    ignore: tuple[str, ...] = ()  # field paths
    ignore_order: bool = False
    tolerance: float | None = None

    @classmethod
    def of(cls, rule: ShadowRule | None) -> BodyRules:
        if rule is None:
            return cls()
        return cls(tuple(rule.ignore), rule.ignore_order, rule.tolerance)

    def ignoring(self, paths: Iterable[str]) -> BodyRules:
        """These rules, with `paths` left out as well."""
        return replace(self, ignore=tuple(sorted({*self.ignore, *paths})))


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Tolerance(BaseOperatorPlus):
    """A DeepDiff operator: two numbers at most `tolerance` apart are equal.

    Lists compared without their order are first matched by hash: numbers hash
    as their multiple of the tolerance, so that near ones usually pair at once;
    the rest pair by similarity, then are compared here.
    """

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance

    def match(self, level: DiffLevel) -> bool:
        return is_number(level.t1) and is_number(level.t2)

    def give_up_diffing(self, level: DiffLevel, diff_instance: DeepDiff) -> bool:
        return math.isclose(level.t1, level.t2, rel_tol=0, abs_tol=self.tolerance)

    def normalize_value_for_hashing(self, parent: Any, obj: Any) -> Any:
        multiple = obj / self.tolerance if is_number(obj) and self.tolerance else math.nan
        return round(multiple) if math.isfinite(multiple) else obj


def differing(primary: Any, shadow: Any, rules: BodyRules) -> list[str]:
    """The field paths at which two bodies differ under `rules`, sorted ("": the whole body)."""
    if primary == shadow:
        return []
    tolerance = [] if rules.tolerance is None else [Tolerance(rules.tolerance)]
    excluded = regex(rules.ignore)
    found = DeepDiff(
        primary,
        shadow,
        view="tree",
        ignore_order=rules.ignore_order,
        ignore_numeric_type_changes=True,  # JSON has numbers, not ints and floats
        exclude_regex_paths=None if excluded is None else [excluded],
        custom_operators=tolerance,
    )
    levels = (level for report in found.values() for level in report)
    return sorted({field_path(level.path(output_format="list")) for level in levels})


def shown(primary: Any, shadow: Any, rules: BodyRules) -> tuple[Any, Any]:
    """Two bodies as their diff shows them: without what `rules` leave out, lists sorted where
    their order does not count, and the shadow's numbers within the tolerance as the primary's.
    """
    excluded = regex(rules.ignore)
    left, right = (shown_value(body, excluded, rules.ignore_order) for body in (primary, shadow))
    if rules.tolerance is not None:
        right = within_tolerance(left, right, rules.tolerance)
    return left, right


def shown_value(
    value: Any, excluded: re.Pattern[str] | None, unordered: bool, at: str = ROOT
) -> Any:
    def kept(step: str) -> bool:
        return excluded is None or not excluded.match(at + step)

    if isinstance(value, dict):
        steps = {name: key_step(name) for name in value}
        return {
            name: shown_value(item, excluded, unordered, at + steps[name])
            for name, item in value.items()
            if kept(steps[name])
        }
    if isinstance(value, list):
        items = [
            shown_value(item, excluded, unordered, f"{at}[{index}]")
            for index, item in enumerate(value)
            if kept(f"[{index}]")
        ]
        return sorted(items, key=canonical) if unordered else items
    return value


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def within_tolerance(primary: Any, shadow: Any, tolerance: float) -> Any:
    """`shadow`, its numbers that are within `tolerance` of the primary's in the same place
    replaced by those."""
    if is_number(primary) and is_number(shadow):
        return primary if math.isclose(primary, shadow, rel_tol=0, abs_tol=tolerance) else shadow
    if isinstance(primary, dict) and isinstance(shadow, dict):
        return {
            name: within_tolerance(primary.get(name), item, tolerance)
            for name, item in shadow.items()
        }
    if isinstance(primary, list) and isinstance(shadow, list):
        paired = zip(primary, shadow, strict=False)
        return [within_tolerance(p, s, tolerance) for p, s in paired] + shadow[len(primary) :]
    return shadow


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

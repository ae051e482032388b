"""What a rollout plan is: ordered steps, each with a minimum duration and evidence; its analysis.

    calibrate  legacy runs twice (shadow, legacy against legacy) to learn the route's noise
    shadow     async runs in the background and is compared; judged on the match rate
    canary N   N % of requests to async; judged on errors and latency against legacy
    async      the last step: reaching it ends the plan

A step passes once its duration is over and its evidence is enough and good;
it fails as soon as enough evidence is bad; with too little evidence at the
end of its duration it is inconclusive and extended. Durations are seconds,
or text such as "90s", "10m", "1h".
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from gateway.errors import Conflict, GatewayError
from gateway.impl import Impl
from gateway.routing.modes import SAFE_METHODS, RouteMode

StepKind = Literal["calibrate", "shadow", "canary", "async"]
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
DURATION = re.compile(r" *([0-9]+(?:\.[0-9]+)?) *([smh]?) *")


def seconds(value: Any) -> Any:
    """`"10m"` -> 600.0; numbers pass as they are."""
    if isinstance(value, str):
        found = DURATION.fullmatch(value)
        if found is None:
            raise ValueError(f"{value!r} is not a duration: use seconds, or e.g. 90s, 10m, 1h")
        return float(found[1]) * UNITS[found[2] or "s"]
    return value


def at_most(limit: int) -> str:
    """A regular expression of the decimal numbers from 0 to `limit`, e.g. "10m" up to 10080."""
    digits = str(limit)
    below = [f"[0-9]{{1,{len(digits) - 1}}}"] if len(digits) > 1 else []
    for place, digit in enumerate(digits):
        lowest = 1 if place == 0 else 0
        if int(digit) > lowest:
            rest = len(digits) - place - 1
            below.append(f"{digits[:place]}[{lowest}-{int(digit) - 1}][0-9]{{{rest}}}")
    return f"0*(?:(?:{'|'.join(below)})(?:\\.[0-9]+)?|{digits}(?:\\.0+)?)"


def duration_pattern(longest: int) -> str:
    """The JSON Schema pattern of exactly the text durations accepted: the form and the bound."""
    forms = [
        f"{at_most(longest // int(factor))} *{unit}{'?' if unit == 's' else ''}"
        for unit, factor in UNITS.items()
    ]
    return f"^ *(?:{'|'.join(forms)}) *$"


LONGEST = 7 * 86_400
Duration = Annotated[
    float,
    BeforeValidator(seconds),
    Field(ge=0, le=LONGEST),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": LONGEST},
                {"type": "string", "pattern": duration_pattern(LONGEST)},
            ],
            "description": "seconds, or text such as 90s, 10m, 1h (at most a week)",
        }
    ),
]


class Step(BaseModel):
    """One step: its mode, how long it lasts at least, how much evidence it needs."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "if": {"properties": {"mode": {"const": "canary"}}},
            "then": {"required": ["percent"], "properties": {"percent": {"type": "integer"}}},
            "else": {"properties": {"percent": {"type": "null"}}},
        },
    )

    mode: StepKind
    percent: Annotated[int | None, Field(ge=1, le=99)] = None
    sample: Annotated[int, Field(ge=1, le=100)] = 100
    duration: Duration = 600.0
    min_requests: Annotated[int, Field(ge=1, le=10_000_000)] = 100

    @model_validator(mode="after")
    def _percent_with_canary_only(self) -> Step:
        if self.mode == "canary" and self.percent is None:
            raise ValueError("a canary step needs a percent (1 to 99)")
        if self.mode != "canary" and self.percent is not None:
            raise ValueError(f"percent applies to canary steps only, not to {self.mode}")
        return self

    def route_mode(self) -> RouteMode:
        if self.mode == "canary":
            return RouteMode(mode="canary", percent=self.percent or 0)
        if self.mode in ("shadow", "calibrate"):
            return RouteMode(
                mode="shadow", sample=self.sample, calibrating=self.mode == "calibrate"
            )
        return RouteMode(mode="async")

    def label(self) -> str:
        if self.mode == "canary":
            return f"canary {self.percent} %"
        if self.mode in ("shadow", "calibrate") and self.sample < 100:
            return f"{self.mode} ({self.sample} % sampled)"
        return self.mode

    def needs(self) -> set[Impl]:
        return self.route_mode().needs()


class Analysis(BaseModel):
    """How a step is judged; unset values come from the GATEWAY_ROLLBACK_* settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_margin: Annotated[float | None, Field(ge=0, le=1)] = None
    latency_ratio: Annotated[float | None, Field(gt=1)] = None
    latency_floor_ms: Annotated[float | None, Field(ge=0)] = None
    min_match_rate: Annotated[float, Field(ge=0, le=1)] = 0.99
    extend: Duration = 60.0


def default_steps(method: str) -> list[Step]:
    """Shadow (for safe methods), canary 5, 25 and 50 %, ten minutes each, then async."""
    canaries = [Step(mode="canary", percent=percent) for percent in (5, 25, 50)]
    shadow = [Step(mode="shadow")] if method in SAFE_METHODS else []
    return [*shadow, *canaries, Step(mode="async", duration=0)]


class InvalidPlan(GatewayError):
    """A plan that cannot drive its route."""

    status_code = 422
    code = "invalid_request"


def check_plan(key: str, implementations: set[str], steps: list[Step]) -> None:
    """Refuse a plan its route cannot follow: why, in one line."""
    method = key.split(" ", 1)[0]
    if not steps or steps[-1].mode != "async":
        raise InvalidPlan("a plan ends with an async step")
    if any(step.mode == "async" for step in steps[:-1]):
        raise InvalidPlan("async is the last step of a plan, and only the last")
    for number, step in enumerate(steps, 1):
        if step.mode in ("shadow", "calibrate") and method not in SAFE_METHODS:
            raise InvalidPlan(
                f"step {number} ({step.mode}) runs requests twice, which only safe methods "
                f"(GET, HEAD) allow; {key} may write"
            )
    missing = {"legacy", "async"} - implementations
    if missing:
        raise Conflict(
            f"{key} has no {' and no '.join(sorted(missing))} implementation to roll out",
            {"route": key, "missing_implementations": sorted(missing)},
        )

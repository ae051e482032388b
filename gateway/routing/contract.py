"""The start-up check that both implementations of a route keep one contract.

Two implementations of a key must accept the same request (path, query,
header, cookie and body parameters: name, alias, type, default, constraints)
and promise the same response (response model and status code). Anything
else, such as which session they use, may differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from gateway.errors import ConfigurationError

if TYPE_CHECKING:
    from fastapi._compat import ModelField

DEFAULT_STATUS = 200  # what FastAPI answers when a route declares no status code
PARAMETER_KINDS = ("path_params", "query_params", "header_params", "cookie_params", "body_params")


class ContractMismatch(ConfigurationError):
    """The legacy and async implementations of one route differ in what clients see."""

    def __init__(self, key: str, found: list[str]) -> None:
        lines = "\n".join(f"  {difference}" for difference in found)
        super().__init__(f"{key}: the two implementations differ:\n{lines}")
        self.key = key
        self.differences = found


def fields(dependant: Dependant, kind: str) -> list[ModelField]:
    """The `kind` parameters of `dependant` and of every dependency below it."""
    found = list(getattr(dependant, kind))
    for sub in dependant.dependencies:
        found.extend(fields(sub, kind))
    return found


def flat_fields(dependant: Dependant) -> list[ModelField]:
    """Every request parameter of the tree, body included."""
    return [field for kind in PARAMETER_KINDS for field in fields(dependant, kind)]


def parameters(dependant: Dependant) -> dict[str, dict[str, str]]:
    """Each request parameter of the tree, by label, described attribute by attribute."""
    described: dict[str, dict[str, str]] = {}
    for kind in PARAMETER_KINDS:
        for param in fields(dependant, kind):
            info = param.field_info
            label = f"{kind.removesuffix('_params')} parameter {param.name!r}"
            described[label] = {
                "alias": repr(param.alias),
                "type": show(info.annotation),
                "required": "required" if info.is_required() else "optional",
                "default": "-" if info.is_required() else repr(info.default),
                "constraints": ", ".join(repr(item) for item in info.metadata) or "none",
            }
    return described


def promised_response(route: APIRoute) -> dict[str, str]:
    return {
        "response model": show(route.response_model),
        "status code": show(route.status_code or DEFAULT_STATUS),
        "response class": show(route.response_class),
        "response model include": show(route.response_model_include),
        "response model exclude": show(route.response_model_exclude),
        "response model by alias": show(route.response_model_by_alias),
        "response model exclude unset": show(route.response_model_exclude_unset),
        "response model exclude defaults": show(route.response_model_exclude_defaults),
        "response model exclude none": show(route.response_model_exclude_none),
        "documented statuses": ", ".join(sorted(str(status) for status in route.responses)),
    }


def show(value: Any) -> str:
    """A value as a reader would write it: `int`, `list[UserRead]`, `201`, `None`."""
    if isinstance(value, type) and not getattr(value, "__args__", None):
        return value.__name__
    return repr(value).replace("typing.", "")


def differences(legacy: APIRoute, migrated: APIRoute) -> list[str]:
    """One readable line per difference between what the two implementations accept and promise."""
    left, right = parameters(legacy.dependant), parameters(migrated.dependant)
    found = []
    for label in sorted(left.keys() | right.keys()):
        if label not in right or label not in left:
            side = "legacy" if label in left else "async"
            found.append(f"{label}: only the {side} implementation takes it")
            continue
        found.extend(
            f"{label}: {attribute} legacy {left[label][attribute]} vs async {value}"
            for attribute, value in right[label].items()
            if left[label][attribute] != value
        )
    promised = promised_response(legacy)
    found.extend(
        f"{label}: legacy {promised[label]} vs async {value}"
        for label, value in promised_response(migrated).items()
        if promised[label] != value
    )
    return found


def check_same_contract(key: str, legacy: APIRoute, migrated: APIRoute) -> None:
    found = differences(legacy, migrated)
    if found:
        raise ContractMismatch(key, found)

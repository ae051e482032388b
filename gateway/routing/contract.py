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

if TYPE_CHECKING:
    from fastapi._compat import ModelField

PARAMETER_KINDS = ("path_params", "query_params", "header_params", "cookie_params", "body_params")


class ContractMismatch(ValueError):
    """The legacy and async implementations of one route differ in what clients see."""


def fields(dependant: Dependant, kind: str) -> list[ModelField]:
    """The `kind` parameters of `dependant` and of every dependency below it."""
    found = list(getattr(dependant, kind))
    for sub in dependant.dependencies:
        found.extend(fields(sub, kind))
    return found


def parameters(dependant: Dependant) -> dict[str, tuple[Any, ...]]:
    described: dict[str, tuple[Any, ...]] = {}
    for kind in PARAMETER_KINDS:
        for param in fields(dependant, kind):
            info = param.field_info
            described[f"{kind.removesuffix('_params')} parameter {param.name!r}"] = (
                param.alias,
                info.annotation,
                info.is_required(),
                None if info.is_required() else repr(info.default),
                tuple(repr(item) for item in info.metadata),
            )
    return described


def promised_response(route: APIRoute) -> dict[str, Any]:
    return {
        "response model": route.response_model,
        "status code": route.status_code,
        "response class": route.response_class,
        "response model include": route.response_model_include,
        "response model exclude": route.response_model_exclude,
        "response model by alias": route.response_model_by_alias,
        "response model exclude unset": route.response_model_exclude_unset,
        "response model exclude defaults": route.response_model_exclude_defaults,
        "response model exclude none": route.response_model_exclude_none,
    }


def differences(legacy: APIRoute, migrated: APIRoute) -> list[str]:
    found = []
    for label, (left, right) in _pairs(legacy, migrated).items():
        if left != right:
            found.append(f"{label}: legacy {_show(left)} vs async {_show(right)}")
    return found


def _pairs(legacy: APIRoute, migrated: APIRoute) -> dict[str, tuple[Any, Any]]:
    left = {**parameters(legacy.dependant), **promised_response(legacy)}
    right = {**parameters(migrated.dependant), **promised_response(migrated)}
    return {
        label: (left.get(label), right.get(label)) for label in sorted(left.keys() | right.keys())
    }


def _show(value: Any) -> str:
    if value is None:
        return "(absent)"
    return getattr(value, "__name__", None) or repr(value)


def check_same_contract(key: str, legacy: APIRoute, migrated: APIRoute) -> None:
    found = differences(legacy, migrated)
    if found:
        raise ContractMismatch(f"{key}: the two implementations differ: " + "; ".join(found))

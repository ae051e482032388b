"""Request field types that take JSON exactly as their JSON Schema says, nothing looser."""

from __future__ import annotations

from pydantic import BeforeValidator


def json_integer(value: object) -> object:
    """A JSON integer: 5, or 5.0 (JSON Schema counts it as one), never "5" or true.

    None passes, for the field's type to accept or refuse.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | None):
        raise ValueError("must be an integer")
    return value


# Place it after `Field(...)` in `Annotated`: it then runs first and the schema
# keeps the field's constraints. `Annotated[int, Field(ge=1), JsonInteger]`
JsonInteger = BeforeValidator(json_integer)

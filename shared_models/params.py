"""Path and query parameters both implementations declare, so their contracts cannot drift."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import BeforeValidator

MAX_ID = 2**31 - 1  # PostgreSQL integer: larger ids are a 422, never a database error
STORABLE_TEXT = r"^[^\x00]*$"  # the schema's word for what `Storable` checks


def without_nul(value: object) -> object:
    """PostgreSQL cannot store NUL in text: a 422 naming the field, never a database error."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain the NUL character (PostgreSQL text cannot hold it)")
    return value


Storable = BeforeValidator(without_nul)

UserId = Annotated[int, Path(ge=1, le=MAX_ID, description="user id")]
ItemId = Annotated[int, Path(ge=1, le=MAX_ID, description="item id")]
OrderId = Annotated[int, Path(ge=1, le=MAX_ID, description="order id")]
DocumentId = Annotated[int, Path(ge=1, le=MAX_ID, description="document id")]
Limit = Annotated[int, Query(ge=1, le=100, description="page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="rows to skip")]
SearchText = Annotated[
    str | None,
    Query(min_length=1, max_length=100, pattern=STORABLE_TEXT, description="substring, any case"),
    Storable,
]
Active = Annotated[bool | None, Query(description="only active (true) or inactive (false)")]
InStock = Annotated[bool | None, Query(description="only items with stock (true) or without")]

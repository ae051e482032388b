"""Path and query parameters both implementations declare, so their contracts cannot drift."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator

MAX_ID = 2**31 - 1  # PostgreSQL integer: larger ids are a 422, never a database error


def without_nul(text: str) -> str:
    """PostgreSQL cannot store NUL in text: a 422 naming the field, never a database error."""
    if "\x00" in text:
        raise ValueError("must not contain the NUL character (PostgreSQL text cannot hold it)")
    return text


Storable = AfterValidator(without_nul)

UserId = Annotated[int, Path(ge=1, le=MAX_ID, description="user id")]
ItemId = Annotated[int, Path(ge=1, le=MAX_ID, description="item id")]
OrderId = Annotated[int, Path(ge=1, le=MAX_ID, description="order id")]
DocumentId = Annotated[int, Path(ge=1, le=MAX_ID, description="document id")]
Limit = Annotated[int, Query(ge=1, le=100, description="page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="rows to skip")]
SearchText = Annotated[
    str | None,
    Query(min_length=1, max_length=100, description="case-insensitive substring"),
    Storable,
]
Active = Annotated[bool | None, Query(description="only active (true) or inactive (false)")]
InStock = Annotated[bool | None, Query(description="only items with stock (true) or without")]

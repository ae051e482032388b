"""The request and response schemas both implementations of every route use."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from gateway import JsonInteger
from shared_models.models import EMBEDDING_DIMENSIONS
from shared_models.params import MAX_ID, STORABLE_TEXT, Storable

T = TypeVar("T")

# Request bodies take exactly what their schema says: JSON types as declared
# (no "5" for 5, no 0 for false), no unknown fields, no NUL in text.
EMAIL_PART = r"[^@\x00-\x20\x7f]+"  # no control characters, no spaces, one @
# Validators after `Field`: they run first, and the schema keeps its constraints.
Email = Annotated[
    str, Field(max_length=254, pattern=rf"^{EMAIL_PART}@{EMAIL_PART}\.{EMAIL_PART}$"), Storable
]
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=STORABLE_TEXT), Storable]
Title = Annotated[str, Field(min_length=1, max_length=200, pattern=STORABLE_TEXT), Storable]
Text = Annotated[str, Field(max_length=100_000, pattern=STORABLE_TEXT), Storable]
Sku = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Z0-9-]+$")]

Stock = Annotated[int, Field(ge=0, le=1_000_000), JsonInteger]
RowId = Annotated[int, Field(ge=1, le=MAX_ID), JsonInteger]
Quantity = Annotated[int, Field(ge=1, le=1000), JsonInteger]
CENTS = Decimal("0.01")
PRICE_TEXT = r"^(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?$"  # numeric(12, 2)
MAX_WHOLE_PRICE = 10**10 - 1


def exact_price(value: object) -> object:
    """A price as a decimal string ("12.50", as responses give it) or a whole number.

    Never a fraction in a JSON number: a float cannot hold cents exactly.
    """
    whole = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer()
    )
    if not whole and not (isinstance(value, str) and re.fullmatch(PRICE_TEXT, value)):
        raise ValueError(
            'must be a decimal string of up to 10 digits and 2 decimals ("12.50") or a whole number'
        )
    return value


def in_cents(price: Decimal) -> Decimal:
    return price.quantize(CENTS)  # "1.5" answers as "1.50", as stored


Price = Annotated[
    Decimal,
    Field(ge=0, max_digits=12, decimal_places=2),
    BeforeValidator(exact_price),
    AfterValidator(in_cents),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": PRICE_TEXT},
                {"type": "integer", "minimum": 0, "maximum": MAX_WHOLE_PRICE},
            ],
            "examples": ["12.50"],
        }
    ),
]
Component = Annotated[float, Strict(), Field(ge=-1e6, le=1e6)]  # finite distances in float4
Embedding = Annotated[
    list[Component], Field(min_length=EMBEDDING_DIMENSIONS, max_length=EMBEDDING_DIMENSIONS)
]


def not_documented_as_null(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


LeftOut = Field(default=None, json_schema_extra=not_documented_as_null)


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class UserCreate(RequestModel):
    email: Email
    name: Name
    is_active: StrictBool = True


class UserUpdate(RequestModel):
    """The fields to change: at least one; each may be left out, none set to null."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    email: Email = LeftOut
    name: Name = LeftOut
    is_active: StrictBool = LeftOut

    @field_validator("email", "name", "is_active", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be left out, but not set to null")
        return value

    @model_validator(mode="after")
    def _something_to_change(self) -> UserUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one of email, name, is_active")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class UserRead(ReadModel):
    id: int
    email: str
    name: str
    is_active: bool
    created_at: datetime


class ItemCreate(RequestModel):
    sku: Sku
    name: Title
    price: Price
    stock: Stock


class ItemRead(ReadModel):
    id: int
    sku: str
    name: str
    price: Decimal
    stock: int
    created_at: datetime


class OrderLineCreate(RequestModel):
    item_id: RowId
    quantity: Quantity


class OrderCreate(RequestModel):
    user_id: RowId
    lines: Annotated[
        list[OrderLineCreate],
        Field(min_length=1, max_length=50, description="lines naming one item are added up"),
    ]

    def quantities(self) -> dict[int, int]:
        """The quantity ordered of each item, by item id."""
        wanted: dict[int, int] = {}
        for line in self.lines:
            wanted[line.item_id] = wanted.get(line.item_id, 0) + line.quantity
        return wanted


class OrderLineRead(ReadModel):
    item_id: int
    quantity: int
    unit_price: Decimal


class OrderRead(ReadModel):
    id: int
    user_id: int
    total: Decimal
    created_at: datetime
    lines: list[OrderLineRead]


class SalesRow(ReadModel):
    item_id: int
    sku: str
    name: str
    orders: int
    units_sold: int
    revenue: Decimal


class DocumentCreate(RequestModel):
    title: Title
    body: Text
    embedding: Embedding


class DocumentRead(ReadModel):
    id: int
    title: str
    body: str
    embedding: list[float]
    created_at: datetime

    @field_validator("embedding", mode="before")
    @classmethod
    def _plain_list(cls, embedding: Any) -> Any:
        return embedding.tolist() if hasattr(embedding, "tolist") else embedding


class DocumentSearch(RequestModel):
    embedding: Embedding
    limit: Annotated[int, Field(ge=1, le=50), JsonInteger] = 5


class DocumentMatch(ReadModel):
    id: int
    title: str
    distance: float

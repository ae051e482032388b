"""The request and response schemas both implementations of every route use."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared_models.models import EMBEDDING_DIMENSIONS
from shared_models.params import MAX_ID, Storable

T = TypeVar("T")
CENTS = Decimal("0.01")

Email = Annotated[
    str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"), Storable
]
Name = Annotated[str, Field(min_length=1, max_length=100), Storable]
Price = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]
Component = Annotated[float, Field(ge=-1e6, le=1e6)]  # distances stay finite in float4
Embedding = Annotated[
    list[Component], Field(min_length=EMBEDDING_DIMENSIONS, max_length=EMBEDDING_DIMENSIONS)
]


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class UserCreate(BaseModel):
    email: Email
    name: Name
    is_active: bool = True


class UserUpdate(BaseModel):
    email: Email | None = None
    name: Name | None = None
    is_active: bool | None = None

    @field_validator("email", "name", "is_active")
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


class ItemCreate(BaseModel):
    sku: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Z0-9-]+$")]
    name: Annotated[str, Field(min_length=1, max_length=200), Storable]
    price: Price
    stock: Annotated[int, Field(ge=0, le=1_000_000)]

    @field_validator("price")
    @classmethod
    def _as_stored(cls, price: Decimal) -> Decimal:
        return price.quantize(CENTS)


class ItemRead(ReadModel):
    id: int
    sku: str
    name: str
    price: Decimal
    stock: int
    created_at: datetime


class OrderLineCreate(BaseModel):
    item_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    quantity: Annotated[int, Field(ge=1, le=1000)]


class OrderCreate(BaseModel):
    user_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    lines: Annotated[list[OrderLineCreate], Field(min_length=1, max_length=50)]

    @field_validator("lines")
    @classmethod
    def _each_item_once(cls, lines: list[OrderLineCreate]) -> list[OrderLineCreate]:
        item_ids = [line.item_id for line in lines]
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("each item may appear in one line only")
        return lines


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


class DocumentCreate(BaseModel):
    title: Annotated[str, Field(min_length=1, max_length=200), Storable]
    body: Annotated[str, Field(max_length=100_000), Storable]
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


class DocumentSearch(BaseModel):
    embedding: Embedding
    limit: Annotated[int, Field(ge=1, le=50)] = 5


class DocumentMatch(ReadModel):
    id: int
    title: str
    distance: float

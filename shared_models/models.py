"""The demo domain's tables: users, a catalog of items, orders with lines, and documents.

Relationships never load lazily (`lazy="raise"`): an AsyncSession cannot do
implicit I/O, so both implementations load what they return explicitly.
"""

from __future__ import annotations

from decimal import Decimal

from pgvector.sqlalchemy import Vector
from sqlalchemy import CheckConstraint, ColumnElement, ForeignKey, Index, Numeric, String, Text, or_
from sqlalchemy.orm import Mapped, mapped_column, relationship

from shared_models.base import Base, Timestamped

EMBEDDING_DIMENSIONS = 8
Money = Numeric(12, 2)


class User(Timestamped, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    is_active: Mapped[bool] = mapped_column(default=True, server_default="true")

    orders: Mapped[list[Order]] = relationship(back_populates="user", lazy="raise")

    @classmethod
    def text_matches(cls, text: str) -> ColumnElement[bool]:
        """Name or email contains `text`, ignoring case; % and _ match themselves."""
        return or_(
            cls.name.icontains(text, autoescape=True), cls.email.icontains(text, autoescape=True)
        )


class Item(Timestamped, Base):
    __tablename__ = "items"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("price >= 0", name="price_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    price: Mapped[Decimal] = mapped_column(Money)
    stock: Mapped[int]

    @classmethod
    def text_matches(cls, text: str) -> ColumnElement[bool]:
        """Name contains `text`, ignoring case; % and _ match themselves."""
        return cls.name.icontains(text, autoescape=True)


class Order(Timestamped, Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    total: Mapped[Decimal] = mapped_column(Money)

    user: Mapped[User] = relationship(back_populates="orders", lazy="raise")
    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", lazy="raise", order_by="OrderLine.id"
    )


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="RESTRICT"), index=True)
    quantity: Mapped[int]
    unit_price: Mapped[Decimal] = mapped_column(Money)

    order: Mapped[Order] = relationship(back_populates="lines", lazy="raise")
    item: Mapped[Item] = relationship(lazy="raise")


class Document(Timestamped, Base):
    """A text with its embedding; the table exists only where pgvector does."""

    __tablename__ = "documents"
    __table_args__ = (
        Index(
            "ix_documents_embedding_hnsw",
            "embedding",
            postgresql_using="hnsw",
            postgresql_ops={"embedding": "vector_l2_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    embedding: Mapped[list[float]] = mapped_column(Vector(EMBEDDING_DIMENSIONS))

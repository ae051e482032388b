"""Deterministic demo data: the same sizes always give the same rows, ids included."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, Engine, insert, inspect, text

from shared_models.models import EMBEDDING_DIMENSIONS, Document, Item, Order, OrderLine, User

FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson")
WORDS = ("async", "pool", "thread", "session", "vector", "query", "index", "route", "canary")
SEEDED_TABLES = ("order_lines", "orders", "documents", "items", "users")


@dataclass(frozen=True)
class DemoSize:
    users: int = 100
    items: int = 50
    orders: int = 200
    documents: int = 200


def user_row(n: int) -> dict[str, object]:
    first, last = FIRST_NAMES[n % len(FIRST_NAMES)], LAST_NAMES[n // len(FIRST_NAMES) % 8]
    return {
        "id": n,
        "email": f"user{n}@example.com",
        "name": f"{first} {last}",
        "is_active": n % 10 != 0,
    }


def item_row(n: int) -> dict[str, object]:
    price = Decimal(100 + (n * 7919) % 9900) / 100
    return {
        "id": n,
        "sku": f"SKU-{n:05d}",
        "name": f"{WORDS[n % len(WORDS)].title()} kit {n}",
        "price": price,
        "stock": 10 + (n * 37) % 200,
    }


def embedding_for(n: int) -> list[float]:
    rng = random.Random(n)
    vector = [rng.uniform(-1, 1) for _ in range(EMBEDDING_DIMENSIONS)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [round(x / norm, 6) for x in vector]


def document_row(n: int) -> dict[str, object]:
    rng = random.Random(-n)
    words = " ".join(rng.choice(WORDS) for _ in range(12))
    return {
        "id": n,
        "title": f"Note {n}: {WORDS[n % len(WORDS)]}",
        "body": words,
        "embedding": embedding_for(n),
    }


def order_rows(size: DemoSize) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    orders, lines = [], []
    rng = random.Random(2024)
    line_id = 0
    for n in range(1, size.orders + 1):
        chosen = rng.sample(range(1, size.items + 1), k=min(3, size.items))
        total = Decimal(0)
        for item_id in chosen:
            line_id += 1
            quantity = rng.randint(1, 3)
            price = item_row(item_id)["price"]
            assert isinstance(price, Decimal)
            total += price * quantity
            lines.append(
                {
                    "id": line_id,
                    "order_id": n,
                    "item_id": item_id,
                    "quantity": quantity,
                    "unit_price": price,
                }
            )
        orders.append({"id": n, "user_id": rng.randint(1, size.users), "total": total})
    return orders, lines


def reset_sequences(connection: Connection, tables: tuple[str, ...]) -> None:
    for table in tables:
        connection.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
            )
        )


def present_tables(connection: Connection) -> tuple[str, ...]:
    existing = set(inspect(connection).get_table_names())
    return tuple(table for table in SEEDED_TABLES if table in existing)


def seed_connection(connection: Connection, size: DemoSize) -> dict[str, int]:
    """Insert the demo rows on `connection` (inside its transaction); return counts per table."""
    tables = present_tables(connection)
    orders, lines = order_rows(size) if size.users and size.items else ([], [])
    batches = {
        "users": (User, [user_row(n) for n in range(1, size.users + 1)]),
        "items": (Item, [item_row(n) for n in range(1, size.items + 1)]),
        "orders": (Order, orders),
        "order_lines": (OrderLine, lines),
        "documents": (Document, [document_row(n) for n in range(1, size.documents + 1)]),
    }
    counts = {}
    for table, (model, rows) in batches.items():
        if table in tables and rows:
            connection.execute(insert(model), rows)
        counts[table] = len(rows) if table in tables else 0
    reset_sequences(connection, tables)
    return counts


def clear(connection: Connection) -> None:
    tables = ", ".join(present_tables(connection))
    connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def seed(engine: Engine, size: DemoSize, *, replace: bool = False) -> dict[str, int]:
    with engine.begin() as connection:
        if replace:
            clear(connection)
        return seed_connection(connection, size)

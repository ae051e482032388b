"""Legacy shapes at the edges of what a draft can rewrite, for the migration assistant's tests.

The session given the old way (`db: Session = Depends(get_db)`) after a
parameter with a default, an untyped helper that receives the session, a
relationship read inside a comprehension, `with db.begin():`, a bulk call
AsyncSession lacks, and an async helper called inside a generator expression.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import ForeignKey
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "edge_authors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]

    books: Mapped[list[Book]] = relationship(back_populates="author")


class Book(Base):
    __tablename__ = "edge_books"

    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("edge_authors.id"))
    title: Mapped[str]

    author: Mapped[Author] = relationship(back_populates="books")


class BookOut(BaseModel):
    id: int
    title: str
    author_name: str


def get_db() -> Session:
    """The app's own session dependency (the gateway gives its session in its place)."""
    raise NotImplementedError


router = APIRouter()


def titles_of(db, author_id):  # type: ignore[no-untyped-def]
    return [b.title for b in db.query(Book).filter(Book.author_id == author_id).all()]


@router.get("/books", response_model=list[BookOut])
def list_books(limit: int = 10, db: Session = Depends(get_db)) -> list[BookOut]:
    books = db.query(Book).order_by(Book.id).limit(limit).all()
    return [BookOut(id=b.id, title=b.title, author_name=b.author.name) for b in books]


@router.post("/authors/{author_id}/books")
def add_books(author_id: int, titles: list[str], db: Session = Depends(get_db)) -> list[str]:
    with db.begin():
        db.bulk_save_objects([Book(author_id=author_id, title=t) for t in titles])
    return titles_of(db, author_id)  # type: ignore[no-any-return]


@router.get("/authors/{author_id}")
def author_books(author_id: int, db: Session = Depends(get_db)) -> dict[str, int]:
    author = db.get(Author, author_id)
    if author is None:
        return {"books": 0, "titles": 0}
    return {"books": len(author.books), "titles": sum(1 for _ in titles_of(db, author_id))}

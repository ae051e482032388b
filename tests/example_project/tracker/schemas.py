"""What the tracker's API accepts and answers."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ProjectCreate(BaseModel):
    key: str = Field(min_length=2, max_length=10, pattern="^[A-Z]+$", examples=["OPS"])
    name: str = Field(min_length=1, max_length=100, examples=["Operations"])


class ProjectRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    key: str
    name: str


class TicketCreate(BaseModel):
    title: str = Field(min_length=1, max_length=200, examples=["Rotate the certificates"])


class TicketUpdate(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    status: Literal["open", "closed"] | None = None


class TicketRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    title: str
    status: str
    opened_at: datetime

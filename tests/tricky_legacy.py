"""Legacy code a migration trips over, for the migration assistant's tests (it is never served).

Teams with members and tasks, written the classic way, each endpoint with one
trap: chained filters, `filter_by`, `order_by().limit().offset()`,
`query(func.count(...))`, `joinedload`, a commit inside a loop, relationship
walks that would lazy-load under an AsyncSession, blocking calls hidden in a
helper of the module and in another module, and a dependency that queries the
sync session. Its models have
tables of their own and default (lazy) relationships, like most apps' models.
"""

from __future__ import annotations

import hashlib
import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ForeignKey, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, joinedload, mapped_column, relationship

from gateway import SyncDB
from tests.tricky_helpers import audit

EXPORT_HEADER = "export.header"


class Base(DeclarativeBase):
    pass


class Team(Base):
    __tablename__ = "tricky_teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))

    members: Mapped[list[Member]] = relationship(back_populates="team")
    tasks: Mapped[list[Task]] = relationship(back_populates="team")


class Member(Base):
    __tablename__ = "tricky_members"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("tricky_teams.id"))
    email: Mapped[str] = mapped_column(String(254))

    team: Mapped[Team] = relationship(back_populates="members")


class Task(Base):
    __tablename__ = "tricky_tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("tricky_teams.id"))
    title: Mapped[str] = mapped_column(String(200))
    done: Mapped[bool] = mapped_column(default=False)

    team: Mapped[Team] = relationship(back_populates="tasks")


class Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class TaskRead(Read):
    id: int
    title: str
    done: bool


class MemberRead(Read):
    id: int
    email: str


class TeamRead(Read):
    id: int
    name: str


class RosterRead(TeamRead):
    members: list[MemberRead]


class TeamStats(BaseModel):
    name: str
    done: int


def get_member(member_id: int, db: SyncDB) -> Member:
    member = db.get(Member, member_id)
    if member is None:
        raise HTTPException(status_code=404, detail="no such member")
    return member


MemberDep = Annotated[Member, Depends(get_member)]
router = APIRouter(prefix="/teams", tags=["teams"])


def team_or_404(db: Session, team_id: int) -> Team:
    team = db.get(Team, team_id)
    if team is None:
        raise HTTPException(status_code=404, detail="no such team")
    return team


def checksum(titles: list[str]) -> str:
    time.sleep(0.01)  # paces the upstream that reads the export
    return hashlib.sha256("\n".join(titles).encode()).hexdigest()


@router.get("/{team_id}/tasks", response_model=list[TaskRead])
def open_tasks(team_id: int, db: SyncDB) -> list[Task]:
    return (
        db.query(Task)
        .filter(Task.team_id == team_id)
        .filter(Task.done.is_(False))
        .order_by(Task.id)
        .all()
    )


@router.get("/{team_id}/members/by-email", response_model=MemberRead)
def member_by_email(team_id: int, email: str, db: SyncDB) -> Member:
    member = db.query(Member).filter_by(team_id=team_id, email=email).first()
    if member is None:
        raise HTTPException(status_code=404, detail="no such member")
    return member


@router.get("/{team_id}/tasks/page", response_model=list[TaskRead])
def task_page(team_id: int, db: SyncDB, limit: int = 10, offset: int = 0) -> list[Task]:
    query = db.query(Task).filter(Task.team_id == team_id)
    return query.order_by(Task.id.desc()).limit(limit).offset(offset).all()


@router.get("/{team_id}/stats", response_model=TeamStats)
def team_stats(team_id: int, db: SyncDB) -> TeamStats:
    team = team_or_404(db, team_id)
    done = (
        db.query(func.count(Task.id)).filter(Task.team_id == team.id, Task.done.is_(True)).scalar()
    )
    return TeamStats(name=team.name, done=done or 0)


@router.get("/{team_id}/roster", response_model=RosterRead)
def roster(team_id: int, db: SyncDB) -> Team:
    team = db.query(Team).options(joinedload(Team.members)).filter(Team.id == team_id).first()
    if team is None:
        raise HTTPException(status_code=404, detail="no such team")
    return team


@router.post("/{team_id}/tasks/close", response_model=list[TaskRead])
def close_tasks(team_id: int, db: SyncDB) -> list[Task]:
    tasks = db.query(Task).filter(Task.team_id == team_id, Task.done.is_(False)).all()
    for task in tasks:
        task.done = True
        db.commit()  # each task closes on its own, as the old batch job did
    audit(f"closed {len(tasks)} tasks of team {team_id}")
    return tasks


@router.get("/tasks/{task_id}/team", response_model=TeamRead)
def task_team(task_id: int, db: SyncDB) -> Team:
    task = db.query(Task).filter(Task.id == task_id).one()
    return task.team


@router.get("/members/{member_id}/teammates", response_model=list[MemberRead])
def teammates(member: MemberDep) -> list[Member]:
    return [other for other in member.team.members if other.id != member.id]


@router.get("/{team_id}/export")
def export(team_id: int, db: SyncDB) -> dict[str, str]:
    titles = [task.title for task in db.query(Task).filter(Task.team_id == team_id).all()]
    with open(EXPORT_HEADER) as header:
        return {"header": header.read(), "checksum": checksum(titles)}

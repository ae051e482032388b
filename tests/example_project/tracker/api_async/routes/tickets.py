"""Tickets, migrated: the same functions as `tracker.api.routes.tickets`, on an AsyncSession."""

from typing import Literal

from fastapi import APIRouter, HTTPException
from sqlalchemy import select

from gateway import AsyncDB
from gateway.database.queries import read_one, update_returning
from tracker.api_async.deps import ProjectDep
from tracker.models import Ticket
from tracker.schemas import TicketRead, TicketUpdate

router = APIRouter(tags=["tickets"])


@router.get("/projects/{project_id}/tickets", response_model=list[TicketRead])
async def list_tickets(
    project: ProjectDep, session: AsyncDB, status: Literal["open", "closed"] | None = None
) -> list[Ticket]:
    query = select(Ticket).where(Ticket.project_id == project.id)
    if status is not None:
        query = query.where(Ticket.status == status)
    return list(await session.scalars(query.order_by(Ticket.id)))


@router.get("/tickets/{ticket_id}", response_model=TicketRead)
async def read_ticket(ticket_id: int, session: AsyncDB) -> TicketRead:
    ticket = await read_one(session, Ticket, ticket_id, TicketRead)
    if ticket is None:
        raise HTTPException(status_code=404, detail="ticket not found")
    return ticket


@router.patch("/tickets/{ticket_id}", response_model=TicketRead)
async def update_ticket(ticket_id: int, body: TicketUpdate, session: AsyncDB) -> TicketRead:
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        return await read_ticket(ticket_id, session)
    updated = await update_returning(
        session, Ticket, Ticket.id == ticket_id, values=changes, schema=TicketRead
    )
    if not updated:
        raise HTTPException(status_code=404, detail="ticket not found")
    return updated[0]

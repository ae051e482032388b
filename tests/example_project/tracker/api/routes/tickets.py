"""Tickets: listed per project, opened, read, edited, closed and deleted."""

from typing import Literal

from fastapi import APIRouter, HTTPException, Response
from sqlalchemy import select

from tracker.api.deps import ProjectDep, SessionDep
from tracker.errors import TicketAlreadyClosed
from tracker.models import Ticket
from tracker.schemas import TicketCreate, TicketRead, TicketUpdate

router = APIRouter(tags=["tickets"])


@router.get("/projects/{project_id}/tickets", response_model=list[TicketRead])
def list_tickets(
    project: ProjectDep, session: SessionDep, status: Literal["open", "closed"] | None = None
) -> list[Ticket]:
    query = select(Ticket).where(Ticket.project_id == project.id)
    if status is not None:
        query = query.where(Ticket.status == status)
    return list(session.scalars(query.order_by(Ticket.id)))


@router.post("/projects/{project_id}/tickets", response_model=TicketRead, status_code=201)
def open_ticket(project: ProjectDep, body: TicketCreate, session: SessionDep) -> Ticket:
    ticket = Ticket(project_id=project.id, title=body.title)
    session.add(ticket)
    session.commit()
    session.refresh(ticket)
    return ticket


@router.get("/tickets/{ticket_id}", response_model=TicketRead)
def read_ticket(ticket_id: int, session: SessionDep) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise HTTPException(status_code=404, detail="ticket not found")
    return ticket


@router.patch("/tickets/{ticket_id}", response_model=TicketRead)
def update_ticket(ticket_id: int, body: TicketUpdate, session: SessionDep) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise HTTPException(status_code=404, detail="ticket not found")
    for name, value in body.model_dump(exclude_unset=True).items():
        setattr(ticket, name, value)
    session.commit()
    session.refresh(ticket)
    return ticket


@router.post("/tickets/{ticket_id}/close", response_model=TicketRead)
def close_ticket(ticket_id: int, session: SessionDep) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise HTTPException(status_code=404, detail="ticket not found")
    if ticket.status == "closed":
        raise TicketAlreadyClosed(ticket_id)
    ticket.status = "closed"
    session.commit()
    session.refresh(ticket)
    return ticket


@router.delete("/tickets/{ticket_id}", status_code=204)
def delete_ticket(ticket_id: int, session: SessionDep) -> Response:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise HTTPException(status_code=404, detail="ticket not found")
    session.delete(ticket)
    session.commit()
    return Response(status_code=204)

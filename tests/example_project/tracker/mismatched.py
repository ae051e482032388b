"""A careless twin, for the tests: its status filter takes other values than the legacy route's."""

from typing import Literal

from fastapi import APIRouter

from gateway import AsyncDB, adopt
from tracker.api.deps import get_db
from tracker.api_async.deps import ProjectDep
from tracker.main import API_PREFIX, build_app
from tracker.schemas import TicketRead

router = APIRouter(prefix=API_PREFIX)


@router.get("/projects/{project_id}/tickets", response_model=list[TicketRead], status_code=200)
async def list_tickets(
    project: ProjectDep, session: AsyncDB, status: Literal["open", "done"] | None = None
) -> list[TicketRead]:
    return []


app = adopt(build_app(), async_routers=[router], sync_session_dependencies=[get_db])

"""Dependencies every route shares: the database session, and a project looked up by id."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Response
from sqlalchemy.orm import Session

from tracker.models import Project


def get_db(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]


def get_project(project_id: int, session: SessionDep) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise HTTPException(status_code=404, detail="project not found")
    return project


ProjectDep = Annotated[Project, Depends(get_project)]


async def api_version_header(response: Response) -> None:
    """Every answer of the API names its version (a dependency of the whole API router)."""
    response.headers["x-tracker-api"] = "1"

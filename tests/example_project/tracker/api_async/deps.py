"""The async side's shared dependencies: the same names and parameters as `tracker.api.deps`."""

from typing import Annotated

from fastapi import Depends, HTTPException

from gateway import AsyncDB
from tracker.models import Project


async def get_project(project_id: int, session: AsyncDB) -> Project:
    project = await session.get(Project, project_id)
    if project is None:
        raise HTTPException(status_code=404, detail="project not found")
    return project


ProjectDep = Annotated[Project, Depends(get_project)]

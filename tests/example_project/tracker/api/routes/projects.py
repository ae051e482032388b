"""Projects."""

from fastapi import APIRouter
from sqlalchemy import select

from tracker.api.deps import ProjectDep, SessionDep
from tracker.models import Project
from tracker.schemas import ProjectCreate, ProjectRead

router = APIRouter(prefix="/projects", tags=["projects"])


@router.get("/", response_model=list[ProjectRead])
def list_projects(session: SessionDep) -> list[Project]:
    return list(session.scalars(select(Project).order_by(Project.id)))


@router.post("/", response_model=ProjectRead, status_code=201)
def create_project(body: ProjectCreate, session: SessionDep) -> Project:
    project = Project(key=body.key, name=body.name)
    session.add(project)
    session.commit()
    session.refresh(project)
    return project


@router.get("/{project_id}", response_model=ProjectRead)
def read_project(project: ProjectDep) -> Project:
    return project

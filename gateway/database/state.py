"""What the lifespan builds and every request reads: settings, the database and its gates."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp

from gateway.database.engines import Database
from gateway.database.gates import ConnectionGate, ThreadGate
from gateway.settings import Settings


@dataclass
class GatewayState:
    settings: Settings
    database: Database
    database_url: str
    threads: ThreadGate
    connections: ConnectionGate
    required_extensions: frozenset[str] = frozenset()
    draining: bool = False  # set on SIGTERM: readiness answers 503 while requests finish


class GatewayNotStarted(RuntimeError):
    """A request reached the gateway before its lifespan set up the database."""


def gateway_state(app: ASGIApp) -> GatewayState:
    state = getattr(getattr(app, "state", None), "gateway", None)
    if not isinstance(state, GatewayState):
        raise GatewayNotStarted(
            "app.state.gateway is missing: the app was not started through its lifespan "
            "(build it with gateway.create_app() and run it under uvicorn, or enter "
            "app.router.lifespan_context(app) in tests)"
        )
    return state

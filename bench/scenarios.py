"""What is measured: the configurations serving the users routes, grouped into scenarios."""

from __future__ import annotations

from dataclasses import dataclass, field

USERS_PATH = "/users/{id}"
SLOW_LEGACY_PATH = "/slow"
SLOW_LEGACY_APP = "bench.apps.gateway_slow_legacy:app"
GATEWAY_APP = "demo.app:app"
USERS_ROUTE = "GET /users/{user_id}"
USERS_ROUTES = (
    "GET /users",
    USERS_ROUTE,
    "POST /users",
    "PATCH /users/{user_id}",
    "DELETE /users/{user_id}",
)
BACKGROUND_CONNECTIONS = 64
ROUTER_WORKLOADS = {
    "mixed": "40 % GET by id, 30 % list pages (some filtered), 20 % PATCH, 10 % POST",
    "get": "GET /users/{id} alone",
    "list": "list pages alone (GET /users?limit=20&offset=N, some filtered)",
    "patch": "PATCH /users/{id} alone",
    "post": "POST /users alone",
}


@dataclass(frozen=True)
class Configuration:
    """One server setup under load.

    `mode` is the mode every route in `routes` is put in through the admin API; with a
    `workload`, router.lua drives that workload instead of load.lua's `GET /users/{id}`.
    """

    name: str
    label: str
    app: str | None
    gateway: bool = False
    workers: int | None = None
    mode: tuple[tuple[str, object], ...] = ()
    background_path: str | None = None
    pgbench: bool = False
    routes: tuple[str, ...] = (USERS_ROUTE,)
    workload: str | None = None
    env: tuple[tuple[str, str], ...] = ()

    @property
    def mode_body(self) -> dict[str, object]:
        return dict(self.mode)


def bare(name: str, label: str) -> Configuration:
    return Configuration(name, label, f"bench.apps.{name}:app")


def gateway(
    name: str,
    label: str,
    mode: str,
    *,
    percent: int = 0,
    primary: str = "legacy",
    workers: int | None = None,
    background_path: str | None = None,
    app: str = GATEWAY_APP,
) -> Configuration:
    body: tuple[tuple[str, object], ...] = (("mode", mode),)
    if mode == "canary":
        body += (("percent", percent),)
    if mode == "shadow":
        body += (("primary", primary),)
    return Configuration(
        name,
        label,
        app,
        gateway=True,
        workers=workers,
        mode=body,
        background_path=background_path,
    )


def router(
    implementation: str, workload: str, *, suffix: str = "", note: str = "", **env: str
) -> Configuration:
    """The demo app with every users route in `implementation`'s mode, under `workload`."""
    return Configuration(
        f"router_{implementation}_{workload}{suffix}",
        f"users router, every route {implementation}{note}: {ROUTER_WORKLOADS[workload]}",
        GATEWAY_APP,
        gateway=True,
        mode=(("mode", implementation),),
        routes=USERS_ROUTES,
        workload=workload,
        env=tuple(env.items()),
    )


def database_alone(workload: str) -> Configuration:
    """PostgreSQL itself running the statements the lean path sends for `workload`."""
    return Configuration(
        f"pgbench_{workload}",
        f"ceiling: PostgreSQL itself, the lean path's statements: {ROUTER_WORKLOADS[workload]}",
        None,
        pgbench=True,
        workload=workload,
    )


ROUTER_CONFIGURATIONS = (
    *(
        router(implementation, workload)
        for workload in ROUTER_WORKLOADS
        for implementation in ("legacy", "async")
    ),
    router(
        "async",
        "mixed",
        suffix="_unprepared",
        note=" without named prepared statements",
        GATEWAY_PREPARED_STATEMENTS="false",
    ),
    *(database_alone(workload) for workload in ROUTER_WORKLOADS),
)

CONFIGURATIONS: dict[str, Configuration] = {
    config.name: config
    for config in (
        bare("article_sync", "article: def route + sync yield session"),
        bare("article_async_sync", "article: async def route + sync yield session"),
        bare("article_async", "article: async def route + AsyncSession yield dependency"),
        bare("classic_sync", "classic sync: ORM Session inside the def handler"),
        bare("lean_sync", "hand-tuned sync: Core, autocommit, no response_model"),
        gateway("gateway_legacy", "gateway, legacy implementation", "legacy"),
        gateway("gateway_async", "gateway, async implementation", "async"),
        bare("starlette_asyncpg", "ceiling: Starlette + raw asyncpg pool"),
        bare("fastapi_nodb", "ceiling: FastAPI, no database"),
        Configuration(
            "pgbench", "ceiling: PostgreSQL itself (pgbench, same lookup)", None, pgbench=True
        ),
        bare("gateway_endpoint_bare", "gateway's async endpoint code in a bare FastAPI app"),
        bare("slow_legacy", "slow database: def route, 40 threads, 40 connections"),
        bare("slow_async", "slow database: async def route, 100 connections"),
        gateway(
            "gateway_async_under_load",
            "gateway async, while a legacy route waiting 100 ms in SQL (GET /slow) is saturated",
            "async",
            background_path=SLOW_LEGACY_PATH,
            app=SLOW_LEGACY_APP,
        ),
        gateway(
            "gateway_canary50",
            "gateway, canary 50 % to async (automatic rollback held off)",
            "canary",
            percent=50,
        ),
        gateway("gateway_shadow", "gateway, shadow (legacy answers, async compared)", "shadow"),
        gateway("serve_legacy_1", "gateway serve --workers 1, legacy", "legacy", workers=1),
        gateway("serve_legacy_2", "gateway serve --workers 2, legacy", "legacy", workers=2),
        gateway("serve_async_1", "gateway serve --workers 1, async", "async", workers=1),
        gateway("serve_async_2", "gateway serve --workers 2, async", "async", workers=2),
        *ROUTER_CONFIGURATIONS,
    )
}


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    question: str
    configurations: tuple[str, ...] = field(default=())


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "article",
            "1. The article's three-way table, and what works",
            "Do the article's patterns hold up, and what do async and leanness each buy?",
            ("article_sync", "article_async_sync", "article_async", "classic_sync", "lean_sync"),
        ),
        Scenario(
            "gateway",
            "2. The route through the gateway",
            "How fast are the legacy and the migrated implementation of the same route?",
            ("gateway_legacy", "gateway_async"),
        ),
        Scenario(
            "ceilings",
            "3. Ceilings",
            "How fast can this machine answer the lookup at all?",
            ("starlette_asyncpg", "fastapi_nodb", "pgbench"),
        ),
        Scenario(
            "gateway-cost",
            "4. The gateway's own cost",
            "What do routing and metrics cost the same async endpoint?",
            ("gateway_endpoint_bare", "gateway_async"),
        ),
        Scenario(
            "slow-database",
            "5. A slow database (100 ms in PostgreSQL)",
            "When every query waits, do threads or the event loop serve more?",
            ("slow_legacy", "slow_async"),
        ),
        Scenario(
            "isolation",
            "6. Isolation",
            "Does a saturated legacy route slow the async one down?",
            ("gateway_async", "gateway_async_under_load"),
        ),
        Scenario(
            "modes",
            "7. Route modes",
            "What do canary and shadow cost next to plain legacy and async?",
            ("gateway_legacy", "gateway_async", "gateway_canary50", "gateway_shadow"),
        ),
        Scenario(
            "scale",
            "8. Scale: one worker or two",
            "Does a second worker process add throughput?",
            ("serve_legacy_1", "serve_legacy_2", "serve_async_1", "serve_async_2"),
        ),
        Scenario(
            "router",
            "9. A whole router: the users routes, legacy vs async",
            "With every users route migrated, does the gain hold under reads and writes? "
            "Each answer is matched to its request by the id, offset or email it carries.",
            tuple(config.name for config in ROUTER_CONFIGURATIONS),
        ),
    )
}


def select_configurations(scenarios: list[str], only: list[str] | None) -> list[Configuration]:
    """The configurations the chosen scenarios need, each once, in scenario order."""
    names: list[str] = []
    for scenario in scenarios:
        names.extend(name for name in SCENARIOS[scenario].configurations if name not in names)
    if only:
        names = [name for name in names if name in only]
    return [CONFIGURATIONS[name] for name in names]

"""Every setting of the gateway, read once from `GATEWAY_*` variables or the project's pyproject.

A setting comes from, in this order: the value an app passes in code, the
environment variable `GATEWAY_<NAME>`, the `[tool.gateway]` table of the
`pyproject.toml` in the working directory, the default here. An app may
subclass `Settings` to change defaults (the demo does). Nothing else in the
gateway reads the environment. An invalid value stops the start with
`InvalidSettings`, whose message names the variable and the problem.
"""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from gateway.errors import ConfigurationError, ErrorFormat
from gateway.impl import Impl

ENV_PREFIX = "GATEWAY_"
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LogLevel = Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]
PoolSize = Annotated[int, Field(ge=1, le=1000)]
Overflow = Annotated[int, Field(ge=0, le=1000)]
# A place in a JSON answer, from the body's root (gateway.routing.field_paths):
# `updated_at`, `items[].created_at`, `[].id`, `prices.*.amount`.
FIELD_NAME = r"[^.\[\]*]+"
FIELD_STEP = rf"(?:{FIELD_NAME}|\*)(?:\[\])*"
FIELD_PATH = rf"(?:\[\])+(?:\.{FIELD_STEP})*|{FIELD_STEP}(?:\.{FIELD_STEP})*"
FieldPath = Annotated[str, Field(pattern=rf"^(?:{FIELD_PATH})$")]
RouteKey = Annotated[str, Field(pattern=r"^\s*[A-Za-z]+ +/")]
TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # what an HTTP header (or cookie) name may hold
STICKY_SOURCE = re.compile(rf"(header|cookie):{TOKEN}|path:[A-Za-z_]\w*|query:[^\s&=#]+")


def default_data_dir() -> Path:
    return platformdirs.user_data_path("hybrid-gateway")


def web_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


def webhook_name(url: str) -> str:
    """`hooks.example.com-1f2e3d4c`: a listed webhook's name, which never shows a secret URL."""
    digest = hashlib.blake2b(url.encode(), digest_size=4).hexdigest()
    return f"{urlsplit(url).hostname or 'webhook'}-{digest}"


def truthy(value: object) -> bool:
    """A boolean setting's raw value as pydantic will read it ("1", "true", "on", "yes", True)."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "on", "yes", "y", "t"}
    return bool(value)


class InvalidSettings(ConfigurationError):
    """A `GATEWAY_*` variable holds a value the gateway cannot start with."""


class ShadowRule(BaseModel):
    """How shadow comparisons of one route treat its JSON bodies, beyond key order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ignore: tuple[FieldPath, ...] = Field(
        default=(), description="field paths left out, e.g. items[].created_at"
    )
    ignore_order: bool = Field(default=False, description="lists compared as multisets")
    tolerance: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        default=None, description="largest difference between two numbers that still match"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        frozen=True,
        pyproject_toml_table_header=("tool", "gateway"),
    )

    app: str | None = Field(
        default=None,
        description="the app the command line serves and manages, as module:attribute",
    )
    database_url: str | None = Field(
        default=None,
        description="postgresql://user:pass@host:port/db (or ?host=/socket/dir)",
    )
    embedded_database: bool = Field(
        default=False,
        description="without a database URL, start a private embedded PostgreSQL "
        "(needs the `embedded` extra)",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="where the embedded PostgreSQL keeps its data",
    )
    error_format: ErrorFormat = Field(
        default="detail",
        description='error bodies: FastAPI\'s {"detail": ...} or the gateway\'s {"error": {...}}',
    )
    map_database_errors: bool = Field(
        default=False,
        description="answer database failures with 409/422/503/504 instead of the app's 500",
    )
    threadpool_size: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=40, description="threads that run legacy `def` endpoints (anyio limiter)"
    )
    # Overflow connections are closed as soon as they come back to a full pool: under
    # load that rises and falls, that is a new connection per request. Hence no overflow
    # by default; the pools open connections on demand and keep them.
    sync_pool_size: PoolSize = Field(default=40, description="psycopg pool: kept connections")
    sync_max_overflow: Overflow = Field(default=0, description="psycopg pool: extra connections")
    async_pool_size: PoolSize = Field(default=40, description="asyncpg pool: kept connections")
    async_max_overflow: Overflow = Field(default=0, description="asyncpg pool: extra connections")
    gc_freeze: bool = Field(
        default=True,
        description="freeze the objects alive once the app has started out of garbage collections",
    )
    gc_threshold: Annotated[int, Field(ge=0)] = Field(
        default=20_000,
        description="allocations between first-generation collections (0: Python's default)",
    )
    pool_timeout: Annotated[float, Field(gt=0, le=600)] = Field(
        default=10.0, description="seconds to wait for a pool connection"
    )
    pool_ping_idle_seconds: Annotated[float, Field(ge=0)] = Field(
        default=1.0,
        description="test a connection at checkout when it sat idle this long (0: every checkout)",
    )
    threadpool_max_queue: Annotated[int, Field(ge=0)] = Field(
        default=1000, description="legacy requests that may wait for a thread; more get 503"
    )
    threadpool_max_wait: Annotated[float, Field(gt=0, le=600)] = Field(
        default=10.0, description="seconds a legacy request may wait for a thread"
    )
    max_body_bytes: Annotated[int, Field(ge=1)] = Field(
        default=1_048_576, description="largest request body accepted; larger get 413"
    )
    max_request_line_bytes: Annotated[int, Field(ge=256)] = Field(
        default=8 * 1024, description="longest request line (method, URL); longer get 414"
    )
    max_header_bytes: Annotated[int, Field(ge=1024)] = Field(
        default=64 * 1024, description="largest request headers, all together; larger get 431"
    )
    request_head_timeout: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=10.0,
        description="seconds a connection has to send a whole request head, from when it "
        "opened or got its last response; then it is closed (408 if it had begun one)",
    )
    request_body_idle_timeout: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30.0,
        description="seconds a request body may stop arriving before the connection is closed",
    )
    max_connections: Annotated[int, Field(ge=1)] = Field(
        default=4096,
        description="connections per process; beyond, the longest idle one is closed, or the "
        "new one answered 503 (and never more than the open-file limit allows)",
    )
    statement_timeout_ms: Annotated[int, Field(ge=0)] = Field(
        default=30_000, description="PostgreSQL statement_timeout for both engines (0: none)"
    )
    transaction_pooling: bool = Field(
        default=False,
        description=(
            "the database URL leads to a pooler in transaction mode (PgBouncer "
            "pool_mode=transaction): statement_timeout is set in each transaction with SET "
            "LOCAL, lean statements run in a transaction, and prepared statements are off "
            "unless GATEWAY_PREPARED_STATEMENTS says otherwise"
        ),
    )
    prepared_statements: bool = Field(
        default=True,
        description=(
            "let both drivers keep named prepared statements on their connections (default: "
            "true, false under transaction pooling; true there needs PgBouncer >= 1.21 with "
            "max_prepared_statements); false: every statement is parsed unnamed"
        ),
    )
    listen_database_url: str | None = Field(
        default=None,
        description=(
            "a direct PostgreSQL URL (not through a transaction pooler) for the connection "
            "that LISTENs for route changes; unset: the database URL, or, under transaction "
            "pooling, no listening and a reload every GATEWAY_ROUTE_RELOAD_SECONDS"
        ),
    )
    default_mode: Impl = Field(
        default="legacy",
        description="mode of a route that has both implementations and no mode set",
    )
    sticky_header: str = Field(
        default="X-Gateway-Sticky-Key", min_length=1, description="canary bucketing key header"
    )
    sticky_keys: dict[str, str] = Field(
        default_factory=dict,
        description='where each route reads its canary key, JSON {"GET /users/{user_id}": '
        '"path:user_id", "*": "header:X-Tenant"}: header:, cookie:, path: or query: a name',
    )
    force_impl_header: str = Field(
        default="X-Gateway-Force-Impl",
        description="request header that forces legacy or async, with an admin token",
    )
    admin_token_header: str = Field(
        default="X-Gateway-Admin-Token",
        description="request header carrying the admin token that allows forcing",
    )
    admin_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='admin API bearer tokens that may read and change, JSON {"name": "token"}',
    )
    admin_read_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='admin API bearer tokens that may only read, JSON {"name": "token"}',
    )
    admin_report_max_window: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=60.0, description="longest window /admin/report may be asked to watch, seconds"
    )
    admin_in_openapi: bool = Field(
        default=False, description="list the admin API in the app's own OpenAPI schema"
    )
    console_sample_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=2.0,
        description="how often each worker reads the instance's metrics for the console (/admin)",
    )
    console_window_seconds: Annotated[float, Field(ge=1, le=3600)] = Field(
        default=60.0,
        description="the recent window the console's figures and the advisor's rank cover",
    )
    console_prometheus_url: str | None = Field(
        default=None,
        description="a Prometheus that scrapes every instance: the console's figures then cover "
        "the fleet",
    )
    route_reload_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=30.0, description="full reload of route modes, besides LISTEN/NOTIFY"
    )
    shadow_max_concurrent: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=16, description="shadow runs at once; more are dropped"
    )
    shadow_timeout: Annotated[float, Field(gt=0, le=600)] = Field(
        default=5.0, description="seconds a shadow run may take"
    )
    shadow_mismatches_kept: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=20, description="mismatches kept per route"
    )
    shadow_ignore_fields: dict[str, list[str]] = Field(
        default_factory=dict, description='JSON {"GET /users": ["created_at"]}'
    )
    shadow_rules: dict[RouteKey, ShadowRule] = Field(
        default_factory=dict,
        description='JSON {"GET /items": {"ignore": ["[].updated_at"], "ignore_order": true, '
        '"tolerance": 0.001}}: per route, field paths left out of shadow comparisons, lists '
        "compared without their order, numbers equal within the tolerance",
    )
    shadow_redact_fields: list[str] = Field(
        default_factory=list,
        description='JSON ["email"]: fields and query parameters shown as "[redacted]" '
        "in stored shadow mismatches",
    )
    rollback_window_seconds: Annotated[float, Field(gt=0, le=86_400)] = Field(
        default=60.0, description="canary comparison window"
    )
    rollback_min_requests: Annotated[int, Field(ge=1)] = Field(
        default=50, description="requests per implementation before the canary is judged"
    )
    rollback_error_margin: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.05, description="async 5xx rate above legacy's that triggers a rollback"
    )
    rollback_latency_ratio: Annotated[float, Field(gt=1)] = Field(
        default=2.0, description="async p95 / legacy p95 that triggers a rollback"
    )
    rollback_latency_floor_ms: Annotated[float, Field(ge=0)] = Field(
        default=50.0, description="async p95 must also exceed legacy's by this much"
    )
    webhook_urls: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="webhooks told of every route mode change and rollout event, JSON "
        '{"name": "https://..."} or ["https://..."]',
    )
    webhook_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=5.0, description="seconds a webhook has to answer one event"
    )
    webhook_max_attempts: Annotated[int, Field(ge=1, le=100)] = Field(
        default=5, description="failed deliveries of one event to a webhook before it is skipped"
    )
    rollback_fast_trip_errors: Annotated[int, Field(ge=0, le=10_000)] = Field(
        default=10,
        description="consecutive 5xx answers from async in a canary that move the route back "
        "to legacy at once, from the process that saw them (0: never)",
    )
    rollout_tick_seconds: Annotated[float, Field(gt=0, le=600)] = Field(
        default=1.0,
        description="how often each worker flushes its counts of routes under a rollout plan, "
        "and the driving worker judges the plans",
    )
    rollout_lease_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=10.0,
        description="how long the driving worker's lease lasts without renewal: a driver "
        "that dies is replaced after at most this long",
    )
    shutdown_drain_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=10.0,
        description="on SIGTERM, how long requests in flight may take to finish before they "
        "are cancelled (their sessions rolled back)",
    )
    log_level: LogLevel = Field(default="INFO", description="gateway log level")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="log lines as text for a terminal, or JSON objects (one per line, with "
        "the request id) for a log collector",
    )
    host: str = Field(default="127.0.0.1", description="address `gateway serve` listens on")
    port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=8000, description="port `gateway serve` listens on"
    )
    workers: Annotated[int, Field(ge=1, le=512)] = Field(
        default=1, description="worker processes `gateway serve` runs"
    )
    worker_healthcheck_seconds: Annotated[int, Field(ge=1, le=600)] = Field(
        default=20,
        description="seconds a worker process of `gateway serve --workers N` may take to "
        "answer its supervisor, its start included, before it is replaced",
    )
    instance_name: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        description="this instance's name in the fleet's worker list (default: the host name)",
    )
    metrics_buckets: list[float] = Field(
        default_factory=lambda: list(DEFAULT_BUCKETS),
        min_length=1,
        description="latency histogram buckets in seconds, JSON list",
    )
    metrics_dir: Path | None = Field(
        default=None, description="prometheus multiprocess directory (set by `serve --workers`)"
    )
    raise_on_blocking: bool = Field(
        default=False, description="raise instead of warn on a sync query on the event loop"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_prepared_statements_behind_a_pooler(cls, values: Any) -> Any:
        """Transaction pooling turns prepared statements off unless they were set explicitly."""
        if isinstance(values, dict) and truthy(values.get("transaction_pooling")):
            values.setdefault("prepared_statements", False)
        return values

    @model_validator(mode="after")
    def _lease_outlasts_a_tick(self) -> Settings:
        if self.rollout_lease_seconds <= 2 * self.rollout_tick_seconds:
            raise ValueError(
                f"GATEWAY_ROLLOUT_LEASE_SECONDS ({self.rollout_lease_seconds:g}) must exceed "
                f"twice GATEWAY_ROLLOUT_TICK_SECONDS ({self.rollout_tick_seconds:g}), or the "
                "driving worker loses its lease between two renewals"
            )
        return self

    @field_validator("database_url", "listen_database_url")
    @classmethod
    def _postgres_only(cls, url: str | None) -> str | None:
        if url is None or not url.strip():
            return None
        scheme = url.split("://", 1)[0]
        if not scheme.startswith(("postgresql", "postgres")):
            raise ValueError(f"must be a postgresql:// URL, got scheme {scheme!r}")
        try:
            _ = make_url(url.strip()).port
        except (ArgumentError, ValueError):
            raise ValueError("is not a valid URL: postgresql://user:pass@host:port/db") from None
        return url.strip()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        project = PyprojectTomlConfigSettingsSource(settings_cls)
        return init_settings, env_settings, project

    @field_validator("console_prometheus_url")
    @classmethod
    def _prometheus_over_http(cls, url: str | None) -> str | None:
        if url is None or not url.strip():
            return None
        if not web_url(url.strip()):
            raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
        return url.strip().rstrip("/")

    @field_validator("sticky_keys")
    @classmethod
    def _sticky_sources(cls, keys: dict[str, str]) -> dict[str, str]:
        problems = [
            f"{route}: {source!r} is not header:NAME, cookie:NAME, path:PARAM or query:PARAM"
            for route, source in keys.items()
            if not STICKY_SOURCE.fullmatch(source)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return keys

    @field_validator("force_impl_header", "admin_token_header")
    @classmethod
    def _header_name(cls, name: str) -> str:
        if not re.fullmatch(TOKEN, name):
            raise ValueError(f"{name!r} is not an HTTP header name")
        return name

    @field_validator("webhook_urls", mode="before")
    @classmethod
    def _webhooks_named(cls, urls: object) -> object:
        """A JSON list names each webhook by its host and a digest of its URL."""
        return {webhook_name(str(url)): url for url in urls} if isinstance(urls, list) else urls

    @field_validator("webhook_urls")
    @classmethod
    def _webhooks_over_http(cls, urls: dict[str, SecretStr]) -> dict[str, SecretStr]:
        wrong = [name for name, url in urls.items() if not web_url(url.get_secret_value())]
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: not an http:// or https:// URL")
        return urls

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, level: object) -> object:
        return level.upper() if isinstance(level, str) else level

    @property
    def sync_pool_capacity(self) -> int:
        return self.sync_pool_size + self.sync_max_overflow

    @property
    def async_pool_capacity(self) -> int:
        return self.async_pool_size + self.async_max_overflow


SettingsT = TypeVar("SettingsT", bound=Settings)


def load_settings(kind: type[SettingsT] = Settings, **overrides: object) -> SettingsT:  # type: ignore[assignment]
    """Read the settings (of `kind`, a subclass with other defaults); raise `InvalidSettings`."""
    try:
        return kind(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise InvalidSettings(describe_errors(error)) from None
    except SettingsError as error:  # a value that is not even JSON where JSON is expected
        raise InvalidSettings(f"invalid settings: {unparsable(error)}") from None


def unparsable(error: SettingsError) -> str:
    """`GATEWAY_X: not valid JSON`, from pydantic-settings' message naming the field."""
    field = str(error).split('field "', 1)[-1].split('"', 1)[0]
    return f"{ENV_PREFIX}{field.upper()}: not valid JSON"


def describe_errors(error: ValidationError) -> str:
    problems = []
    for detail in error.errors():
        name, *inside = (str(part) for part in detail["loc"])
        where = ".".join([f"{ENV_PREFIX}{name.upper()}", *inside])
        message = detail["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return "invalid settings: " + "; ".join(problems)

"""The scan of an app: every legacy endpoint, its twin and mode, and the idioms it uses.

Endpoints come from the gateway's pairing of the app's routes (importing the
app builds them; nothing starts). Each endpoint's module is analysed once,
with every legacy endpoint in it, so what the scan reports is what a draft
of that module does. Routers (one per legacy module) are ranked by how much
of them translates automatically; with the advisor's figures, each router
also shows its best rank there and its share of threadpool time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from fastapi import FastAPI

from gateway.metrics.advisor import Report
from gateway.migrate.draft import endpoints_in
from gateway.migrate.idioms import Idiom
from gateway.migrate.inventory import Endpoint, legacy_endpoints, twin_modules
from gateway.migrate.modules import Context, analyse, idioms, new_context
from gateway.migrate.sources import Source, shown_path, source, source_of


@dataclass
class EndpointScan:
    key: str
    function: str
    path: str
    line: int
    twin: bool
    mode: str | None  # None: unknown
    idioms: list[Idiom]


@dataclass
class RouterScan:
    """The legacy endpoints of one module."""

    path: str
    endpoints: list[EndpointScan] = field(default_factory=list)
    advisor_rank: int | None = None  # the best rank of its routes, from the advisor
    threadpool_share: float | None = None  # their share of threadpool time

    @property
    def idioms(self) -> int:
        return sum(len(endpoint.idioms) for endpoint in self.endpoints)

    @property
    def automatic(self) -> int:
        return sum(idiom.automatic for e in self.endpoints for idiom in e.idioms)

    @property
    def twins(self) -> int:
        return sum(endpoint.twin for endpoint in self.endpoints)

    @property
    def share(self) -> float:
        """The share of its idioms the draft translates (1 with none at all)."""
        return self.automatic / self.idioms if self.idioms else 1.0


@dataclass
class Scan:
    app: str
    routers: list[RouterScan]  # ranked: the most automatic first
    modes_known: bool
    metrics: str | None  # where the advisor's figures came from; None without any
    unread: list[str] = field(default_factory=list)  # endpoints whose source was not found

    def as_dict(self) -> dict[str, Any]:
        described = asdict(self)
        for router, scanned in zip(described["routers"], self.routers, strict=True):
            router.update(idioms=scanned.idioms, automatic=scanned.automatic, twins=scanned.twins)
        return described


def scan_app(
    app: FastAPI,
    spec: str,
    *,
    root: Path,
    paths: Iterable[Path] = (),
    modes: Mapping[str, str] | None = None,
    ranking: Report | None = None,
    metrics: str | None = None,
) -> Scan:
    """The scan of `app`'s legacy endpoints (those under `paths`, when given)."""
    context = new_context(root, twin_modules(app).twin_of)
    wanted = [path.resolve() for path in paths]
    endpoints = legacy_endpoints(app)
    routers: dict[str, RouterScan] = {}
    unread = []
    sources: dict[Path, Source] = {}
    by_source: dict[Path, list[Endpoint]] = {}
    for endpoint in endpoints:
        found = source_of(endpoint.function)
        if found is None:
            unread.append(f"{endpoint.key} ({getattr(endpoint.function, '__qualname__', '?')})")
        elif not wanted or any(found.path.is_relative_to(path) for path in wanted):
            sources.setdefault(found.path, found)
            by_source.setdefault(found.path, []).append(endpoint)
    for path, listed in by_source.items():
        scanned = _scanned(sources[path], listed, context, modes)
        routers[scanned.path] = scanned
    ranked = rank(list(routers.values()), ranking)
    return Scan(spec, ranked, modes is not None, metrics if ranking else None, unread)


def _scanned(
    source: Source, endpoints: list[Endpoint], context: Context, modes: Mapping[str, str] | None
) -> RouterScan:
    models = {endpoint.function.__name__: endpoint.response_model for endpoint in endpoints}
    facts = analyse(source, context, models)
    router = RouterScan(shown_path(source.path, context.root))
    for endpoint in endpoints:
        name = endpoint.function.__name__
        function = facts.functions.get(name)
        line = source.line(function.node) if function is not None else 0
        router.endpoints.append(
            EndpointScan(
                endpoint.key,
                name,
                router.path,
                line,
                endpoint.twin is not None,
                None if modes is None else modes.get(endpoint.key),
                idioms(facts, name, context),
            )
        )
    return router


def rank(routers: list[RouterScan], ranking: Report | None) -> list[RouterScan]:
    """The most automatic first (routes still without a twin before the others, at a tie);
    the advisor's rank and threadpool share set when known."""
    if ranking is not None:
        ranks = {route.route: (index, route) for index, route in enumerate(ranking.routes, 1)}
        for router in routers:
            known = [ranks[e.key] for e in router.endpoints if e.key in ranks]
            if known:
                router.advisor_rank = min(index for index, _ in known)
                router.threadpool_share = sum(route.threadpool_share for _, route in known)
    return sorted(
        routers,
        key=lambda r: (-r.share, r.idioms - r.automatic, r.twins == len(r.endpoints), r.path),
    )


def module_idioms(module: ModuleType, root: Path) -> list[Idiom]:
    """Every idiom of every endpoint of `module` (its routers' routes), helpers followed."""
    context = new_context(root)
    facts = analyse(source(Path(module.__file__ or ""), module), context, endpoints_in(module))
    return [idiom for name in facts.functions for idiom in idioms(facts, name, context, set())]

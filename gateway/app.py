"""The app `uvicorn gateway.app:app` serves, built from the `GATEWAY_*` settings."""

from gateway.factory import create_app

app = create_app()

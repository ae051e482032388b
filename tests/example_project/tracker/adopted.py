"""The tracker app after adoption: `tracker.main`'s app, served by the gateway with its async twins.

In a real project this is one call at the end of `tracker/main.py`; it lives
in its own module here so the tests can run the app before and after.
"""

from gateway import adopt
from tracker.api.deps import get_db
from tracker.api_async.main import async_api_router
from tracker.main import build_app

app = adopt(build_app(), async_routers=[async_api_router], sync_session_dependencies=[get_db])

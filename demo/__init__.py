"""The demo shop: users, items, orders and documents, served by the gateway as any adopter's app is.

    demo/app.py        the composition root: its settings, its routers, `create_demo_app()`
    demo/database.py   its schema (its own Alembic history) and its seed data policy
    demo/__main__.py   `python -m demo upgrade | seed`: its own schema and data

The routes live in `legacy_routes/` and `async_routes/`, the models, schemas,
migrations and seed rows in `shared_models/`. Nothing in `gateway/` knows any
of them.
"""

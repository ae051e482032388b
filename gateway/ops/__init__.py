"""The operations layer: what runs the gateway and what operators talk to.

admin       /admin: route modes, events, shadow mismatches, the advisor's report
console     the migration console: its page at /admin, and GET /admin/console/data
health      /healthz and /readyz
limits      request body limit
schema      the gateway's own tables: their migrations, and the start-up check
embedded    the embedded PostgreSQL, for the demo or an explicit opt-in
serving     the event loop `gateway serve` runs on
logs        logging for the gateway's own messages
gc_tuning   garbage-collector tuning while the app runs
"""

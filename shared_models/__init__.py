"""Models, schemas, migrations and demo data shared by the legacy and async implementations."""

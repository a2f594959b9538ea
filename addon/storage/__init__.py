"""Storage: the models, the engine, migrations, tenants as requests see them, and secrets at rest."""

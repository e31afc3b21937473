"""Resources shared by the Dagster code location and the `recon` command.

Database access (embedded PostgreSQL or `RECON_DATABASE_URL`), schema migrations and the
Dagster instance set-up live here; the pipeline stages import them rather than opening
connections of their own.
"""

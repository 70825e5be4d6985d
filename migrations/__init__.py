"""Alembic migrations, and the runner that applies them at server start."""

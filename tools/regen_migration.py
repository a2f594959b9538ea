"""Regenerate the initial migration from addon/models.py (only while no release has shipped it)."""

import pathlib
import tempfile

from alembic import command

from addon.migrate import alembic_config

versions = pathlib.Path(__file__).resolve().parent.parent / "addon" / "migrations" / "versions"
for old in versions.glob("0001_*.py"):
    old.unlink()
with tempfile.TemporaryDirectory() as tmp:
    cfg = alembic_config(f"sqlite:///{tmp}/gen.db")
    command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")

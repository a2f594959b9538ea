"""Regenerate the initial migration from addon/storage/models.py (only while no release has shipped it)."""

import pathlib
import tempfile

from alembic import command

from addon.storage.migrate import alembic_config

versions = pathlib.Path(__file__).resolve().parent.parent / "addon" / "storage" / "migrations" / "versions"
for old in versions.glob("0001_*.py"):
    old.unlink()
with tempfile.TemporaryDirectory() as tmp:
    cfg = alembic_config(f"sqlite:///{tmp}/gen.db")
    command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")

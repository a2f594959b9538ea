"""The WAL of a SQLite database is checkpointed by a thread of its own (`addon.storage.engine.WalCheckpointer`), never
inside
a commit: a commit that did it would copy the WAL into the database file, and sync both, in the middle of a
request."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from sqlalchemy import text

from addon.storage.engine import CHECKPOINT_EVERY_COMMITS, make_engine

ROW_BYTES = 48_000  # a dozen pages of 4 KiB: SQLite's own threshold (1,000 pages) is crossed within 90 commits


def _checkpoint_threads(database: Path) -> list[threading.Thread]:
    """The checkpoint threads of this database (other tests' engines may start theirs meanwhile)."""
    return [thread for thread in threading.enumerate() if thread.name == f"sqlite-checkpoint {database.resolve()}"]


def test_commits_leave_the_wal_to_the_checkpoint_thread_which_copies_it_every_so_many_commits(tmp_path: Path) -> None:
    database = tmp_path / "addon.db"
    engine = make_engine(f"sqlite:///{database}")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE rows (data BLOB)"))
        for _ in range(CHECKPOINT_EVERY_COMMITS - 2):
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO rows VALUES (zeroblob(:size))"), {"size": ROW_BYTES})
        written = (CHECKPOINT_EVERY_COMMITS - 2) * ROW_BYTES
        time.sleep(0.5)
        assert os.path.getsize(database) < written / 10, "a commit copied the WAL into the database file itself"
        assert _checkpoint_threads(database) == [], "a checkpoint thread started before one was due"

        with engine.begin() as connection:  # the commit that makes one due
            connection.execute(text("INSERT INTO rows VALUES (zeroblob(:size))"), {"size": ROW_BYTES})
        deadline = time.monotonic() + 10
        while os.path.getsize(database) < written and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.getsize(database) >= written, "the WAL was not copied into the database file"
        started = _checkpoint_threads(database)
        assert len(started) == 1 and started[0].is_alive()
    finally:
        engine.dispose()
    assert not started[0].is_alive(), "the checkpoint thread outlived its engine"
    with engine.connect() as connection:  # a disposed engine may still be used, and still reads everything
        assert connection.execute(text("SELECT count(*) FROM rows")).scalar_one() == CHECKPOINT_EVERY_COMMITS - 1
    engine.dispose()

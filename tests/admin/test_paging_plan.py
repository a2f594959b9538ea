"""A webhook's pages read only the page from the index (webhook_id, id), wherever its rows lie in the table: the
plan PostgreSQL chooses, read with EXPLAIN ANALYZE on a table where a webhook's rows are all old and another's
are many and new (the primary key walked backwards would read every newer row first)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Select, select, text
from sqlalchemy.engine import Engine

from addon.admin.paging import newest_first
from addon.storage.engine import make_engine
from addon.storage.migrate import upgrade
from addon.storage.models import Attempt, Delivery
from tests.support.rows import site_with_webhooks

PAGE = 20
_WEBHOOK_OF_G = "CASE WHEN g BETWEEN 20001 AND 40000 THEN 1 ELSE 2 END"


@pytest.fixture
def old_and_new(pg_url: str) -> Any:
    """Webhook 1: 20,000 old deliveries and attempts (ids 20,001-40,000); webhook 2: 20,000 older ones and 160,000
    newer ones."""
    engine = make_engine(pg_url)
    upgrade(engine)
    with engine.begin() as connection:
        site_with_webhooks(connection, 2)
        connection.execute(text(
            "INSERT INTO events (id, tenant_id, source, project_id, body, created_at) "
            "VALUES (1, 1, 'projectrak', '13647', '{}', now())"))
        connection.execute(text(
            "INSERT INTO deliveries (id, tenant_id, event_id, webhook_id, message_id, status, attempt_count, "
            "created_at, schedule_started_at, finished_at) "
            f"SELECT g, 1, 1, {_WEBHOOK_OF_G}, 'msg_' || g, 'succeeded', 1, now(), now(), now() "
            "FROM generate_series(1, 200000) g"))
        connection.execute(text(
            "INSERT INTO attempts (id, tenant_id, delivery_id, webhook_id, attempt, at, status, http_code, "
            f"duration_ms) SELECT g, 1, g, {_WEBHOOK_OF_G}, 1, now(), 'OK', 200, 5 FROM generate_series(1, 200000) g"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE deliveries"))
        connection.execute(text("VACUUM ANALYZE attempts"))
    yield engine
    engine.dispose()


def _page(model: Any, before: int | None) -> Select:
    where, order = newest_first(model.webhook_id, model.id, 1, before)
    return select(*model.__table__.c).where(where).order_by(*order).limit(PAGE + 1)


def _rows_read(engine: Engine, query: Select) -> tuple[int, list[str]]:
    """The most rows any plan node of `query` read, and the indexes it used."""
    compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as connection:
        plan = connection.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}")).scalar_one()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    most, indexes, nodes = 0, [], [plan[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        most = max(most, node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0))
        if "Index Name" in node:
            indexes.append(node["Index Name"])
        nodes += node.get("Plans", [])
    return most, indexes


def test_a_page_of_a_webhook_whose_rows_are_old_reads_only_the_page(old_and_new: Engine) -> None:
    for model, index in ((Attempt, "ix_attempts_webhook_id"), (Delivery, "ix_deliveries_webhook_id")):
        for before in (None, 20001 + PAGE):  # the first page; the last (its oldest 20 rows, and nothing after them)
            with old_and_new.connect() as connection:
                ids = connection.execute(_page(model, before)).scalars().all()
            expected = list(range(40000, 39999 - PAGE, -1)) if before is None else list(range(20000 + PAGE, 20000, -1))
            assert ids == expected, (model.__tablename__, before)
            most, indexes = _rows_read(old_and_new, _page(model, before))
            assert (indexes, most <= PAGE + 1) == ([index], True), (model.__tablename__, before, most)

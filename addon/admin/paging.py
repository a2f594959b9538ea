"""Keyset pages of one webhook's rows (its deliveries, its attempts), newest first, through the index
`(webhook_id, id)` however deep the page and wherever the webhook's rows lie in the table.

The page is asked for as a row comparison, `webhook_id >= w AND (webhook_id, id) < (w, before)` ordered by
`webhook_id DESC, id DESC`: only that index gives this order, so PostgreSQL walks it from `(w, before)` and stops
after the page. Asked as `webhook_id = w AND id < before ORDER BY id DESC`, the primary key gives the order too,
and the planner, which takes a webhook's rows to be spread evenly through the table, may walk the primary key
backwards and filter by webhook: measured on 30 M attempts, page 1 of a webhook whose attempts all lay in the
oldest third took 5.5 s (30 M rows read and dropped) and its last page 1.5 s, against 0.04 ms as a row comparison
(docs/benchmarks.md, Scale).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, UnaryExpression, and_, tuple_
from sqlalchemy.orm import InstrumentedAttribute

#: `before` of page 1: past every id (ids are positive 64-bit integers).
_PAST_EVERY_ID = 2**63 - 1


def newest_first(webhook_column: InstrumentedAttribute[int], id_column: InstrumentedAttribute[int],
                 webhook_id: int, before: int | None
                 ) -> tuple[ColumnElement[bool], tuple[UnaryExpression[int], UnaryExpression[int]]]:
    """(where, order_by) of a webhook's page of rows older than `before` (None: from the newest)."""
    bound = _PAST_EVERY_ID if before is None else before
    where = and_(webhook_column >= webhook_id, tuple_(webhook_column, id_column) < tuple_(webhook_id, bound))
    return where, (webhook_column.desc(), id_column.desc())

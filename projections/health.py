"""Which views are held back, and why: the ``projection_health`` table an operator reads.

A view that fails on a batch is retried on its own with backoff while the other views move on
(:mod:`projections.runner`). Each failing (view, application) has one row here, written outside the
failed batch's transaction: where the view stands, the event it fails on (its notification id and
name, when the failure is one event's), the last error, since when it fails, how many attempts,
and when the next one is due. The batch that finally applies that event deletes the row in its own
transaction, so a row is never left behind by a view that recovered, whichever process it was.

The table is not a projection table: a rebuild does not drop it. Read it with
``chargeledger projections status`` (or :func:`failing`).
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

DDL = """CREATE TABLE IF NOT EXISTS projection_health (
    view text NOT NULL, application text NOT NULL, position bigint, notification_id bigint, event text,
    error text NOT NULL, failing_since timestamptz NOT NULL, last_attempt_at timestamptz NOT NULL,
    attempts int NOT NULL, next_attempt_at timestamptz NOT NULL, PRIMARY KEY (view, application))"""

# Run in every batch's transaction: the failure clears once the view has passed the event it failed on.
CLEAR = """DELETE FROM projection_health WHERE view = %(view)s AND application = %(application)s
    AND (notification_id IS NULL OR notification_id <= %(position)s)"""

RECORD = """
INSERT INTO projection_health AS h (view, application, position, notification_id, event, error, failing_since,
                                    last_attempt_at, attempts, next_attempt_at)
VALUES (%(view)s, %(application)s, %(position)s, %(notification_id)s, %(event)s, %(error)s, now(), now(), 1,
        now() + make_interval(secs => %(retry_in)s))
ON CONFLICT (view, application) DO UPDATE SET position = EXCLUDED.position,
    notification_id = EXCLUDED.notification_id, event = EXCLUDED.event, error = EXCLUDED.error,
    last_attempt_at = now(), attempts = h.attempts + 1, next_attempt_at = EXCLUDED.next_attempt_at"""


def failing(conn: Any) -> list[dict[str, Any]]:
    """Every held-back view: view, application, position, notification_id, event, error, failing_since,
    last_attempt_at, attempts, next_attempt_at; oldest failure first."""
    return conn.cursor(row_factory=dict_row).execute(
        "SELECT * FROM projection_health ORDER BY failing_since, view, application").fetchall()

"""Alembic environment: runs inside the Flask app, on the app's own engine and metadata.

Online upgrades wait at most MIGRATION_LOCK_TIMEOUT_MS for any table lock: a DDL statement that
queues for ACCESS EXCLUSIVE behind one open transaction would otherwise make every later read and
write of that table queue behind *it*, until the Job's deadline. When the wait times out
(LockNotAvailable, SQLSTATE 55P03) the whole upgrade is rolled back and retried, at most
MIGRATION_LOCK_RETRIES more times, with a doubling delay; then the command exits non-zero.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from typing import Any

from alembic import context
from flask import current_app
from sqlalchemy import exc, text

logger = logging.getLogger("alembic.env")
config = context.config

# Any fixed number: two `flask db upgrade` runs against one database take turns instead of racing.
MIGRATION_LOCK_ID = 0x6775657374  # "guest"
LOCK_NOT_AVAILABLE = "55P03"
# The doubling delay between attempts stops growing here (milliseconds).
MAX_RETRY_DELAY_MS = 30_000


def _migrate_ext() -> Any:
    return current_app.extensions["migrate"]


target_metadata = _migrate_ext().db.metadata


def run_migrations_offline() -> None:
    """`flask db upgrade --sql`: print the SQL instead of running it."""
    url = _migrate_ext().db.engine.url.render_as_string(hide_password=False)
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def lock_not_available(error: BaseException) -> bool:
    """Whether ``error`` is PostgreSQL's lock_timeout firing (psycopg's LockNotAvailable)."""
    return isinstance(error, exc.DBAPIError) and getattr(error.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE


def retry_delay_ms(attempt: int, first_ms: int) -> int:
    """Milliseconds to wait after failed ``attempt`` (1-based): doubling from ``first_ms``, capped,
    with up to 20 % jitter so that several Jobs blocked by one session do not return in step."""
    delay = min(first_ms * 2 ** (attempt - 1), MAX_RETRY_DELAY_MS)
    return int(delay * (1 + random.uniform(0, 0.2)))  # noqa: S311 - jitter, not a secret


def run_migrations_once(lock_timeout_ms: int) -> None:
    def skip_empty_autogenerate(context: Any, revision: Any, directives: list[Any]) -> None:
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []
            logger.info("No changes in schema detected.")

    conf_args = dict(_migrate_ext().configure_args)
    conf_args.setdefault("process_revision_directives", skip_empty_autogenerate)
    conf_args.setdefault("compare_type", True)

    with _migrate_ext().db.engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, **conf_args)
        with context.begin_transaction():
            # PostgreSQL runs DDL in the transaction: take the lock and lift the app's statement
            # timeout for this transaction only (the Job's activeDeadlineSeconds bounds it instead).
            # The advisory lock is taken before lock_timeout applies: a second upgrade waits for the
            # first (itself bounded) instead of failing.
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.execute(text("SET LOCAL statement_timeout = 0"))
            # SET LOCAL, not a startup `options`: PgBouncer refuses those, and a transaction-local
            # setting never leaks to another client of a pooled server connection.
            connection.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"))
            context.run_migrations()


def run_migrations_online() -> None:
    timeout_ms = int(current_app.config["MIGRATION_LOCK_TIMEOUT_MS"])
    retries = int(current_app.config["MIGRATION_LOCK_RETRIES"])
    first_delay_ms = int(current_app.config["MIGRATION_LOCK_RETRY_DELAY_MS"])
    attempts = retries + 1
    for attempt in range(1, attempts + 1):
        try:
            run_migrations_once(timeout_ms)
            return
        except exc.DBAPIError as error:
            if not lock_not_available(error):
                raise
            reason = str(error.orig).strip().splitlines()[0]
            if attempt == attempts:
                logger.error(
                    "migration gave up: a table lock was not obtained",
                    extra={
                        "event": "migration_lock_gave_up",
                        "attempts": attempts,
                        "lock_timeout_ms": timeout_ms,
                    },
                )
                sys.exit(
                    f"flask db upgrade: a lock was not obtained within MIGRATION_LOCK_TIMEOUT_MS={timeout_ms} "
                    f"in {attempts} attempt(s) ({reason}); another session holds a lock on the table "
                    "(see pg_locks / pg_stat_activity). The upgrade was rolled back. Retry when it is done, or raise "
                    "MIGRATION_LOCK_TIMEOUT_MS (reads of the table wait up to that long) or MIGRATION_LOCK_RETRIES"
                )
            delay_ms = retry_delay_ms(attempt, first_delay_ms)
            logger.warning(
                "migration waited too long for a table lock; rolled back, retrying",
                extra={
                    "event": "migration_lock_retry",
                    "attempt": attempt,
                    "attempts": attempts,
                    "lock_timeout_ms": timeout_ms,
                    "retry_in_ms": delay_ms,
                    "error": reason,
                },
            )
            time.sleep(delay_ms / 1000)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

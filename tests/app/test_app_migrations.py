"""Flask-Migrate on PostgreSQL: empty -> head -> base, data kept across revisions, no drift, the CLI."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import flask_migrate
import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from app_support import APP_DIR, app_environ, process_env, wait_for
from flask import Flask
from flask.testing import FlaskCliRunner

from flaskops_testbed.postgres import PostgresTarget
from guestbook import create_app
from guestbook.extensions import db

HEAD = "0002"


@pytest.fixture
def empty_database(postgres: PostgresTarget, database_factory: Callable[..., str]) -> str:
    return postgres.url(database_factory("guestbook_test_migrations"))


@pytest.fixture
def migration_app(empty_database: str) -> Flask:
    return create_app("testing", environ=app_environ(empty_database))


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def columns(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'entries'"
        ).fetchall()
    return {name: kind for name, kind in rows}


def version(url: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def test_upgrade_from_empty_to_head_then_downgrade_to_base(migration_app: Flask, empty_database: str) -> None:
    assert tables(empty_database) == set()
    with migration_app.app_context():
        flask_migrate.upgrade()
        assert version(empty_database) == HEAD
        assert tables(empty_database) == {"alembic_version", "entries"}
        assert columns(empty_database)["message"] == "text"

        flask_migrate.downgrade(revision="base")
        assert tables(empty_database) == {"alembic_version"}
        assert version(empty_database) is None
        db.engine.dispose()


def test_revision_0002_keeps_existing_rows(migration_app: Flask, empty_database: str) -> None:
    with migration_app.app_context():
        flask_migrate.upgrade(revision="0001")
        assert columns(empty_database) == {
            "id": "integer",
            "author": "character varying",
            "message": "character varying",
            "created_at": "timestamp with time zone",
        }
        with psycopg.connect(empty_database) as conn:
            conn.execute(
                "INSERT INTO entries (author, message, created_at) "
                "VALUES ('old', 'from version one', '2020-01-02T03:04:05Z')"
            )

        flask_migrate.upgrade()  # 0001 -> 0002, as an image upgrade would run it
        with psycopg.connect(empty_database) as conn:
            row = conn.execute("SELECT author, message, created_at = updated_at FROM entries").fetchone()
        assert row == ("old", "from version one", True)  # backfilled from created_at, not now()

        with psycopg.connect(empty_database) as conn:  # and the app reads it
            conn.execute("INSERT INTO entries (author, message) VALUES ('new', %s)", ("y" * 700,))
        flask_migrate.downgrade(revision="0001")  # long messages are cut, not lost entirely
        with psycopg.connect(empty_database) as conn:
            lengths = conn.execute("SELECT author, length(message) FROM entries ORDER BY id").fetchall()
        assert lengths == [("old", 16), ("new", 500)]
        db.engine.dispose()


def test_models_and_migrations_do_not_drift(migration_app: Flask) -> None:
    with migration_app.app_context():
        flask_migrate.upgrade()
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, db.metadata)
        db.engine.dispose()
    assert diff == [], f"models differ from migrations; run `flask db migrate` and review: {diff}"


def test_autogenerate_writes_no_revision_at_head(migration_app: Flask, tmp_path: Path) -> None:
    # The same check the way a developer runs it: `flask db migrate` finds nothing to do.
    versions = Path(APP_DIR / "guestbook" / "migrations" / "versions")
    before = sorted(p.name for p in versions.glob("*.py"))
    runner = migration_app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    result = runner.invoke(args=["db", "migrate", "-m", "drift check"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in versions.glob("*.py")) == before
    with migration_app.app_context():
        db.engine.dispose()


def run_flask(args: list[str], url: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run `flask ...` the way the operator's migration Job does: in the image WORKDIR, no FLASK_APP."""
    env = process_env(app_environ(url), home)
    assert "FLASK_APP" not in env
    return subprocess.run(
        ["flask", *args], cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_flask_db_upgrade_cli_finds_the_app_without_flask_app(empty_database: str, tmp_path: Path) -> None:
    result = run_flask(["db", "upgrade"], empty_database, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert version(empty_database) == HEAD
    assert "Running upgrade 0001 -> 0002" in result.stdout + result.stderr
    again = run_flask(["db", "upgrade"], empty_database, tmp_path)  # idempotent: a re-run Job is a no-op
    assert again.returncode == 0, again.stderr


def test_concurrent_upgrades_take_turns(empty_database: str, tmp_path: Path) -> None:
    env = process_env(app_environ(empty_database), tmp_path)
    procs = [
        subprocess.Popen(
            ["flask", "db", "upgrade"], cwd=APP_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert version(empty_database) == HEAD


def test_cli_refuses_to_run_with_a_broken_environment(tmp_path: Path) -> None:
    env = process_env({"APP_ENV": "production"}, tmp_path)
    result = subprocess.run(
        ["flask", "db", "upgrade"],
        cwd=APP_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "missing required environment variable(s): SECRET_KEY, DATABASE_URL" in result.stderr


def test_runner_knows_the_migration_commands(runner: FlaskCliRunner) -> None:
    # Alembic prints to the sys.stdout it saw at import, so only the outcome is checked here;
    # the subprocess tests above check real output.
    assert runner.invoke(args=["db", "heads"]).exit_code == 0
    assert "upgrade" in runner.invoke(args=["db", "--help"]).output


# -- lock_timeout and retries (migrations/env.py) ---------------------------------------------------

WAITING_FOR_ENTRIES = """
    SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
    WHERE l.relation = 'entries'::regclass AND NOT l.granted AND l.mode = 'AccessExclusiveLock'
      AND a.application_name = 'guestbook' AND a.wait_event_type = 'Lock'
"""


def upgrade_blocked_by_a_reader(
    url: str, home: Path, log: Path, **env: str
) -> tuple[psycopg.Connection, subprocess.Popen[bytes]]:
    """Revision 0001, a session inside a transaction that has read `entries` (ACCESS SHARE, held to its
    end), and `flask db upgrade` to 0002 (ALTER COLUMN TYPE: ACCESS EXCLUSIVE) started behind it."""
    first = run_flask(["db", "upgrade", "0001"], url, home)
    assert first.returncode == 0, first.stderr
    blocker = psycopg.connect(url)
    blocker.execute("SELECT count(*) FROM entries")  # the transaction stays open: the lock is held
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["flask", "db", "upgrade"],
            cwd=APP_DIR,
            env=process_env(app_environ(url, **env), home),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return blocker, proc


def waiting_migrations(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(WAITING_FOR_ENTRIES).fetchone()
    return int(row[0]) if row else 0


def events(log: Path, name: str) -> list[dict[str, object]]:
    """The JSON log records of ``log`` whose ``event`` is ``name``."""
    found = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == name:
                found.append(record)
    return found


def test_a_blocked_upgrade_gives_up_within_its_bound_and_reads_keep_flowing(
    empty_database: str, tmp_path: Path
) -> None:
    log = tmp_path / "upgrade.log"
    blocker, proc = upgrade_blocked_by_a_reader(
        empty_database,
        tmp_path,
        log,
        MIGRATION_LOCK_TIMEOUT_MS="1500",
        MIGRATION_LOCK_RETRIES="2",
        MIGRATION_LOCK_RETRY_DELAY_MS="200",
    )
    started = time.monotonic()
    try:
        wait_for(
            lambda: waiting_migrations(empty_database) == 1, 30, "the upgrade to queue for ACCESS EXCLUSIVE"
        )
        # A read that arrives now queues behind the migration's request; lock_timeout bounds that wait.
        # Without it this read would wait for the blocker (forever here): its own timeout fails the test.
        with psycopg.connect(empty_database, autocommit=True, options="-c statement_timeout=20000") as reader:
            asked = time.monotonic()
            assert reader.execute("SELECT count(*) FROM entries").fetchone() == (0,)
            read_wait = time.monotonic() - asked
        # Behind a migration with no lock_timeout it would wait for the blocker, i.e. until its own 20 s
        # statement_timeout; with one it waits at most ~1.5 s. 10 s separates the two with room for load.
        assert read_wait < 10, f"a read waited {read_wait:.1f}s behind the migration"
        assert proc.poll() is None, "the read was answered while the migration was still retrying"
        returncode = proc.wait(timeout=60)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        blocker.close()
    output = log.read_text()
    assert returncode != 0, output
    # 3 attempts of 1.5 s and two delays of ~0.2/0.4 s: far below the Job's deadline.
    assert elapsed < 30, f"gave up after {elapsed:.1f}s"  # ~5 s here; the Job's deadline is minutes
    assert "a lock was not obtained within MIGRATION_LOCK_TIMEOUT_MS=1500 in 3 attempt(s)" in output
    assert "raise MIGRATION_LOCK_TIMEOUT_MS" in output
    retries = events(log, "migration_lock_retry")
    assert [r["attempt"] for r in retries] == [1, 2], output
    assert all(r["level"] == "WARNING" and r["lock_timeout_ms"] == 1500 for r in retries)
    assert "lock timeout" in str(retries[0]["error"])
    assert [r["attempts"] for r in events(log, "migration_lock_gave_up")] == [3]
    assert version(empty_database) == "0001"  # rolled back: nothing half-done
    assert columns(empty_database)["message"] == "character varying"


def test_a_blocked_upgrade_succeeds_when_the_blocker_ends_between_retries(
    empty_database: str, tmp_path: Path
) -> None:
    log = tmp_path / "upgrade.log"
    blocker, proc = upgrade_blocked_by_a_reader(
        empty_database,
        tmp_path,
        log,
        MIGRATION_LOCK_TIMEOUT_MS="500",
        MIGRATION_LOCK_RETRIES="20",
        MIGRATION_LOCK_RETRY_DELAY_MS="300",
    )
    try:
        wait_for(lambda: bool(events(log, "migration_lock_retry")), 30, "the first retry")
        blocker.commit()  # the reader's transaction ends: its lock goes
        returncode = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        blocker.close()
    assert returncode == 0, log.read_text()
    assert version(empty_database) == HEAD
    assert not events(log, "migration_lock_gave_up")

"""PostgreSQL fixtures for the whole suite (registered as a pytest plugin by the root conftest.py).

``postgres`` (session)
    The server every test shares: a ``LocalPostgres`` started in a temporary directory for the
    session (stopped at the end), or, when ``TEST_DATABASE_URL`` is set, that server
    (an ``ExternalPostgres``; its user must be allowed to ``CREATE DATABASE``). Both have the
    ``PostgresTarget`` interface: ``host port superuser password admin_url url() create_database()
    drop_database()``. Never stop or restart it: use ``restartable_postgres`` for that.

``database_factory`` (function)
    ``database_factory(prefix="db") -> name``: creates a uniquely named empty database on
    ``postgres``; every database it made is dropped after the test.

``restartable_postgres`` (function, over a session-scoped server)
    A dedicated ``LocalPostgres`` that tests may stop and restart (resilience tests), so they never
    disturb the shared server. It is running when the test starts and is started again afterwards
    if the test left it stopped. Always local, even with ``TEST_DATABASE_URL``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flaskops_testbed.postgres import ExternalPostgres, LocalPostgres, PostgresTarget


def _server_dir(purpose: str) -> Path:
    """A fresh directory for a session's server, outside pytest's basetemp.

    Every pytest process that starts (any session on the machine) resets ``/tmp/pytest-of-<user>``
    to mode 0700, which locks the ``postgres`` system user out of a data directory below it and
    crashes the server mid-run. So the servers live in their own ``mkdtemp`` directories.
    """
    return Path(tempfile.mkdtemp(prefix=f"flaskops-{purpose}-", dir=os.environ.get("FLASKOPS_PG_TMPDIR")))


@contextlib.contextmanager
def _session_server(purpose: str) -> Iterator[LocalPostgres]:
    server = LocalPostgres(_server_dir(purpose))
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresTarget]:
    """The shared PostgreSQL server of this test session."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield ExternalPostgres(given)
        return
    with _session_server("pg") as server:
        yield server


@pytest.fixture
def database_factory(postgres: PostgresTarget) -> Iterator[Callable[..., str]]:
    """Make empty databases with unique names on the shared server; drop them after the test."""
    made: list[str] = []

    def make(prefix: str = "db") -> str:
        name = f"{prefix}_{secrets.token_hex(4)}"
        postgres.create_database(name)
        made.append(name)
        return name

    yield make
    for name in made:
        postgres.drop_database(name)


@pytest.fixture(scope="session")
def _restartable_postgres_server() -> Iterator[LocalPostgres]:
    with _session_server("pg-restartable") as server:
        yield server


@pytest.fixture
def restartable_postgres(_restartable_postgres_server: LocalPostgres) -> Iterator[LocalPostgres]:
    """A dedicated local server that the test may stop/restart; running at start and after."""
    server = _restartable_postgres_server
    server.start()
    yield server
    if not server.is_running():
        server.start()

"""The admin's connections to each PostgresServer: who the admin is, how it logs in, which logins are kept.

Opening an admin connection costs a TCP connect and a SCRAM login: ~21 % of the operator's CPU in the
500-app profile, 3.2-3.6 ms of an 8.2-8.8 ms provisioning in bench/pg_admin_pool.py. So one
`psycopg_pool.ConnectionPool` per admin identity keeps them: `AdminConnection` is the key, so a new
password, user or address (a rotated admin Secret) means a new pool, and the one it supersedes (same host,
port and user) is closed. Each pool
holds at most `max_size` connections (the provisioning gate's width, FLASKOPS_PROVISION_CONCURRENCY) and
none once unused: it gives one back per `max_idle / max_size` seconds of disuse, so a server's last one
closes about `max_idle` (FLASKOPS_ADMIN_IDLE_SECONDS) after its last use and a settled operator holds no
PostgreSQL connection. At most `max_pools` pools exist (the least recently used is closed first, with its
two threads), so a deleted PostgresServer's pool holds no connection once idle and goes when evicted.

A pooled connection is checked with an empty query when it is handed out (a server restart or a
terminated backend costs a new login, not a failed provisioning). Logins happen in the pool's own thread,
where an error would reach the caller only as a timeout; so a pool's first login, and any after a pool
failed to deliver in `connect_timeout` seconds, is made by the caller itself (`login`), and libpq's own
error (a refused password, a refused connection) reaches server.py's error mapping unchanged.

Only this module and `server` import psycopg.
"""

from __future__ import annotations

import atexit
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

__all__ = [
    "POOLS",
    "AdminConnection",
    "AdminPools",
    "Lease",
    "close_all",
    "configure",
    "configure_session",
    "login",
]

# What the admin's sessions call themselves in pg_stat_activity.
APPLICATION_NAME = "flaskops"


@dataclass(frozen=True)
class AdminConnection:
    """How to reach a PostgresServer as its admin; the password never shows in repr().

    Hashable: the key of the admin's connection pool (every field counts, the password too).
    """

    host: str
    port: int
    sslmode: str
    username: str
    password: str = field(repr=False)
    connect_timeout: int = 5
    # Bounds every statement, so a lock held elsewhere cannot hang a reconcile worker thread.
    statement_timeout_ms: int = 30_000
    lock_timeout_ms: int = 10_000
    maintenance_db: str = "postgres"


def _login_kwargs(admin: AdminConnection) -> dict[str, Any]:
    return {
        "host": admin.host,
        "port": admin.port,
        "user": admin.username,
        "password": admin.password,
        "dbname": admin.maintenance_db,
        "sslmode": admin.sslmode,
        "connect_timeout": admin.connect_timeout,
        "application_name": APPLICATION_NAME,
        # CREATE DATABASE and DROP DATABASE refuse to run inside a transaction block.
        "autocommit": True,
        # A kept connection whose server vanished without a word (a failover, a cut network) fails within
        # seconds instead of waiting out the kernel's retransmissions (~15 min): keepalives while idle or
        # waiting, and a bound on unacknowledged writes.
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 2 * admin.connect_timeout * 1000,
    }


def login(admin: AdminConnection) -> psycopg.Connection:
    """A new autocommit connection as the admin (not configured: see `configure_session`).

    Raises psycopg.Error as libpq reports the failure (server.py maps it).
    """
    return psycopg.connect(**_login_kwargs(admin))


def configure_session(conn: psycopg.Connection, admin: AdminConnection) -> None:
    """The session settings every admin connection keeps for its whole life (set once, at login)."""
    conn.execute(sql.SQL("SET statement_timeout = {}").format(admin.statement_timeout_ms))
    # A lock held elsewhere (another operator's advisory lock, a session on a database being dropped)
    # fails fast instead of holding a worker thread; the caller retries.
    conn.execute(sql.SQL("SET lock_timeout = {}").format(admin.lock_timeout_ms))


@dataclass
class _Entry:
    pool: ConnectionPool[psycopg.Connection]
    # Whether a login with these credentials worked since the last time the pool failed to deliver: until
    # then callers log in themselves, so a refusal reaches them as libpq's error, not as a pool timeout.
    proven: bool = False


class Lease:
    """One admin connection for one session; `release()` hands it back.

    `fresh` is True for a login of the caller's own: not configured yet (`configure_session`), closed on
    release, never pooled. A pooled `conn` was configured at its login.
    """

    def __init__(self, conn: psycopg.Connection, pool: ConnectionPool[psycopg.Connection] | None) -> None:
        self.conn = conn
        self._pool = pool
        self.fresh = pool is None

    def release(self) -> None:
        """Back to its pool (which discards it if it is broken or the pool closed), or closed."""
        if self._pool is None:
            self.conn.close()
            return
        pool, self._pool = self._pool, None
        try:
            pool.putconn(self.conn)
        except ValueError:  # the pool let go of it already (closed meanwhile): just close it
            self.conn.close()


class AdminPools:
    """The admin connection pools of every PostgresServer the operator talks to. Thread-safe.

    `max_size` connections per admin identity at most; `max_idle` seconds (float) after its last use a
    pool holds none; `max_pools` pools at most (least recently used closed first).
    """

    def __init__(self, *, max_size: int = 4, max_idle: float = 60.0, max_pools: int = 16) -> None:
        if max_size < 1 or max_pools < 1 or not max_idle > 0:
            raise ValueError("max_size and max_pools must be at least 1, max_idle above 0")
        self.max_size = max_size
        self.max_idle = max_idle
        self.max_pools = max_pools
        self._guard = threading.Lock()
        self._entries: OrderedDict[AdminConnection, _Entry] = OrderedDict()

    def __len__(self) -> int:
        with self._guard:
            return len(self._entries)

    def _entry(self, admin: AdminConnection) -> _Entry:
        closing: list[ConnectionPool[psycopg.Connection]] = []
        with self._guard:
            entry = self._entries.get(admin)
            if entry is not None:
                self._entries.move_to_end(admin)
                return entry
            for other in list(self._entries):
                # The same login at the same server with other credentials or settings: a rotated Secret.
                if (other.host, other.port, other.username) == (admin.host, admin.port, admin.username):
                    closing.append(self._entries.pop(other).pool)
            while len(self._entries) >= self.max_pools:
                closing.append(self._entries.popitem(last=False)[1].pool)
            entry = _Entry(self._new_pool(admin))
            self._entries[admin] = entry
        for pool in closing:
            pool.close()
        return entry

    def _new_pool(self, admin: AdminConnection) -> ConnectionPool[psycopg.Connection]:
        pool: ConnectionPool[psycopg.Connection] = ConnectionPool(
            kwargs=_login_kwargs(admin),
            min_size=0,
            max_size=self.max_size,
            # psycopg_pool closes one unused connection per max_idle period: spread over max_size periods,
            # the last one goes about self.max_idle after the pool's last use.
            max_idle=self.max_idle / self.max_size,
            configure=lambda conn: configure_session(conn, admin),
            # One round trip on hand-out (~0.1 ms): a connection the server dropped is replaced, not used.
            check=ConnectionPool.check_connection,
            timeout=admin.connect_timeout,
            # A failing login is not retried in the background for long: callers log in themselves then.
            reconnect_timeout=admin.connect_timeout,
            num_workers=1,
            name=f"flaskops-admin-{admin.host}:{admin.port}",
            open=False,
        )
        pool.open()
        return pool

    def lease(self, admin: AdminConnection) -> Lease:
        """An admin connection, configured: pooled when the pool has (or can make) one in time, else a
        fresh login. Raises psycopg.Error when that login fails (libpq's error, for server.py to map)."""
        entry = self._entry(admin)
        if entry.proven:
            try:
                return Lease(entry.pool.getconn(), entry.pool)
            except PoolTimeout:
                # Every connection busy, or the pool cannot log in (server down, password refused): a
                # login of our own says which, in libpq's words.
                entry.proven = False
            except PoolClosed:  # superseded or evicted just now
                pass
        conn = login(admin)
        entry.proven = True
        return Lease(conn, None)

    def stats(self) -> list[dict[str, int]]:
        """psycopg_pool's counters of each pool (pool_size, pool_available, connections_num, ...)."""
        with self._guard:
            pools = [entry.pool for entry in self._entries.values()]
        return [pool.get_stats() for pool in pools]

    def close(self) -> None:
        """Close every pool and its idle connections (ones in use close when released)."""
        with self._guard:
            pools = [entry.pool for entry in self._entries.values()]
            self._entries.clear()
        for pool in pools:
            pool.close()


POOLS = AdminPools()


def configure(*, max_size: int | None = None, max_idle: float | None = None) -> None:
    """Set the bounds of the pools made from now on (the operator's settings, at start-up); closes the
    pools that exist (they are made again on demand)."""
    global POOLS
    old = POOLS
    POOLS = AdminPools(
        max_size=old.max_size if max_size is None else max_size,
        max_idle=old.max_idle if max_idle is None else max_idle,
        max_pools=old.max_pools,
    )
    old.close()


def close_all() -> None:
    """Close every admin pool (the operator's shutdown)."""
    POOLS.close()


# A process that never reaches the operator's cleanup (a script, a test session) still closes its pools, so
# psycopg_pool's threads stop and PostgreSQL sees the sessions end.
atexit.register(close_all)

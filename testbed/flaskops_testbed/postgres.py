"""A real local PostgreSQL for tests, demos and benchmarks: initdb + pg_ctl on a loopback port.

One harness, shared by the app tests, the operator end-to-end tests, the demo and the benchmarks.

    pg = LocalPostgres(Path("/some/dir"))     # state lives in that directory
    pg.start()                                # initdb once, then start (or reuse a running server)
    pg.create_database("guestbook")
    pg.url("guestbook")                       # postgresql://postgres:<pw>@127.0.0.1:<port>/guestbook
    pg.restart(); pg.stop()

Layout of ``base_dir`` (all of it is state; delete the directory to start from scratch):

    superuser-password   the generated password of the ``postgres`` superuser (mode 0600)
    state.json           {"port": ...} so a later process finds the server on the same port
    pgdata/              the cluster (owned by the ``postgres`` system user when run as root)
    run/                 the Unix socket directory and ``postgres.log``

Authentication is ``scram-sha-256`` for every connection, local and TCP, as on a real server, so a
wrong password fails here the way it fails in production. The server listens on 127.0.0.1 only.

PostgreSQL refuses to run as root. When this process is root, the server commands run as the
``postgres`` system user (``runuser -u postgres --``); the data directories are handed to that user
and every ancestor of ``base_dir`` gets the traverse bit for others (``o+x``, never read) so that
user can reach them (``mktemp -d`` folders are mode 0700).

Do not put ``base_dir`` under pytest's ``tmp_path``: every pytest start resets
``/tmp/pytest-of-<user>`` to mode 0700, which locks the ``postgres`` user out of a running server.

The cluster is a throwaway: ``fsync``/``synchronous_commit``/``full_page_writes`` are off unless
``durable=True``, which keeps tests fast on small machines. It survives a clean stop/restart, not a
power cut.

Several processes may share one ``base_dir`` (``python -m flaskops_testbed up`` in one, pytest in
another): ``start()`` on a running server just reuses it, and a file lock serialises start/stop.

Command line (used by ``make app-demo``)::

    python -m flaskops_testbed.postgres [--base-dir DIR] start|stop|restart|status|url [DBNAME]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from flaskops_testbed.ports import free_port

__all__ = [
    "ExternalPostgres",
    "LocalPostgres",
    "PostgresError",
    "PostgresTarget",
    "default_base_dir",
    "find_bindir",
    "free_port",
]

HOST = "127.0.0.1"
SUPERUSER = "postgres"
PG_SYSTEM_USER = "postgres"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.NNNNN"


class PostgresError(RuntimeError):
    """The local PostgreSQL could not be set up, started or reached."""


class PostgresTarget(Protocol):
    """What tests need from a PostgreSQL server, local or given through ``TEST_DATABASE_URL``."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def superuser(self) -> str: ...
    @property
    def password(self) -> str: ...
    @property
    def admin_url(self) -> str: ...
    def url(self, dbname: str, user: str | None = None, password: str | None = None) -> str: ...
    def create_database(self, name: str) -> None: ...
    def drop_database(self, name: str) -> None: ...


def default_base_dir() -> Path:
    """Where the shared long-lived server lives: ``$FLASKOPS_CACHE/postgres``."""
    cache = os.environ.get("FLASKOPS_CACHE") or str(Path.home() / ".cache" / "flaskops")
    return Path(cache) / "postgres"


def find_bindir() -> Path:
    """Locate the PostgreSQL server binaries (``$FLASKOPS_PG_BINDIR``, PATH, then Debian's layout)."""
    explicit = os.environ.get("FLASKOPS_PG_BINDIR")
    if explicit:
        if (Path(explicit) / "pg_ctl").exists():
            return Path(explicit)
        raise PostgresError(f"FLASKOPS_PG_BINDIR={explicit} has no pg_ctl in it")
    on_path = shutil.which("pg_ctl")
    if on_path and (Path(on_path).parent / "initdb").exists():
        return Path(on_path).parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    raise PostgresError(
        "no PostgreSQL server binaries found: install postgresql (Debian: apt-get install "
        "postgresql-15) or set FLASKOPS_PG_BINDIR to the directory holding initdb and pg_ctl"
    )


def _open_traverse(path: Path) -> None:
    """Give others the traverse bit on ``path`` and its ancestors, so the postgres user reaches it."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & 0o001:
            p.chmod(mode | 0o001)


def _quote_sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class LocalPostgres:
    """A PostgreSQL cluster in ``base_dir`` on 127.0.0.1, started with initdb/pg_ctl."""

    def __init__(self, base_dir: Path, port: int | None = None, *, durable: bool = False) -> None:
        self.base_dir = Path(base_dir).absolute()
        self.data_dir = self.base_dir / "pgdata"
        self.run_dir = self.base_dir / "run"
        self.log_file = self.run_dir / "postgres.log"
        self._password_file = self.base_dir / "superuser-password"
        self._state_file = self.base_dir / "state.json"
        self._lock_file = self.base_dir / ".lock"
        self._requested_port = port
        self._durable = durable
        self._bindir: Path | None = None

    def __repr__(self) -> str:
        return f"LocalPostgres({str(self.base_dir)!r}, port={self._current_port()})"

    # -- connection facts -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        port = self._current_port()
        if port is None:
            raise PostgresError(f"{self!r} has never been started: call start() first")
        return port

    @property
    def superuser(self) -> str:
        return SUPERUSER

    @property
    def password(self) -> str:
        try:
            return self._password_file.read_text().strip()
        except FileNotFoundError:
            raise PostgresError(f"{self!r} has no cluster yet: call start() first") from None

    @property
    def admin_url(self) -> str:
        """The superuser's URL to the ``postgres`` maintenance database."""
        return self.url("postgres")

    def url(self, dbname: str, user: str | None = None, password: str | None = None) -> str:
        """A plain ``postgresql://`` URL (user and password URL-escaped); superuser by default."""
        if user is None:
            user, password = self.superuser, self.password if password is None else password
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    # -- lifecycle --------------------------------------------------------------------------------

    def is_running(self) -> bool:
        """True when a postmaster for this data directory is alive (whoever started it)."""
        return self._running_pid() is not None

    def start(self, timeout: float = 60.0) -> LocalPostgres:
        """Create the cluster if needed and start it; reuse it when it is already running."""
        self._prepare_dirs()
        with self._locked():
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            if self.is_running():
                self._wait_until_accepting(timeout)
                return self
            self._start_locked(timeout)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the server (fast shutdown: open sessions are disconnected). A no-op when stopped."""
        if not self.data_dir.exists():
            return
        with self._locked():
            if self.is_running():
                self._pg_ctl("stop", "-m", "fast", "-w", "-t", str(int(timeout)))

    def restart(self, timeout: float = 60.0) -> None:
        """Stop and start again on the same port, as a real server restart looks to its clients."""
        self.stop(timeout)
        with self._locked():
            self._start_locked(timeout, keep_port=True)

    def destroy(self) -> None:
        """Stop the server and delete all of its state."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- administration ---------------------------------------------------------------------------

    def connect(self, dbname: str = "postgres") -> Any:
        """A superuser psycopg connection in autocommit mode (close it, or use ``with``)."""
        import psycopg

        return psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=10)

    def execute(self, sql: str, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement as the superuser; return its rows (empty for commands)."""
        with self.connect(dbname) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall()) if cur.description else []

    def create_database(self, name: str) -> None:
        """``CREATE DATABASE`` (fails if it exists)."""
        _create_database(self.admin_url, name)

    def drop_database(self, name: str) -> None:
        """``DROP DATABASE IF EXISTS ... WITH (FORCE)``: open sessions are terminated."""
        _drop_database(self.admin_url, name)

    # -- internals --------------------------------------------------------------------------------

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir

    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _server_cmd(self, argv: Sequence[str]) -> list[str]:
        if self._as_root():
            return ["runuser", "-u", PG_SYSTEM_USER, "--", *argv]
        return list(argv)

    def _run(self, argv: Sequence[str], what: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self._server_cmd(argv),
            cwd=self.base_dir,  # the postgres user must be able to stat its working directory
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
        )
        if proc.returncode != 0:
            raise PostgresError(
                f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n"
                f"{proc.stdout}{proc.stderr}{self._log_tail()}"
            )
        return proc

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args]
        return self._run(argv, f"pg_ctl {args[0]}")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n--- postgres.log (tail) ---\n" + "\n".join(text[-lines:])

    def _prepare_dirs(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        _open_traverse(self.base_dir)
        for d in (self.data_dir, self.run_dir):
            d.mkdir(mode=0o700, exist_ok=True)
            if self._as_root() and d.stat().st_uid != pwd.getpwnam(PG_SYSTEM_USER).pw_uid:
                shutil.chown(d, PG_SYSTEM_USER, PG_SYSTEM_USER)
            d.chmod(0o700)
        socket_path = str(self.run_dir / ".s.PGSQL.65535")
        if len(socket_path) > _SOCKET_PATH_MAX:
            raise PostgresError(
                f"base_dir {self.base_dir} is too deep for a Unix socket path ({len(socket_path)} "
                f"> {_SOCKET_PATH_MAX} bytes): choose a shorter directory"
            )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._lock_file, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _initdb(self) -> None:
        # A half-made cluster from an interrupted initdb would make initdb refuse: start clean.
        for child in self.data_dir.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        password = secrets.token_urlsafe(24)
        self._password_file.write_text(password + "\n")
        self._password_file.chmod(0o600)
        pwfile = self.run_dir / "initdb-pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if self._as_root():
            shutil.chown(pwfile, PG_SYSTEM_USER, PG_SYSTEM_USER)
        try:
            self._run(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-instructions",
                    *([] if self._durable else ["--no-sync"]),
                ],
                "initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write("\n# flaskops testbed: listen address, port and socket are set per start\n")
            fh.write("include_if_exists = 'flaskops.conf'\n")

    def _write_settings(self, port: int) -> None:
        settings = {
            "listen_addresses": HOST,
            "port": str(port),
            "unix_socket_directories": str(self.run_dir),
            "max_connections": "200",
            "shared_buffers": "32MB",
            "log_min_messages": "warning",
            "log_connections": "off",
        }
        if not self._durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        text = "".join(f"{k} = {_quote_sql_literal(v)}\n" for k, v in settings.items())
        path = self.data_dir / "flaskops.conf"
        path.write_text(text)
        if self._as_root():
            shutil.chown(path, PG_SYSTEM_USER, PG_SYSTEM_USER)
        self._state_file.write_text(json.dumps({"port": port}) + "\n")

    def _stored_port(self) -> int | None:
        try:
            return int(json.loads(self._state_file.read_text())["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _choose_port(self, keep_port: bool) -> tuple[int, bool]:
        """The port to start on, and whether another may be tried if it turns out to be taken.

        A server comes back on the port it had, so clients holding its URL reconnect; only when that
        port was taken meanwhile (and this is not a restart) does it move to a new one.
        """
        if self._requested_port is not None:
            return self._requested_port, False
        stored = self._stored_port()
        if stored is not None:
            return stored, not keep_port
        return free_port(), True

    def _start_locked(self, timeout: float, keep_port: bool = False) -> None:
        port, may_retry = self._choose_port(keep_port)
        for attempt in range(3):
            self._write_settings(port)
            self.log_file.unlink(missing_ok=True)
            try:
                self._pg_ctl("start", "-w", "-t", str(int(timeout)), "-l", str(self.log_file))
            except PostgresError as exc:
                # Another process may have taken a free port between our check and the bind.
                if may_retry and attempt < 2 and "already in use" in str(exc).lower():
                    port = free_port()
                    continue
                raise
            break
        self._wait_until_accepting(timeout)

    def _running_pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by another user
        return pid

    def _current_port(self) -> int | None:
        if self._running_pid() is not None:
            try:
                return int((self.data_dir / "postmaster.pid").read_text().splitlines()[3])
            except (OSError, ValueError, IndexError):
                pass
        return self._stored_port()

    def _wait_until_accepting(self, timeout: float) -> None:
        """Wait until the superuser can log in over TCP (not just until the postmaster is up)."""
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresError(f"{self!r} does not accept connections: {exc}") from exc
                if not self.is_running():
                    raise PostgresError(f"{self!r} is not running{self._log_tail()}") from exc
                time.sleep(0.05)


class ExternalPostgres:
    """A server the user gave as a URL (``TEST_DATABASE_URL``); same interface, no lifecycle."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme.split("+")[0] not in ("postgresql", "postgres"):
            raise PostgresError(f"not a PostgreSQL URL: {parts.scheme}://...")
        self._parts = parts._replace(scheme="postgresql")
        self._dbname = unquote(parts.path.lstrip("/")) or "postgres"

    def __repr__(self) -> str:
        return f"ExternalPostgres(host={self.host!r}, port={self.port}, dbname={self._dbname!r})"

    @property
    def host(self) -> str:
        return self._parts.hostname or "localhost"

    @property
    def port(self) -> int:
        return self._parts.port or 5432

    @property
    def superuser(self) -> str:
        return unquote(self._parts.username or "")

    @property
    def password(self) -> str:
        return unquote(self._parts.password or "")

    @property
    def database(self) -> str:
        """The database named in the URL."""
        return self._dbname

    @property
    def admin_url(self) -> str:
        """The given URL as is: its user must be allowed to create databases."""
        return urlunsplit(self._parts)

    def url(self, dbname: str, user: str | None = None, password: str | None = None) -> str:
        if user is None:
            netloc = self._parts.netloc
        else:
            auth = quote(user, safe="") + ("" if password is None else ":" + quote(password, safe=""))
            host = self.host if ":" not in self.host else f"[{self.host}]"
            netloc = f"{auth}@{host}:{self.port}"
        return urlunsplit(self._parts._replace(netloc=netloc, path="/" + quote(dbname, safe="")))

    def create_database(self, name: str) -> None:
        _create_database(self.admin_url, name)

    def drop_database(self, name: str) -> None:
        _drop_database(self.admin_url, name)


def _create_database(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop_database(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flaskops_testbed.postgres``: drive the shared local server from a shell."""
    parser = argparse.ArgumentParser(prog="python -m flaskops_testbed.postgres", description=__doc__)
    parser.add_argument("--base-dir", type=Path, default=None, help="default: $FLASKOPS_CACHE/postgres")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("command", choices=["start", "stop", "restart", "status", "url", "createdb"])
    parser.add_argument("dbname", nargs="?", default="postgres")
    args = parser.parse_args(argv)
    pg = LocalPostgres(args.base_dir or default_base_dir(), port=args.port)
    if args.command == "start":
        pg.start()
        print(f"PostgreSQL running at {pg.host}:{pg.port} (state in {pg.base_dir})")
    elif args.command == "stop":
        pg.stop()
    elif args.command == "restart":
        pg.restart()
    elif args.command == "status":
        running = pg.is_running()
        print(f"{'running' if running else 'stopped'}: {pg!r}")
        return 0 if running else 3
    elif args.command == "url":
        print(pg.url(args.dbname))
    elif args.command == "createdb":
        import psycopg

        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
            pg.create_database(args.dbname)
        print(pg.url(args.dbname))
    return 0


if __name__ == "__main__":
    sys.exit(main())

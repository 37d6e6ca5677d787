"""A real PgBouncer (Debian's package; `make test` installs it) in front of the test PostgreSQL.

PgBouncer refuses to run as root, so when the tests are root it runs as the ``postgres`` system user
that the PostgreSQL package created, from a directory that user owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from app_support import wait_for

from flaskops_testbed.postgres import PostgresTarget, free_port

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@dataclass
class PgBouncer:
    """PgBouncer on 127.0.0.1:``port`` for every database of ``target``, in ``pool_mode``."""

    target: PostgresTarget
    pool_mode: str
    pool_size: int = 3
    port: int = field(default_factory=free_port)
    base_dir: Path = field(init=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def url(self, dbname: str) -> str:
        auth = f"{quote(self.target.superuser, safe='')}:{quote(self.target.password, safe='')}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def log(self) -> str:
        path = self.base_dir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _config(self) -> str:
        # server_round_robin: consecutive transactions of one client land on different server
        # connections, as they do under real concurrency; a test for prepared statements needs that.
        return f"""[databases]
* = host={self.target.host} port={self.target.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {self.base_dir}/userlist.txt
pool_mode = {self.pool_mode}
default_pool_size = {self.pool_size}
max_client_conn = 100
server_round_robin = 1
logfile = {self.base_dir}/pgbouncer.log
"""

    def start(self) -> PgBouncer:
        if not Path(BINARY).exists():
            raise AssertionError(
                "pgbouncer is not installed: `make test` installs it (apt-get install pgbouncer)"
            )
        self.base_dir = Path(
            tempfile.mkdtemp(prefix="flaskops-pgbouncer-", dir=os.environ.get("FLASKOPS_PG_TMPDIR"))
        )
        (self.base_dir / "pgbouncer.ini").write_text(self._config())
        user, password = self.target.superuser, self.target.password.replace('"', '""')
        (self.base_dir / "userlist.txt").write_text(f'"{user}" "{password}"\n')
        run_as: dict[str, str] = {}
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in [self.base_dir, *self.base_dir.iterdir()]:
                os.chown(path, owner.pw_uid, owner.pw_gid)
            run_as = {"user": "postgres", "group": "postgres"}
        self.proc = subprocess.Popen(
            [BINARY, str(self.base_dir / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **run_as,  # type: ignore[call-overload]
        )
        wait_for(self._listening, 30, f"pgbouncer on 127.0.0.1:{self.port}")
        return self

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"pgbouncer exited with {self.proc.returncode}:\n{self.log()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.base_dir, ignore_errors=True)

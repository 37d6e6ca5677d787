"""The operator's own provisioning SQL run by the bench (floors, Helm's database hook) and cleanup."""

from __future__ import annotations

from typing import Any

from bench.common import parallel


def admin(pg: Any) -> Any:
    """An AdminConnection to the bench's PostgreSQL as its superuser."""
    from flaskops.postgres import server

    return server.AdminConnection(
        host=pg.host, port=pg.port, sslmode="disable", username=pg.superuser, password=pg.password
    )


def provision(pg: Any, dbname: str) -> None:
    """The operator's provisioning SQL for one app (role, database, revoke, stamp)."""
    from flaskops import ownership
    from flaskops.postgres import server

    owner = ownership.Owner("bench", dbname, f"uid-{dbname}", "production")
    server.ensure_database(
        admin(pg), ownership.Claim(owner, dbname, dbname), server.generate_password(), set_password=True
    )


def drop_databases(pg: Any, prefix: str) -> None:
    """Drop every database and role whose name starts with `prefix`."""
    rows = pg.execute(f"SELECT datname FROM pg_database WHERE datname LIKE '{prefix}%'")  # noqa: S608
    roles = pg.execute(f"SELECT rolname FROM pg_roles WHERE rolname LIKE '{prefix}%'")  # noqa: S608
    parallel([r[0] for r in rows], pg.drop_database, 4)
    for (role,) in roles:
        pg.execute(f'DROP ROLE IF EXISTS "{role}"')

"""Which database every FlaskApp uses, from the operator's in-memory indexes (for rule S5)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from . import budget, serverstatus
from .postgres import naming
from .safety import OtherApp
from .spec import parse_flaskapp


def app_entry(
    namespace: str, name: str, spec: Mapping[str, Any], status: Mapping[str, Any], created: str = ""
) -> dict[str, Any]:
    """What the FlaskApp index keeps per app: enough to know its database without an API call."""
    db = spec.get("database") or {}
    recorded = (status or {}).get("database") or {}
    return {
        "namespace": namespace,
        "name": name,
        "created": created,
        "environment": spec.get("environment", ""),
        "server": db.get("server"),
        "dbname": naming.names_for(namespace, name, db.get("name"))[0],
        "recorded": {k: recorded.get(k) for k in ("host", "port", "name")} if recorded.get("host") else None,
        # PostgreSQL's system_identifier of the server the app was provisioned on (status.database).
        "serverId": recorded.get("systemIdentifier"),
        # The most PostgreSQL connections the app can open (budget.worst_case), for its server's budget.
        "connections": budget.worst_case(parse_flaskapp({"spec": spec})),
    }


def server_entry(spec: Mapping[str, Any], status: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the PostgresServer index keeps per server (its last measured connection slots from status)."""
    return {
        "host": spec.get("host", ""),
        "port": int(spec.get("port") or 5432),
        "environments": tuple(spec.get("environments") or ()),
        "allowedNamespaces": dict(spec.get("allowedNamespaces") or {}),
        "availableConnections": serverstatus.available_connections(status),
    }


def server_ids(entries: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """PostgresServer name -> the system_identifier learnt when an app was provisioned on it."""
    return {e["server"]: e["serverId"] for e in entries if e.get("server") and e.get("serverId")}


def location(
    entry: Mapping[str, Any], servers: Mapping[str, Mapping[str, Any]]
) -> tuple[str, int, str] | None:
    """Host, port and database of an app: from its spec and server when it has one, else from its status."""
    server = servers.get(entry["server"]) if entry.get("server") else None
    if server is not None:
        return (server["host"].lower(), int(server["port"]), entry["dbname"])
    rec = entry.get("recorded")
    if rec:
        return (str(rec["host"]).lower(), int(rec["port"] or 5432), str(rec["name"]))
    return None


def other_apps(
    namespace: str,
    name: str,
    entries: Iterable[Mapping[str, Any]],
    servers: Mapping[str, Mapping[str, Any]],
    near: tuple[str, int, str] | None = None,
) -> list[OtherApp]:
    """Every other FlaskApp whose database location is known (only those at `near`, when given).

    Reconcile passes its own database's location: the rules only compare apps on the same database, and
    building an OtherApp for every app on every reconcile made an install of N apps O(N^2) (bench/).
    """
    out = []
    for e in entries:
        if (e["namespace"], e["name"]) == (namespace, name):
            continue
        loc = location(e, servers)
        # The same database name is the candidate: the rules then compare host/port or the server's
        # system_identifier (two host names of one server are one server).
        if loc is not None and (near is None or loc[2] == near[2]):
            out.append(
                OtherApp(
                    e["namespace"],
                    e["name"],
                    e["environment"],
                    loc,
                    e.get("created", ""),
                    provisioned=bool(e.get("server")),
                    server_id=e.get("serverId"),
                )
            )
    return out

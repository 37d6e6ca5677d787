"""Admission review of a FlaskApp: the pairing rules judged at `kubectl apply` time, plus warnings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import credentials, dburl
from .safety import WEBHOOK_RULES, OtherApp, Violation, check_pairing
from .spec import parse_flaskapp


@dataclass
class Review:
    violations: list[Violation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return not self.violations


def review(
    body: Mapping[str, Any],
    servers: Mapping[str, Mapping[str, Any]],
    others: Iterable[OtherApp],
) -> Review:
    """The same rules reconcile enforces (S1-S5; S6 needs the database), and advice that does not block."""
    app = parse_flaskapp(body)
    out = Review()
    if app.environment == "production" and app.database.deletion_policy == "Delete":
        # The CRD's CEL rule refuses this too; the webhook repeats it for clusters that skip CEL.
        out.violations.append(Violation("deletionPolicy", "Delete is not allowed for a production FlaskApp"))
    if app.database.server:
        server = servers.get(app.database.server)
        if server is None:
            out.warnings.append(
                f"PostgresServer '{app.database.server}' does not exist yet; the app waits for it"
            )
        else:
            dbname, role = (
                (app.database.name, app.database.name)
                if app.database.name
                else credentials.default_names(app.namespace or "default", app.name or "unnamed")
            )
            identity = dburl.DatabaseIdentity(server["host"], int(server["port"]), dbname, role)
            out.violations.extend(
                check_pairing(
                    app.environment,
                    identity,
                    server_name=app.database.server,
                    server_environments=server["environments"],
                    others=others,
                    rules=WEBHOOK_RULES,
                )
            )
    else:
        out.warnings.append(
            "database.existingSecret: the pairing rules are checked when the operator reads the Secret, "
            "not at admission"
        )
    if app.environment == "production":
        if app.replicas < 2:
            out.warnings.append("spec.replicas below 2 in production: a node drain interrupts service")
        if not app.resources:
            out.warnings.append("spec.resources is empty: set requests and limits for a production app")
        if not app.migrations.enabled:
            out.warnings.append("spec.migrations.enabled is false: schema changes will not be applied")
    return out

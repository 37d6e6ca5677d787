"""Admission review of a FlaskApp: the pairing rules judged at `kubectl apply` time, plus warnings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import budget, manifests, tenancy
from .postgres import naming
from .postgres.url import Address
from .safety import WEBHOOK_RULES, OtherApp, Violation, check_pairing
from .spec import parse_flaskapp

# The rule a refusal names when spec.env's DB_STATEMENT_TIMEOUT_MS is not below spec.gunicorn.timeout.
TIMEOUTS_CONTRADICT = "TimeoutsContradict"


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
    *,
    namespace_labels: Mapping[str, str] | None = None,
    server_ids: Mapping[str, str] | None = None,
    authenticated: bool = True,
) -> Review:
    """The same rules reconcile enforces, and advice that does not block.

    Judged here: the pairing rules S1-S5 (S6 needs the database), reserved database/role names, and the
    PostgresServer's allowedNamespaces for the app's namespace (`namespace_labels` None: not seen yet), and a
    literal spec.env DB_STATEMENT_TIMEOUT_MS not below spec.gunicorn.timeout (TimeoutsContradict).
    Ownership of an existing role or database needs the server and is judged by reconcile.

    `authenticated` False (the caller showed no client certificate of the API server, see
    Settings.webhook_client_ca): anyone who reaches the port could forge this review about any namespace,
    so the answer may depend only on the request and the PostgresServer's own configuration — `others`,
    `namespace_labels`, `server_ids` and the server's connection budget (which other apps use up) are
    ignored, and the rules that read them (S5, allowedNamespaces) are left to reconcile, which refuses
    before it touches anything.

    A PostgresServer that does not admit the namespace (authenticated), or that admits only some
    namespaces (anonymous: the caller may be in any), is not described any further: no rule reading its
    host or environments (S1-S4) and no budget warning, as reconcile's NamespaceNotAllowed names only it.
    """
    if not authenticated:
        others, namespace_labels, server_ids = (), None, None
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
        elif authenticated and not tenancy.admits(server.get("allowedNamespaces"), namespace_labels):
            # Refused for its namespace: nothing more of the server (its host, its environments) is told,
            # as reconcile tells nothing more (tenancy.refusal_message).
            out.violations.append(
                Violation(
                    tenancy.NAMESPACE_NOT_ALLOWED,
                    tenancy.refusal_message(app.database.server, app.namespace),
                )
            )
        elif not authenticated and not tenancy.admits(server.get("allowedNamespaces"), None):
            # A server only some namespaces may use, asked by an anonymous caller who may be in any of
            # them: its configuration is left to reconcile, which judges the namespace first.
            pass
        else:
            try:
                identity = naming.identity_for(app, Address(server["host"], int(server["port"])))
            except naming.ReservedName:
                pass  # refused below, whether the server exists or not
            else:
                out.violations.extend(
                    check_pairing(
                        app.environment,
                        identity,
                        server_name=app.database.server,
                        server_environments=server["environments"],
                        others=others,
                        rules=WEBHOOK_RULES,
                        server_id=(server_ids or {}).get(app.database.server),
                    )
                )
            too_many = (
                budget.app_warning(app, app.database.server, server.get("availableConnections"))
                if authenticated
                else None
            )
            if too_many:
                out.warnings.append(too_many)
        reserved = naming.reserved(app)
        if reserved is not None:
            out.violations.append(Violation(reserved.reason, reserved.message))
    else:
        out.warnings.append(
            "database.existingSecret: the pairing rules are checked when the operator reads the Secret, "
            "not at admission"
        )
    conflict = manifests.statement_timeout_conflict(app)
    if conflict is not None:
        out.violations.append(Violation(TIMEOUTS_CONTRADICT, conflict))
    if app.environment == "production":
        if app.replicas < 2:
            out.warnings.append("spec.replicas below 2 in production: a node drain interrupts service")
        if not app.resources:
            out.warnings.append("spec.resources is empty: set requests and limits for a production app")
        if not app.migrations.enabled:
            out.warnings.append("spec.migrations.enabled is false: schema changes will not be applied")
    return out


def malformed_review(data: Any) -> str | None:
    """What is wrong with an AdmissionReview body (admission.k8s.io/v1), or None when it is well formed.

    The API server always sends well-formed reviews; anything else reaching the port is answered with a
    plain 400 naming the first problem, never a 500 (the shape: Kubernetes' "Dynamic Admission Control").
    """
    if not isinstance(data, dict):
        return "the body is not a JSON object"
    if data.get("apiVersion") != "admission.k8s.io/v1" or data.get("kind") != "AdmissionReview":
        return "the body is not an admission.k8s.io/v1 AdmissionReview"
    request = data.get("request")
    if not isinstance(request, dict):
        return "request is missing or not an object"
    if not isinstance(request.get("uid"), str) or not request["uid"]:
        return "request.uid is missing"
    if request.get("operation") not in ("CREATE", "UPDATE", "DELETE", "CONNECT"):
        return "request.operation is not CREATE, UPDATE, DELETE or CONNECT"
    if not isinstance(request.get("userInfo"), dict):
        return "request.userInfo is missing or not an object"
    resource = request.get("resource")
    if not isinstance(resource, dict) or not all(
        isinstance(resource.get(k), str) for k in ("group", "version", "resource")
    ):
        return "request.resource must have group, version and resource"
    for key in ("object", "oldObject"):
        if request.get(key) is not None and not isinstance(request[key], dict):
            return f"request.{key} is not an object"
    if request.get("object") is None and request.get("oldObject") is None:
        return "request has neither object nor oldObject"
    return None

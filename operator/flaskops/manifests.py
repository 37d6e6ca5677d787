"""The children of a FlaskApp as plain dicts: Secrets, the migration Job, the Deployment and the Service."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from . import names
from .spec import FlaskAppSpec

# kubelet's preStop sleep lets endpoints drop the pod before Gunicorn starts its graceful shutdown.
PRESTOP_SLEEP_SECONDS = 5
TMP_VOLUME = "tmp"


def digest(value: Any, length: int = 10) -> str:
    """A short stable hash of any JSON-able value."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def labels(app: FlaskAppSpec, component: str) -> dict[str, str]:
    return {
        names.LABEL_APP: app.name,
        names.LABEL_COMPONENT: component,
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        "app.kubernetes.io/name": app.name,
        "app.kubernetes.io/instance": app.name,
    }


def owner_reference(app: FlaskAppSpec) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.FLASKAPP_KIND,
        "name": app.name,
        "uid": app.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(app: FlaskAppSpec, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": app.namespace,
        "labels": labels(app, component),
        "ownerReferences": [owner_reference(app)],
    }


def secret(
    app: FlaskAppSpec,
    name: str,
    component: str,
    data: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An Opaque Secret owned by the app, with base64 `data` (so it compares with what the API returns)."""
    meta = _metadata(app, name, component)
    if annotations:
        meta["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())},
    }


# --- environment shared by the migration Job and the Deployment ----------------------------------------


def database_url_source(app: FlaskAppSpec) -> tuple[str, str]:
    """The (Secret name, key) holding DATABASE_URL for this app."""
    if app.database.existing_secret:
        return app.database.existing_secret.name, app.database.existing_secret.key
    return names.db_secret_name(app.name), "DATABASE_URL"


def secret_key_source(app: FlaskAppSpec) -> tuple[str, str]:
    """The (Secret name, key) holding SECRET_KEY for this app."""
    if app.secret_key_ref:
        return app.secret_key_ref.name, app.secret_key_ref.key
    return names.secret_key_secret_name(app.name), names.SECRET_KEY


def _from_secret(var: str, source: tuple[str, str], optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": source[0], "key": source[1]}
    if optional:
        ref["optional"] = True
    return {"name": var, "valueFrom": {"secretKeyRef": ref}}


def app_env(app: FlaskAppSpec) -> list[dict[str, Any]]:
    """The image contract's environment: APP_ENV, DATABASE_URL, SECRET_KEY(+_FALLBACKS), then the user's."""
    key_secret = secret_key_source(app)
    env: list[dict[str, Any]] = [
        {"name": "APP_ENV", "value": app.environment},
        _from_secret("DATABASE_URL", database_url_source(app)),
        _from_secret(names.SECRET_KEY, key_secret),
    ]
    if not app.secret_key_ref:
        env.append(
            _from_secret(names.SECRET_KEY_FALLBACKS, (key_secret[0], names.SECRET_KEY_FALLBACKS), True)
        )
    env.extend(dict(e) for e in app.env)
    return env


def _pod_security() -> dict[str, Any]:
    # Pod Security "restricted": what a careful team sets by hand, and what a restricted namespace demands.
    return {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
    }


def _pull(app: FlaskAppSpec, container: dict[str, Any], pod: dict[str, Any]) -> None:
    if app.image_pull_policy:
        container["imagePullPolicy"] = app.image_pull_policy
    if app.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in app.image_pull_secrets]


# --- the migration Job -----------------------------------------------------------------------------------


def _migration_template(app: FlaskAppSpec) -> dict[str, Any]:
    mig = app.migrations
    pod_labels = {**mig.pod_labels, **labels(app, "migration")}
    container: dict[str, Any] = {
        "name": "migrate",
        "image": app.image,
        "command": list(mig.command),
        "env": app_env(app),
        "securityContext": _container_security(),
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir, not host /tmp
    }
    if app.resources:
        container["resources"] = dict(app.resources)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        # A migration needs the database, never the Kubernetes API.
        "automountServiceAccountToken": False,
        "securityContext": _pod_security(),
        "containers": [container],
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}],
    }
    _pull(app, container, pod)
    return {"metadata": {"labels": pod_labels, "annotations": dict(mig.pod_annotations)}, "spec": pod}


def migration_hash(app: FlaskAppSpec, retry: str = "", database: str = "") -> str:
    """What makes a migration run distinct: image, command, env, the rest of its pod, a retry token, and
    the database it migrates (a migration is for this image on this database)."""
    return digest({"template": _migration_template(app), "retry": retry, "database": database})


def migration_job_name(app: FlaskAppSpec, retry: str = "", database: str = "") -> str:
    return f"{app.name}-migrate-{migration_hash(app, retry, database)}"


def migration_job(app: FlaskAppSpec, retry: str = "", database: str = "") -> dict[str, Any]:
    """The Job that runs the app's migration command with the new image against `database`, once."""
    meta = _metadata(app, migration_job_name(app, retry, database), "migration")
    meta["annotations"] = {names.ANNOTATION_MIGRATION_IMAGE: app.image}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": app.migrations.backoff_limit,
            "activeDeadlineSeconds": app.migrations.active_deadline_seconds,
            "template": _migration_template(app),
        },
    }


# --- the Gunicorn Deployment and its Service -------------------------------------------------------------


def gunicorn_command(app: FlaskAppSpec) -> list[str]:
    """Gunicorn's command line from spec.gunicorn; the image's gunicorn.conf.py (if any) is read too."""
    g = app.gunicorn
    return [
        "gunicorn",
        "--bind",
        f"0.0.0.0:{app.port}",
        "--workers",
        str(g.workers),
        "--threads",
        str(g.threads),
        "--timeout",
        str(g.timeout),
        "--graceful-timeout",
        str(g.graceful_timeout),
        "--max-requests",
        str(g.max_requests),
        "--max-requests-jitter",
        str(g.max_requests // 10),
        # Read-only root filesystem: heartbeat files in memory, and no control socket in $HOME.
        "--worker-tmp-dir",
        "/dev/shm",  # noqa: S108 - tmpfs inside the pod
        "--no-control-socket",
        app.wsgi,
    ]


# The image contract's statement timeout: the variable, and the reference app's default when it is unset
# (app/guestbook/config.py; tests/operator/test_manifests.py checks they agree).
STATEMENT_TIMEOUT_VAR = "DB_STATEMENT_TIMEOUT_MS"
APP_STATEMENT_TIMEOUT_MS = 15_000


def user_statement_timeout(app: FlaskAppSpec) -> Mapping[str, Any] | None:
    """The user's DB_STATEMENT_TIMEOUT_MS entry of spec.env (core/v1 EnvVar), or None."""
    for entry in app.env:
        if entry.get("name") == STATEMENT_TIMEOUT_VAR:
            return entry
    return None


def derived_statement_timeout_ms(app: FlaskAppSpec) -> int | None:
    """Milliseconds of DB_STATEMENT_TIMEOUT_MS the operator gives the web container, or None for none.

    A statement must be cancelled (and answered by the app, cleanly) before Gunicorn kills a silent
    worker after ``spec.gunicorn.timeout`` seconds (an HTML 500 and a lost worker), so the app gets
    ``timeout - 1 s`` (half the timeout when that is 1 s) when that is below its 15 s default. None when
    the default already is below (timeout >= 16 s: the pod template of such apps is unchanged) or when the
    user set the variable in spec.env (the webhook refuses a literal value not below the timeout).
    """
    if user_statement_timeout(app) is not None:
        return None
    timeout_ms = app.gunicorn.timeout * 1000
    below = timeout_ms - min(1000, timeout_ms // 2)
    return below if below < APP_STATEMENT_TIMEOUT_MS else None


def statement_timeout_conflict(app: FlaskAppSpec) -> str | None:
    """Why the user's DB_STATEMENT_TIMEOUT_MS contradicts spec.gunicorn.timeout, or None.

    An empty value is the app's default (15 s). 0 (no statement timeout from the app: e.g.
    ``ALTER ROLE … SET statement_timeout`` behind PgBouncer), a value from a Secret or ConfigMap, and a
    non-number (the app refuses to start with it) are not judged here.
    """
    entry = user_statement_timeout(app)
    if entry is None or "valueFrom" in entry:
        return None
    raw = str(entry.get("value") or "").strip()
    if raw and not raw.isdigit():
        return None
    value, timeout_ms = (int(raw) if raw else APP_STATEMENT_TIMEOUT_MS), app.gunicorn.timeout * 1000
    if value == 0 or value < timeout_ms:
        return None
    shown = raw if raw else f'"" (the app\'s default, {APP_STATEMENT_TIMEOUT_MS})'
    return (
        f"spec.env {STATEMENT_TIMEOUT_VAR}={shown} is not below spec.gunicorn.timeout={app.gunicorn.timeout} s "
        f"({timeout_ms} ms): Gunicorn would kill the worker before the statement timeout answers; set "
        f"{STATEMENT_TIMEOUT_VAR} below {timeout_ms}, raise spec.gunicorn.timeout, or drop the variable "
        "(the operator then passes one below the worker timeout)"
    )


def web_env(app: FlaskAppSpec) -> list[dict[str, Any]]:
    """The web container's environment: the image contract's, PORT, and a consistent statement timeout."""
    env = [*app_env(app), {"name": "PORT", "value": str(app.port)}]
    derived = derived_statement_timeout_ms(app)
    if derived is not None:
        env.append({"name": STATEMENT_TIMEOUT_VAR, "value": str(derived)})
    return env


def web_selector(app: FlaskAppSpec) -> dict[str, str]:
    return {names.LABEL_APP: app.name, names.LABEL_COMPONENT: "web"}


def deployment(app: FlaskAppSpec, image: str, secrets_checksum: str) -> dict[str, Any]:
    """The Gunicorn Deployment serving `image` (the migrated one, never merely the desired one)."""
    port_name = "http"
    probe = {"httpGet": {"path": app.readiness_path, "port": port_name}}
    container: dict[str, Any] = {
        "name": "web",
        "image": image,
        "command": gunicorn_command(app),
        "env": web_env(app),
        "ports": [{"name": port_name, "containerPort": app.port, "protocol": "TCP"}],
        # 5s > the app's 3s database connect timeout, so an unreachable database answers 503, not a probe timeout.
        "readinessProbe": {**probe, "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {
            "httpGet": {"path": app.liveness_path, "port": port_name},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "startupProbe": {
            "httpGet": {"path": app.liveness_path, "port": port_name},
            "periodSeconds": 2,
            "failureThreshold": 30,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
        "securityContext": _container_security(),
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir
    }
    if app.resources:
        container["resources"] = dict(app.resources)
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": _pod_security(),
        "terminationGracePeriodSeconds": app.gunicorn.graceful_timeout + PRESTOP_SLEEP_SECONDS + 5,
        "containers": [container],
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
    }
    if app.service_account_name:
        pod["serviceAccountName"] = app.service_account_name
    _pull(app, container, pod)
    pod_labels = {**app.pod_labels, **web_selector(app), **labels(app, "web")}
    annotations = {**app.pod_annotations, names.ANNOTATION_SECRETS_CHECKSUM: secrets_checksum}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(app, app.name, "web"),
        "spec": {
            "replicas": app.replicas,
            "selector": {"matchLabels": web_selector(app)},
            # Never below the wanted capacity during a rollout; surge a quarter.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "revisionHistoryLimit": 5,
            "template": {"metadata": {"labels": pod_labels, "annotations": annotations}, "spec": pod},
        },
    }


def service(app: FlaskAppSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(app, app.name, "web"),
        "spec": {
            "type": "ClusterIP",
            "selector": web_selector(app),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def secrets_checksum(*datas: Mapping[str, Any]) -> str:
    """Checksum of the Secrets' data the pods read, so a rotation rolls the pods."""
    return digest([dict(sorted(d.items())) for d in datas], length=16)

"""A typed, defaulted view of FlaskApp and PostgresServer objects (plain dicts in, frozen dataclasses out)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Defaults mirror the CRD schema's `default:` values; tests/operator/test_spec.py fails if they drift.
# They matter for unit tests with plain dicts and for objects read before the API server defaulted them.
DEFAULT_REPLICAS = 2
DEFAULT_WSGI = "wsgi:app"
DEFAULT_PORT = 8000
DEFAULT_GUNICORN = {"workers": 2, "threads": 4, "timeout": 30, "gracefulTimeout": 25, "maxRequests": 1000}
DEFAULT_MIGRATION_COMMAND = ("flask", "db", "upgrade")
DEFAULT_ACTIVE_DEADLINE_SECONDS = 600
DEFAULT_BACKOFF_LIMIT = 0
DEFAULT_READINESS_PATH = "/readyz"
DEFAULT_LIVENESS_PATH = "/livez"
DEFAULT_DELETION_POLICY = "Retain"
DEFAULT_EXISTING_SECRET_KEY = "DATABASE_URL"
DEFAULT_SECRET_KEY_KEY = "SECRET_KEY"
DEFAULT_PG_PORT = 5432
DEFAULT_SSLMODE = "prefer"


@dataclass(frozen=True)
class Gunicorn:
    workers: int
    threads: int
    timeout: int
    graceful_timeout: int
    max_requests: int


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class Database:
    server: str | None
    existing_secret: SecretKeyRef | None
    name: str | None
    deletion_policy: str
    # The tenant's opt-in to adopt a role/database flaskops did not create (the server must consent too).
    adopt_existing: bool = False


@dataclass(frozen=True)
class Migrations:
    enabled: bool
    command: tuple[str, ...]
    active_deadline_seconds: int
    backoff_limit: int
    pod_labels: Mapping[str, str]
    pod_annotations: Mapping[str, str]


@dataclass(frozen=True)
class FlaskAppSpec:
    name: str
    namespace: str
    uid: str
    generation: int
    environment: str
    image: str
    image_pull_policy: str | None
    image_pull_secrets: tuple[str, ...]
    replicas: int
    wsgi: str
    gunicorn: Gunicorn
    port: int
    env: tuple[Mapping[str, Any], ...]
    resources: Mapping[str, Any]
    pod_labels: Mapping[str, str]
    pod_annotations: Mapping[str, str]
    service_account_name: str | None
    database: Database
    migrations: Migrations
    secret_key_ref: SecretKeyRef | None
    secret_key_rotation: str | None
    readiness_path: str
    liveness_path: str
    # Scheduling, passed through as core/v1 PodSpec fields; empty means absent from the pod template.
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] = field(default_factory=dict)
    priority_class_name: str | None = None
    # None: the operator's default spread (manifests.default_topology_spread); [] opts out.
    topology_spread_constraints: tuple[Mapping[str, Any], ...] | None = None
    created: str = ""
    deleting: bool = False
    finalizers: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class PostgresServerSpec:
    name: str
    host: str
    port: int
    ssl_mode: str
    admin_secret_namespace: str
    admin_secret_name: str
    environments: tuple[str, ...]
    # Gateway API shape: {"from": "All" | "Selector", "selector": metav1.LabelSelector}.
    allowed_namespaces: Mapping[str, Any] = field(default_factory=dict)
    # [{"namespace": ..., "name": ...}]: brownfield databases a namespace may adopt.
    adoptable_databases: tuple[Mapping[str, str], ...] = ()


def _ref(raw: Mapping[str, Any] | None, default_key: str) -> SecretKeyRef | None:
    if not raw:
        return None
    return SecretKeyRef(name=str(raw["name"]), key=str(raw.get("key") or default_key))


def parse_flaskapp(body: Mapping[str, Any]) -> FlaskAppSpec:
    """Read a FlaskApp object (as the API returns it) into a defaulted, typed spec."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    gun = {**DEFAULT_GUNICORN, **(spec.get("gunicorn") or {})}
    db = spec.get("database") or {}
    mig = spec.get("migrations") or {}
    sk = spec.get("secretKey") or {}
    probes = spec.get("probes") or {}
    return FlaskAppSpec(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0),
        environment=str(spec.get("environment", "")),
        image=str(spec.get("image", "")),
        image_pull_policy=spec.get("imagePullPolicy"),
        image_pull_secrets=tuple(str(s["name"]) for s in spec.get("imagePullSecrets") or []),
        replicas=int(spec.get("replicas", DEFAULT_REPLICAS)),
        wsgi=str(spec.get("wsgi") or DEFAULT_WSGI),
        gunicorn=Gunicorn(
            workers=int(gun["workers"]),
            threads=int(gun["threads"]),
            timeout=int(gun["timeout"]),
            graceful_timeout=int(gun["gracefulTimeout"]),
            max_requests=int(gun["maxRequests"]),
        ),
        port=int(spec.get("port") or DEFAULT_PORT),
        env=tuple(spec.get("env") or ()),
        resources=dict(spec.get("resources") or {}),
        pod_labels=dict(spec.get("podLabels") or {}),
        pod_annotations=dict(spec.get("podAnnotations") or {}),
        service_account_name=spec.get("serviceAccountName"),
        database=Database(
            server=db.get("server"),
            existing_secret=_ref(db.get("existingSecret"), DEFAULT_EXISTING_SECRET_KEY),
            name=db.get("name"),
            deletion_policy=str(db.get("deletionPolicy") or DEFAULT_DELETION_POLICY),
            adopt_existing=bool(db.get("adoptExisting", False)),
        ),
        migrations=Migrations(
            enabled=bool(mig.get("enabled", True)),
            command=tuple(mig.get("command") or DEFAULT_MIGRATION_COMMAND),
            active_deadline_seconds=int(mig.get("activeDeadlineSeconds") or DEFAULT_ACTIVE_DEADLINE_SECONDS),
            backoff_limit=int(mig.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)),
            pod_labels=dict(mig.get("podLabels") or {}),
            pod_annotations=dict(mig.get("podAnnotations") or {}),
        ),
        secret_key_ref=_ref(sk.get("secretRef"), DEFAULT_SECRET_KEY_KEY),
        secret_key_rotation=sk.get("rotation"),
        readiness_path=str(probes.get("readinessPath") or DEFAULT_READINESS_PATH),
        liveness_path=str(probes.get("livenessPath") or DEFAULT_LIVENESS_PATH),
        node_selector=dict(spec.get("nodeSelector") or {}),
        tolerations=tuple(dict(t) for t in spec.get("tolerations") or ()),
        affinity=dict(spec.get("affinity") or {}),
        priority_class_name=spec.get("priorityClassName") or None,
        topology_spread_constraints=(
            None
            if spec.get("topologySpreadConstraints") is None
            else tuple(dict(t) for t in spec["topologySpreadConstraints"])
        ),
        created=str(meta.get("creationTimestamp") or ""),
        deleting=bool(meta.get("deletionTimestamp")),
        finalizers=tuple(meta.get("finalizers") or ()),
    )


def parse_postgresserver(body: Mapping[str, Any]) -> PostgresServerSpec:
    """Read a PostgresServer object into a defaulted, typed spec."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    ref = spec.get("adminSecretRef") or {}
    return PostgresServerSpec(
        name=str(meta.get("name", "")),
        host=str(spec.get("host", "")),
        port=int(spec.get("port") or DEFAULT_PG_PORT),
        ssl_mode=str(spec.get("sslMode") or DEFAULT_SSLMODE),
        admin_secret_namespace=str(ref.get("namespace", "")),
        admin_secret_name=str(ref.get("name", "")),
        environments=tuple(spec.get("environments") or ()),
        allowed_namespaces=dict(spec.get("allowedNamespaces") or {}),
        adoptable_databases=tuple(dict(e) for e in spec.get("adoptableDatabases") or ()),
    )

"""`kubectl flaskops`: a kubectl plugin for the day-2 questions about one FlaskApp.

    kubectl flaskops status NAME            conditions, images, migration Job and its last log lines,
                                            database and Secret names (never a secret value)
    kubectl flaskops retry-migration NAME   re-run a failed migration (annotation flaskops.dev/retry-migration)
    kubectl flaskops rotate-secret-key NAME rotate the generated SECRET_KEY (spec.secretKey.rotation)
    kubectl flaskops logs NAME --migration  the migration pod's log (without --migration: the web pods')

kubectl finds the `kubectl-flaskops` executable on PATH (installed with this package) and passes the
arguments through. It reads the kubeconfig the way kubectl does (KUBECONFIG, several files merged, else
~/.kube/config; --kubeconfig and --context override; in a pod, the ServiceAccount) and needs only a
namespace user's rights: the built-in `edit` role (which the chart extends to FlaskApps) in the app's
namespace. It never reads a Secret and never reads cluster-scoped objects.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from . import conditions, names
from .kube import Kube

PROG = "kubectl flaskops"
RETRY_MIGRATION = f"{names.ANNOTATION_PREFIX}/retry-migration"
# Kubernetes' own label on a Job's pods (the pre-1.27 `job-name` is still set too, but deprecated).
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
SERVICEACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_LOG_LINES = 10


class PluginError(Exception):
    """A failure to report in one line on stderr, with exit status 1."""


# --- connecting ------------------------------------------------------------------------------------------


def connect(kubeconfig: str | None, context: str | None) -> tuple[client.ApiClient, str]:
    """An ApiClient and the context's namespace ("default" when it names none).

    Raises PluginError when no kubeconfig (and no in-cluster ServiceAccount) can be loaded.
    """
    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, FileNotFoundError, OSError) as exc:
        if kubeconfig is None and context is None and SERVICEACCOUNT_NAMESPACE.exists():
            config.load_incluster_config()
            return client.ApiClient(), SERVICEACCOUNT_NAMESPACE.read_text().strip()
        raise PluginError(f"no usable kubeconfig: {exc}") from None
    chosen = next((c for c in contexts if c["name"] == context), None) if context else active
    if chosen is None:
        raise PluginError(f"context {context!r} not found in the kubeconfig")
    api = config.new_client_from_config(config_file=kubeconfig, context=chosen["name"])
    api.user_agent = "kubectl-flaskops"
    return api, str((chosen.get("context") or {}).get("namespace") or "default")


# --- reading ---------------------------------------------------------------------------------------------


@dataclass
class AppReport:
    """Everything `status` shows, read with a namespace user's rights."""

    app: Mapping[str, Any]
    job: Mapping[str, Any] | None = None
    pod: Mapping[str, Any] | None = None
    log_lines: list[str] = field(default_factory=list)
    log_error: str | None = None
    deployment: Mapping[str, Any] | None = None
    events: list[Mapping[str, Any]] = field(default_factory=list)


class Plugin:
    """The plugin's API calls, against one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.kube = Kube(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace

    def app(self, name: str) -> dict[str, Any]:
        """The FlaskApp; PluginError when it does not exist or may not be read."""
        try:
            obj = self.kube.get(names.FLASKAPP_KIND, self.namespace, name)
        except ApiException as exc:
            raise PluginError(_api_error(exc, f"read FlaskApp {self.namespace}/{name}")) from None
        if obj is None:
            raise PluginError(f"FlaskApp {self.namespace}/{name} not found")
        return obj

    def migration_pod(self, job_name: str) -> dict[str, Any] | None:
        """The newest pod of a migration Job (a Job with retries has several)."""
        pods = self.kube.request(
            "GET",
            f"/api/v1/namespaces/{self.namespace}/pods",
            query={"labelSelector": f"{JOB_NAME_LABEL}={job_name}"},
        ).get("items")
        return newest(pods or [])

    def web_pods(self, name: str) -> list[dict[str, Any]]:
        selector = f"{names.LABEL_APP}={name},{names.LABEL_COMPONENT}=web"
        pods = self.kube.request(
            "GET", f"/api/v1/namespaces/{self.namespace}/pods", query={"labelSelector": selector}
        ).get("items")
        return sorted(pods or [], key=lambda p: p["metadata"]["name"])

    def log(self, pod: str, container: str, tail: int | None, follow: bool = False) -> Any:
        """The container's log: a str, or with follow=True a stream of bytes chunks."""
        if follow:
            resp: Any = self.core.read_namespaced_pod_log(
                pod, self.namespace, container=container, tail_lines=tail, follow=True, _preload_content=False
            )
            return resp.stream()  # urllib3's response: the client's type hint says str
        return self.core.read_namespaced_pod_log(pod, self.namespace, container=container, tail_lines=tail)

    def report(self, name: str, log_lines: int) -> AppReport:
        rep = AppReport(app=self.app(name))
        status = rep.app.get("status") or {}
        job_name = (status.get("migration") or {}).get("jobName")
        if job_name:
            rep.job = self.kube.get("Job", self.namespace, job_name)
            rep.pod = self.migration_pod(job_name) if rep.job else None
        if rep.pod is not None and log_lines > 0:
            try:
                text = self.log(rep.pod["metadata"]["name"], "migrate", log_lines)
                rep.log_lines = text.splitlines()
            except ApiException as exc:
                # Pods that never started, or nodes whose kubelet does not serve logs (simulated ones).
                rep.log_error = _api_error(exc, "read the log")
        rep.deployment = self.kube.get("Deployment", self.namespace, name)
        selector = f"involvedObject.kind={names.FLASKAPP_KIND},involvedObject.name={name}"
        events = self.kube.request(
            "GET", f"/api/v1/namespaces/{self.namespace}/events", query={"fieldSelector": selector}
        )
        rep.events = list(events.get("items") or [])
        return rep


def newest(objs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The object created last (ties: by name), or None."""
    if not objs:
        return None
    return dict(
        max(objs, key=lambda o: (o["metadata"].get("creationTimestamp") or "", o["metadata"]["name"]))
    )


def _api_error(exc: ApiException, what: str) -> str:
    """One line for a refused API call, with the API server's own message when it sent one."""
    if exc.status == 403:
        return f"forbidden to {what} (your RBAC in this namespace does not allow it)"
    try:
        detail = json.loads(exc.body or "{}").get("message")
    except (TypeError, ValueError, AttributeError):
        detail = None
    return f"cannot {what}: {exc.status} {exc.reason}" + (f": {detail}" if detail else "")


# --- rendering (pure) ------------------------------------------------------------------------------------


def age(since: str | None, now: datetime) -> str:
    """A kubectl-style age: 45s, 12m, 3h, 5d; '-' when unknown."""
    if not since:
        return "-"
    seconds = int((now - datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1]
        for r in rows
    ]


def render_status(rep: AppReport, now: datetime) -> str:
    """The `status` page: plain text, every name a user needs for the next kubectl command."""
    app = rep.app
    meta, spec, status = app["metadata"], app.get("spec") or {}, app.get("status") or {}
    name, ns = meta["name"], meta["namespace"]
    conds = status.get("conditions") or []
    ready = conditions.find(conds, names.READY) or {}
    out = [
        f"FlaskApp {ns}/{name}",
        f"  environment  {spec.get('environment', '-')}",
        f"  ready        {ready.get('status', 'Unknown')} ({ready.get('reason', 'not reconciled yet')})",
        f"  generation   {meta.get('generation', '-')} (observed {status.get('observedGeneration', '-')})",
        "",
        "Images",
        f"  desired   {status.get('desiredImage') or spec.get('image', '-')}",
        f"  migrated  {status.get('migratedImage') or '-'}",
        f"  serving   {status.get('servingImage') or '-'}",
        "",
        "Conditions",
    ]
    if conds:
        rows = [("TYPE", "STATUS", "REASON", "AGE", "MESSAGE")] + [
            (
                c.get("type", ""),
                c.get("status", ""),
                c.get("reason", ""),
                age(c.get("lastTransitionTime"), now),
                c.get("message", ""),
            )
            for c in conds
        ]
        out += _table(rows)
    else:
        out.append("  none yet: the operator has not reconciled this app (is it running?)")
    out += ["", "Migration"]
    out += _migration_lines(rep, spec, status, now)
    out += ["", "Database"]
    out += _database_lines(spec, status, name)
    out += ["", "Deployment"]
    dep = rep.deployment
    if dep is None:
        out.append("  none yet: it is created after the first successful migration")
    else:
        ds = dep.get("status") or {}
        out.append(
            f"  {dep['metadata']['name']}: {ds.get('readyReplicas', 0)}/{(dep.get('spec') or {}).get('replicas', 0)}"
            f" ready, {ds.get('updatedReplicas', 0)} updated"
        )
    if rep.events:
        out += ["", "Events (newest last)"]
        events = sorted(rep.events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")[-8:]
        rows = [("TYPE", "REASON", "AGE", "MESSAGE")] + [
            (
                e.get("type", ""),
                e.get("reason", ""),
                age(_second(e.get("lastTimestamp") or e.get("eventTime")), now),
                e.get("message", ""),
            )
            for e in events
        ]
        out += _table(rows)
    return "\n".join(out) + "\n"


def _second(stamp: str | None) -> str | None:
    """An RFC 3339 time cut to whole seconds in UTC (eventTime carries microseconds)."""
    if not stamp:
        return None
    return stamp[:19] + "Z"


def _migration_lines(
    rep: AppReport, spec: Mapping[str, Any], status: Mapping[str, Any], now: datetime
) -> list[str]:
    if (spec.get("migrations") or {}).get("enabled") is False:
        return ["  disabled (spec.migrations.enabled: false)"]
    mig = status.get("migration") or {}
    if not mig:
        return ["  no migration Job yet"]
    lines = [
        f"  job        {mig.get('jobName')}" + ("" if rep.job else " (deleted)"),
        f"  image      {mig.get('image', '-')}",
        f"  outcome    {mig.get('outcome', '-')} (started {age(mig.get('startedAt'), now)} ago"
        + (f", finished {age(mig['completedAt'], now)} ago)" if mig.get("completedAt") else ")"),
    ]
    if rep.pod is not None:
        phase = (rep.pod.get("status") or {}).get("phase", "Unknown")
        lines.append(f"  pod        {rep.pod['metadata']['name']} ({phase})")
    if rep.log_error:
        lines.append(f"  log        unavailable: {rep.log_error}")
    elif rep.log_lines:
        lines.append(f"  last {len(rep.log_lines)} log lines:")
        lines += [f"    {line}" for line in rep.log_lines]
    return lines


def _database_lines(spec: Mapping[str, Any], status: Mapping[str, Any], name: str) -> list[str]:
    db_spec = spec.get("database") or {}
    db = status.get("database") or {}
    lines = []
    if db_spec.get("server"):
        lines.append(f"  server     PostgresServer {db_spec['server']} (provisioned by the operator)")
    elif db_spec.get("existingSecret"):
        ref = db_spec["existingSecret"]
        lines.append(f"  source     your Secret {ref['name']}, key {ref.get('key', 'DATABASE_URL')}")
    if db:
        lines += [
            f"  host       {db.get('host', '-')}:{db.get('port', '-')}",
            f"  database   {db.get('name', '-')}",
            f"  user       {db.get('user', '-')}",
            f"  Secret     {db.get('secretName', '-')} (DATABASE_URL and PG* keys; values not shown)",
        ]
    key = spec.get("secretKey") or {}
    if key.get("secretRef"):
        ref = key["secretRef"]
        lines.append(f"  SECRET_KEY your Secret {ref['name']}, key {ref.get('key', names.SECRET_KEY)}")
    else:
        rotation = key.get("rotation")
        lines.append(
            f"  SECRET_KEY Secret {names.secret_key_secret_name(name)} (generated; rotation "
            + (f"{rotation!r})" if rotation else "never)")
        )
    return lines


# --- commands --------------------------------------------------------------------------------------------


def cmd_status(plugin: Plugin, args: argparse.Namespace, out: TextIO) -> int:
    rep = plugin.report(args.name, args.log_lines)
    out.write(render_status(rep, datetime.now(UTC)))
    return 0


def token(now: datetime) -> str:
    """A fresh annotation/rotation value: the UTC time, valid as a label-like value (at most 63 chars)."""
    return now.strftime("%Y%m%dT%H%M%SZ")


def cmd_retry_migration(plugin: Plugin, args: argparse.Namespace, out: TextIO) -> int:
    app = plugin.app(args.name)
    migrated = conditions.find((app.get("status") or {}).get("conditions") or [], names.MIGRATED) or {}
    if migrated.get("reason") != "MigrationFailed" and not args.force:
        raise PluginError(
            f"FlaskApp {plugin.namespace}/{args.name}: Migrated is {migrated.get('status', 'Unknown')}"
            f" ({migrated.get('reason', 'not reconciled yet')}), not MigrationFailed; a retry re-runs the"
            " migration with the same image, so it is refused here (--force to do it anyway)"
        )
    value = token(datetime.now(UTC))
    patch = {"metadata": {"annotations": {RETRY_MIGRATION: value}}}
    try:
        plugin.kube.merge_patch(names.FLASKAPP_KIND, plugin.namespace, args.name, patch)
    except ApiException as exc:
        raise PluginError(_api_error(exc, f"patch FlaskApp {plugin.namespace}/{args.name}")) from None
    out.write(
        f"flaskapp/{args.name} annotated {RETRY_MIGRATION}={value}: the operator starts a new migration Job; "
        f"follow it with `{PROG} status {args.name}`\n"
    )
    return 0


def cmd_rotate_secret_key(plugin: Plugin, args: argparse.Namespace, out: TextIO) -> int:
    app = plugin.app(args.name)
    key = (app.get("spec") or {}).get("secretKey") or {}
    if key.get("secretRef"):
        raise PluginError(
            f"FlaskApp {plugin.namespace}/{args.name} reads SECRET_KEY from your Secret "
            f"{key['secretRef']['name']} (spec.secretKey.secretRef): rotate the key there"
        )
    value = args.value or token(datetime.now(UTC))
    if value == key.get("rotation"):
        raise PluginError(f"spec.secretKey.rotation is already {value!r}: a rotation needs a new value")
    patch = {"spec": {"secretKey": {"rotation": value}}}
    try:
        plugin.kube.merge_patch(names.FLASKAPP_KIND, plugin.namespace, args.name, patch)
    except ApiException as exc:
        raise PluginError(_api_error(exc, f"patch FlaskApp {plugin.namespace}/{args.name}")) from None
    out.write(
        f"flaskapp/{args.name} spec.secretKey.rotation={value!r}: the operator writes a new SECRET_KEY into "
        f"Secret {names.secret_key_secret_name(args.name)}, keeps the old one in SECRET_KEY_FALLBACKS, and "
        "rolls the pods\n"
    )
    return 0


def cmd_logs(plugin: Plugin, args: argparse.Namespace, out: TextIO) -> int:
    app = plugin.app(args.name)
    if args.migration:
        job_name = ((app.get("status") or {}).get("migration") or {}).get("jobName")
        if not job_name:
            raise PluginError(f"FlaskApp {plugin.namespace}/{args.name} has no migration Job yet")
        pod = plugin.migration_pod(job_name)
        if pod is None:
            raise PluginError(f"migration Job {job_name} has no pod (deleted, or not scheduled yet)")
        targets = [(pod["metadata"]["name"], "migrate")]
    else:
        targets = [(p["metadata"]["name"], "web") for p in plugin.web_pods(args.name)]
        if not targets:
            raise PluginError(f"FlaskApp {plugin.namespace}/{args.name} has no web pods")
        if args.follow and len(targets) > 1:
            targets = targets[:1]  # one stream at a time; the others are named in the header
    for pod_name, container in targets:
        if len(targets) > 1:
            out.write(f"==> pod/{pod_name} <==\n")
        try:
            if args.follow:
                for chunk in plugin.log(pod_name, container, args.tail, follow=True):
                    out.write(chunk.decode(errors="replace"))
                    out.flush()
            else:
                out.write(plugin.log(pod_name, container, args.tail))
        except ApiException as exc:
            raise PluginError(f"pod/{pod_name}: {_api_error(exc, 'read the log')}") from None
    return 0


def parser() -> argparse.ArgumentParser:
    # kubectl users put -n anywhere (`kubectl flaskops status web -n shop`): the connection flags are
    # accepted before and after the command; SUPPRESS keeps a later absence from erasing an earlier value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--kubeconfig",
        default=argparse.SUPPRESS,
        help="kubeconfig file (default: KUBECONFIG, else ~/.kube/config)",
    )
    common.add_argument(
        "--context", default=argparse.SUPPRESS, help="kubeconfig context (default: the current one)"
    )
    common.add_argument(
        "-n", "--namespace", default=argparse.SUPPRESS, help="the app's namespace (default: the context's)"
    )
    p = argparse.ArgumentParser(
        prog=PROG, description="Day-2 operations on FlaskApps (flaskops).", parents=[common]
    )
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    s = command("status", "conditions, images, migration, database and Secret names")
    s.add_argument("name")
    s.add_argument(
        "--log-lines",
        type=int,
        default=DEFAULT_LOG_LINES,
        help=f"last lines of the migration log to show (default {DEFAULT_LOG_LINES}; 0: none)",
    )
    s.set_defaults(func=cmd_status)

    r = command("retry-migration", "re-run a failed migration with an unchanged spec")
    r.add_argument("name")
    r.add_argument("--force", action="store_true", help="retry even when the migration has not failed")
    r.set_defaults(func=cmd_retry_migration)

    k = command("rotate-secret-key", "rotate the generated SECRET_KEY (old key stays a fallback)")
    k.add_argument("name")
    k.add_argument("--value", help="the new spec.secretKey.rotation (default: the UTC time)")
    k.set_defaults(func=cmd_rotate_secret_key)

    g = command("logs", "the migration pod's log (--migration) or the web pods' logs")
    g.add_argument("name")
    g.add_argument("--migration", action="store_true", help="the latest migration Job's pod")
    g.add_argument("--tail", type=int, default=None, help="only the last N lines")
    g.add_argument("-f", "--follow", action="store_true", help="stream the log")
    g.set_defaults(func=cmd_logs)
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of `kubectl-flaskops`; returns the exit status (0 ok, 1 failure, 2 usage)."""
    args = parser().parse_args(argv)
    out = out or sys.stdout
    try:
        api, default_ns = connect(getattr(args, "kubeconfig", None), getattr(args, "context", None))
        with api:
            plugin = Plugin(api, getattr(args, "namespace", None) or default_ns)
            return int(args.func(plugin, args, out))
    except PluginError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except ApiException as exc:
        sys.stderr.write(f"error: {exc.status} {exc.reason}: {(exc.body or '')[:500]}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

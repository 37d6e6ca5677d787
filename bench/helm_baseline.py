"""The way users deploy a Flask + PostgreSQL app today: a Helm chart with hook Jobs, `helm install --wait`.

The chart is generated here and kept tiny: a Secret (DATABASE_URL, SECRET_KEY), a Deployment and a
Service, a `pre-install,pre-upgrade` migration hook Job, and optionally a `pre-install` hook Job that
creates the database. Hooks run before the release's resources, so the Secret is a hook too (weight -10),
the database Job next (-5), the migration last (0), each deleted `before-hook-creation`.

KWOK runs no containers: Job pods complete without executing anything. So the database hook's SQL (the
operator's own `ensure_database`, the same statements) is executed by the bench inside the app's timed
window, right before its `helm install`, as the hook's container would have done.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from bench.common import log

CHART_YAML = {"apiVersion": "v2", "name": "webapp", "version": "0.1.0", "appVersion": "1.0.0"}

VALUES = {
    "image": "registry.example/guestbook:1.0.0",
    "replicas": 1,
    "createDatabase": True,
    "databaseUrl": "",
    "secretKey": "",
    "dbName": "",
}

_META = """  name: {{ .Release.Name }}%s
  labels:
    app.kubernetes.io/name: {{ .Release.Name }}
    app.kubernetes.io/managed-by: Helm"""

_SECURITY = """      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        seccompProfile: {type: RuntimeDefault}"""

_CONTAINER_SECURITY = """          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}"""


def _hook_job(suffix: str, hook: str, weight: int, command: str) -> str:
    return f"""apiVersion: batch/v1
kind: Job
metadata:
{_META % suffix}
  annotations:
    helm.sh/hook: {hook}
    helm.sh/hook-weight: "{weight}"
    helm.sh/hook-delete-policy: before-hook-creation
spec:
  backoffLimit: 0
  activeDeadlineSeconds: 600
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {{{{ .Release.Name }}}}
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
{_SECURITY}
      containers:
        - name: job
          image: {{{{ .Values.image }}}}
          command: {command}
          envFrom:
            - secretRef:
                name: {{{{ .Release.Name }}}}
{_CONTAINER_SECURITY}
"""


TEMPLATES = {
    "secret.yaml": f"""apiVersion: v1
kind: Secret
metadata:
{_META % ""}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "-10"
    helm.sh/hook-delete-policy: before-hook-creation
type: Opaque
stringData:
  DATABASE_URL: {{{{ .Values.databaseUrl | quote }}}}
  SECRET_KEY: {{{{ .Values.secretKey | quote }}}}
""",
    "createdb-job.yaml": "{{- if .Values.createDatabase }}\n"
    + _hook_job(
        "-createdb",
        "pre-install",
        -5,
        '["psql", "-v", "ON_ERROR_STOP=1", "-c", "CREATE DATABASE {{ .Values.dbName }}"]',
    )
    + "{{- end }}\n",
    "migrate-job.yaml": _hook_job("-migrate", "pre-install,pre-upgrade", 0, '["flask", "db", "upgrade"]'),
    "deployment.yaml": f"""apiVersion: apps/v1
kind: Deployment
metadata:
{_META % ""}
spec:
  replicas: {{{{ .Values.replicas }}}}
  selector:
    matchLabels:
      app.kubernetes.io/name: {{{{ .Release.Name }}}}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {{{{ .Release.Name }}}}
    spec:
      automountServiceAccountToken: false
{_SECURITY}
      containers:
        - name: web
          image: {{{{ .Values.image }}}}
          command: ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "wsgi:app"]
          ports: [{{containerPort: 8000, name: http}}]
          envFrom:
            - secretRef:
                name: {{{{ .Release.Name }}}}
          readinessProbe:
            httpGet: {{path: /readyz, port: http}}
          livenessProbe:
            httpGet: {{path: /livez, port: http}}
          resources:
            requests: {{cpu: 50m, memory: 64Mi}}
{_CONTAINER_SECURITY}
""",
    "service.yaml": f"""apiVersion: v1
kind: Service
metadata:
{_META % ""}
spec:
  selector:
    app.kubernetes.io/name: {{{{ .Release.Name }}}}
  ports:
    - {{name: http, port: 80, targetPort: http}}
""",
}


def write_chart(directory: Path) -> Path:
    chart = directory / "webapp"
    (chart / "templates").mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text(yaml.safe_dump(CHART_YAML))
    (chart / "values.yaml").write_text(yaml.safe_dump(VALUES))
    for name, text in TEMPLATES.items():
        (chart / "templates" / name).write_text(text)
    return chart


def helm(
    helm_bin: Path, kubeconfig: Path, *args: str, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HELM_CACHE_HOME": "/tmp/fbench-helm/cache"}
    env.setdefault("HELM_CONFIG_HOME", "/tmp/fbench-helm/config")
    env.setdefault("HELM_DATA_HOME", "/tmp/fbench-helm/data")
    return subprocess.run(
        [str(helm_bin), *args], env=env, capture_output=True, text=True, check=False, timeout=timeout
    )


def run_many(
    apps: list[str],
    action: Callable[[str], None],
    concurrency: int,
    what: str,
) -> dict[str, Any]:
    """Run `action` for every app with bounded concurrency; per-app seconds from the batch start to done."""
    t0 = time.time()
    done_at: dict[str, float] = {}
    durations: dict[str, float] = {}
    failures: list[str] = []

    def one(name: str) -> None:
        start = time.time()
        try:
            action(name)
        except Exception as exc:
            failures.append(f"{name}: {exc}")
            return
        end = time.time()
        done_at[name] = end - t0
        durations[name] = end - start

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, apps))
    total = time.time() - t0
    if failures:
        log(f"{what}: {len(failures)} failed, first: {failures[0][:2000]}")
    return {
        "t0": t0,
        "t1": t0 + total,
        "total_s": total,
        "latency_s": sorted(done_at.values()),
        "duration_s": sorted(durations.values()),
        "failures": len(failures),
        "first_failure": failures[0][:2000] if failures else "",
    }

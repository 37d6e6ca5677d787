"""Real Gunicorn processes: the Deployment's command line, the Dockerfile's CMD, JSON logs, SIGTERM,
and surviving a PostgreSQL restart."""

from __future__ import annotations

import gc
import json
import re
import runpy
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import requests
from app_support import (
    APP_DIR,
    BIN_DIR,
    STRONG_KEY,
    Server,
    deployment_command,
    migrate_to_head,
    process_env,
    wait_for,
)

from flaskops import manifests
from flaskops.spec import parse_flaskapp
from flaskops_testbed.postgres import LocalPostgres, PostgresTarget, free_port

REPO = APP_DIR.parent
DOCKERFILE = REPO / "Dockerfile"


def production_env(url: str, **extra: str) -> dict[str, str]:
    """What the operator's Deployment sets (plus PORT, as the image does)."""
    return {"APP_ENV": "production", "DATABASE_URL": url, "SECRET_KEY": STRONG_KEY, **extra}


@pytest.fixture
def served_database(postgres: PostgresTarget, database_factory: Callable[..., str]) -> str:
    """A migrated database of its own: Gunicorn's writes really commit."""
    url = postgres.url(database_factory("guestbook"))
    migrate_to_head(url)
    return url


def json_lines(text: str) -> list[dict[str, object]]:
    records = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            records.append(json.loads(line))  # every line on stdout is JSON, or this fails
    return records


def test_deployment_command_serves_and_stops_gracefully(
    gunicorn: Callable[..., Server], served_database: str
) -> None:
    server = gunicorn(production_env(served_database))
    live = server.get("/livez", headers={"X-Request-ID": "req-live-1"})
    assert live.json() == {"status": "ok"} and live.headers["X-Request-ID"] == "req-live-1"
    assert server.get("/readyz").status_code == 200
    created = requests.post(
        server.base_url + "/api/entries",
        json={"author": "gunicorn", "message": "served"},
        headers={"X-Request-ID": "req-created-1", "X-Forwarded-Proto": "https"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    listed = server.get(
        "/api/entries", headers={"X-Request-ID": "req-listed-1", "X-Forwarded-Proto": "https"}
    )
    assert listed.status_code == 200
    assert listed.headers["X-Request-ID"] == "req-listed-1"
    assert [e["message"] for e in listed.json()["entries"]] == ["served"]

    # The master imported the app's modules (gunicorn.conf.py on_starting), so a worker replaced
    # after --max-requests forks with them loaded: libpq is mapped into the master itself.
    assert "libpq" in Path(f"/proc/{server.proc.pid}/maps").read_text()

    assert server.terminate() == 0  # SIGTERM: graceful stop, clean exit
    records = json_lines(server.log())
    access = [r for r in records if r["logger"] == "gunicorn.access"]
    listed_line = next(r for r in access if r["request_id"] == "req-listed-1")
    assert (listed_line["method"], listed_line["path"], listed_line["status"]) == ("GET", "/api/entries", 200)
    live_line = next(r for r in access if r["request_id"] == "req-live-1")  # answered before Flask, logged
    assert (live_line["method"], live_line["path"], live_line["status"]) == ("GET", "/livez", 200)
    assert any(
        r["logger"] == "gunicorn.error" and "Handling signal: term" in str(r["message"]) for r in records
    )
    assert any("Booting worker" in str(r["message"]) for r in records)


def test_no_database_connection_before_a_request(gunicorn: Callable[..., Server]) -> None:
    # Workers boot and serve /livez although the database does not exist: nothing connects early.
    server = gunicorn(production_env("postgresql://app:pw@127.0.0.1:1/guestbook"))
    assert server.get("/livez").status_code == 200
    assert server.get("/readyz").status_code == 503
    assert server.terminate() == 0


def test_gunicorn_config_for_a_read_only_root_filesystem(tmp_path: Path) -> None:
    # --print-config loads the app too (but opens no connection): give it a configuration.
    environ = {"GUNICORN_WORKERS": "3", "PORT": "9001", "APP_ENV": "development", "SECRET_KEY": "x"}
    environ["DATABASE_URL"] = "postgresql://app:pw@127.0.0.1:1/guestbook"
    result = subprocess.run(
        ["gunicorn", "--config", "gunicorn.conf.py", "--print-config", "wsgi:app"],
        cwd=APP_DIR,
        env=process_env(environ, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    settings = dict(re.findall(r"^(\w+)\s+= (.*)$", result.stdout, re.MULTILINE))
    assert settings["control_socket_disable"] == "True"
    assert settings["worker_tmp_dir"] == "/dev/shm"
    assert settings["preload_app"] == "False"
    assert settings["workers"] == "3"
    assert settings["bind"] == "['0.0.0.0:9001']"


# Run in a fresh interpreter: what Gunicorn's master has imported (on_starting), then what a worker
# does, create_app() and a request Flask answers and one the edge answers, called as Gunicorn calls them.
WORKER_IMPORTS = """
import io, json, runpy, sys
runpy.run_path("gunicorn.conf.py")["on_starting"](None)
loaded = set(sys.modules)
from guestbook import create_app
app = create_app("production", environ=json.loads(sys.argv[1]))
for method in ("GET", "HEAD"):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": "/livez", "SERVER_NAME": "pod", "SERVER_PORT": "8000",
               "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO()}
    sent = []
    b"".join(app(environ, lambda status, headers, exc_info=None: sent.append(status)))
    assert sent == ["200 OK"], sent
print(json.dumps(sorted(set(sys.modules) - loaded)))
"""


def test_a_worker_imports_nothing_the_master_did_not(tmp_path: Path) -> None:
    # A worker replaced after --max-requests starts from the master's modules; each module left to
    # import on first use costs every worker start again (~4 ms for the five on_starting names).
    environ = {"SECRET_KEY": STRONG_KEY, "DATABASE_URL": "postgresql://app:pw@127.0.0.1:1/guestbook"}
    result = subprocess.run(
        [str(BIN_DIR / "python"), "-c", WORKER_IMPORTS, json.dumps(environ)],
        cwd=APP_DIR,
        env=process_env({}, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_workers_fork_with_the_masters_objects_frozen() -> None:
    # pre_fork moves the master's objects to the collector's permanent generation: a worker's
    # collections, and the one when it exits after --max-requests, never walk (and so copy) them.
    hooks = runpy.run_path(str(APP_DIR / "gunicorn.conf.py"))
    gc.unfreeze()
    try:
        hooks["pre_fork"](None, None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_first_request_after_a_postgresql_restart_succeeds(
    gunicorn: Callable[..., Server], restartable_postgres: LocalPostgres
) -> None:
    name = "guestbook_resilience"
    restartable_postgres.drop_database(name)
    restartable_postgres.create_database(name)
    url = restartable_postgres.url(name)
    migrate_to_head(url)
    # One worker, one thread: exactly one pool, whose connection the restart kills.
    port = free_port()
    server = gunicorn(
        production_env(url, FORCE_HTTPS="false"), deployment_command(port, workers=1, threads=1), port
    )
    entry = requests.post(server.base_url + "/api/entries", json={"author": "a", "message": "m"}, timeout=10)
    assert entry.status_code == 201
    path = entry.headers["Location"]  # a single entry is never cached: every GET queries PostgreSQL
    assert server.get(path).status_code == 200

    restartable_postgres.restart()

    first = server.get(path)
    assert first.status_code == 200, first.text  # pool_pre_ping replaced the dead connection
    assert server.terminate() == 0


# -- the Dockerfile ----------------------------------------------------------------------------------


def dockerfile_stage(target: str) -> list[tuple[str, str]]:
    """The (INSTRUCTION, arguments) of one stage of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stage: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            if stage is not None:
                return stage
            if re.search(rf"\bAS\s+{re.escape(target)}$", args, re.IGNORECASE):
                stage = []
        if stage is not None:
            stage.append((instruction.upper(), args.strip()))
    assert stage is not None, f"no stage {target!r} in the Dockerfile"
    return stage


def test_dockerfile_app_stage_shape() -> None:
    stage = dict(dockerfile_stage("app"))
    assert stage["WORKDIR"] == "/app"
    assert re.fullmatch(r"\d+:\d+", stage["USER"]) and not stage["USER"].startswith("0:")
    assert "app/wsgi.py app/gunicorn.conf.py ./" in stage["COPY"]
    assert "RUN" not in stage  # nothing is built or installed in the final stage
    assert json.loads(stage["CMD"]) == ["gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"]
    assert "${PYTHON_IMAGE}" in stage["FROM"] and "python:3.11-slim" in DOCKERFILE.read_text()


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [str(BIN_DIR / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_cmd_serves_the_app(gunicorn: Callable[..., Server], served_database: str) -> None:
    stage = dockerfile_stage("app")
    cmd = json.loads(dict(stage)["CMD"])
    env_line = " ".join(args for instruction, args in stage if instruction == "ENV")
    image_env = dict(
        kv.split("=", 1) for kv in shlex.split(env_line) if "=" in kv and not kv.startswith("PATH=")
    )
    port = free_port()
    # The image's own ENV (APP_ENV=production, PORT, ...) plus what the operator adds.
    environ = {**image_env, "PORT": str(port), "DATABASE_URL": served_database, "SECRET_KEY": STRONG_KEY}
    server = gunicorn(environ, cmd, port)
    assert server.get("/livez").status_code == 200
    assert server.get("/readyz").status_code == 200
    assert server.terminate() == 0


def short_timeout_server(
    gunicorn: Callable[..., Server], url: str, *, operator_env: bool
) -> tuple[Server, dict[str, str]]:
    """Gunicorn as the operator runs it for `gunicorn: {workers: 1, threads: 1, timeout: 5}` (a sync
    worker, killed when silent for 5 s); ``operator_env`` False leaves out what the operator derives."""
    port = free_port()
    spec = parse_flaskapp(
        {
            "metadata": {"name": "guestbook", "namespace": "shop", "uid": "u-1"},
            "spec": {
                "environment": "production",
                "image": "guestbook:1",
                "database": {"server": "main"},
                "port": port,
                "gunicorn": {"workers": 1, "threads": 1, "timeout": 5, "gracefulTimeout": 5},
            },
        }
    )
    # DATABASE_URL and SECRET_KEY come from Secrets in a cluster: here, the test's own.
    given = {e["name"]: e["value"] for e in manifests.web_env(spec) if "value" in e}
    if not operator_env:
        given.pop(manifests.STATEMENT_TIMEOUT_VAR)
    environ = production_env(url, FORCE_HTTPS="false", ENTRIES_CACHE_SECONDS="0", **given)
    return gunicorn(environ, argv=manifests.gunicorn_command(spec), port=port), given


def timed_read_behind_a_lock(server: Server, url: str) -> tuple[requests.Response | None, float]:
    """GET /api/entries while another session holds ACCESS EXCLUSIVE on entries: the query waits."""
    with psycopg.connect(url) as blocker:
        blocker.execute("LOCK TABLE entries IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        try:
            answer: requests.Response | None = requests.get(server.base_url + "/api/entries", timeout=30)
        except requests.ConnectionError:  # the worker was killed mid-request
            answer = None
        elapsed = time.monotonic() - started
        blocker.rollback()
    return answer, elapsed


def test_a_slow_query_is_answered_by_the_app_before_gunicorn_kills_the_worker(
    gunicorn: Callable[..., Server], served_database: str
) -> None:
    server, given = short_timeout_server(gunicorn, served_database, operator_env=True)
    assert given[manifests.STATEMENT_TIMEOUT_VAR] == "4000"
    answer, elapsed = timed_read_behind_a_lock(server, served_database)
    assert answer is not None
    # The app's own answer to its statement timeout (JSON under /api), within the worker's 5 s.
    assert answer.status_code == 503 and answer.headers["Content-Type"] == "application/json", answer.text
    assert answer.json()["error"] == "Service Unavailable" and answer.headers["Retry-After"] == "1"
    # At least the 4 s statement timeout; the upper bound is the worker's 5 s timeout, and it is shown by
    # behaviour rather than the clock (a slow machine adds seconds): the app's own JSON answer above and
    # no WORKER TIMEOUT below (a killed worker answers nothing).
    assert elapsed >= 4, elapsed
    assert server.get("/api/entries").status_code == 200  # the same worker serves on
    assert server.terminate() == 0
    assert "WORKER TIMEOUT" not in server.log()
    assert '"event": "statement_timeout"' in server.log()


def test_without_the_derived_timeout_gunicorn_kills_the_worker_first(
    gunicorn: Callable[..., Server], served_database: str
) -> None:
    # What the operator did before: the app's 15 s default behind a 5 s worker timeout.
    server, _ = short_timeout_server(gunicorn, served_database, operator_env=False)
    answer, elapsed = timed_read_behind_a_lock(server, served_database)
    assert answer is None or not answer.headers.get("Content-Type", "").startswith("application/json")
    assert 5 <= elapsed < 15, elapsed
    wait_for(lambda: "WORKER TIMEOUT" in server.log(), 10, "Gunicorn's WORKER TIMEOUT")
    server.terminate()

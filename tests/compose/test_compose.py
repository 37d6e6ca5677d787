"""The Docker Compose dev stack (compose.yaml) for real: PostgreSQL, the migrations once, the app with live code.

Runs on the testbed's engine (testbed/engine.sh: Debian's docker.io, no bridge, no iptables) with
Debian's docker-compose, on the local base images `make images` made (no registry is reachable):
PYTHON_IMAGE for the app, POSTGRES_IMAGE for the database.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from flaskops_testbed import images, paths
from flaskops_testbed.postgres import free_port
from flaskops_testbed.waiting import NotYet, wait_for

ROOT = Path(__file__).resolve().parents[2]
ENGINE = paths.TESTBED_SRC / "engine.sh"


@pytest.fixture(scope="module")
def engine() -> Iterator[str]:
    """DOCKER_HOST of the testbed's engine, started for this module unless it was running."""
    if shutil.which("docker-compose") is None:
        pytest.fail(
            "docker-compose is missing: `make images` installs it (Debian's docker-compose)", pytrace=False
        )
    started = subprocess.run(["bash", str(ENGINE), "start"], capture_output=True, text=True, check=True)
    host = subprocess.run(
        ["bash", str(ENGINE), "host"], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        yield host
    finally:
        if started.stdout.strip() == "started":
            subprocess.run(["bash", str(ENGINE), "stop"], check=False)


def test_compose_stack_serves_the_app_with_migrations_run_once(engine: str) -> None:
    built = images.load()
    values = paths.parse_env_file(built.tarball.parent / "images.env")
    port = free_port()
    project = f"guestbook-dev-{secrets.token_hex(3)}"
    env = {
        **os.environ,
        "DOCKER_HOST": engine,
        "PYTHON_IMAGE": values["BASE_IMAGE"],
        "POSTGRES_IMAGE": values["POSTGRES_IMAGE"],
        "APP_PORT": str(port),
    }
    compose = ["docker-compose", "-p", project, "-f", str(ROOT / "compose.yaml")]

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*compose, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            logs = subprocess.run(
                [*compose, "logs", "--no-color", "--tail=40"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            raise AssertionError(
                f"docker-compose {' '.join(args)}:\n{result.stdout}\n{result.stderr}\n--- logs ---\n{logs.stdout}"
            )
        return result

    # compose.yaml's `build:` is the Dockerfile's app target, which `make images` built from this very
    # tree (its key hashes the sources): tag that, rather than build again on an engine whose builds
    # need --network=host to reach the package index.
    subprocess.run(
        ["/usr/bin/docker", "-H", engine, "tag", built.guestbook, "guestbook-dev:latest"], check=True, env=env
    )
    try:
        run("up", "-d", "--no-build")
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                response = requests.get(f"{base}/readyz", timeout=2)
            except requests.ConnectionError as exc:
                raise NotYet(str(exc)) from exc
            if response.status_code != 200:
                raise NotYet(f"/readyz {response.status_code}")
            return True

        wait_for(ready, timeout=180, what="the compose app answering /readyz")
        created = requests.post(
            f"{base}/api/entries", json={"author": "compose", "message": "hello from compose"}, timeout=10
        )
        assert created.status_code == 201, created.text
        listed = requests.get(f"{base}/api/entries", timeout=10).json()
        assert "hello from compose" in [e["message"] for e in listed["entries"]]

        # The migrations ran once, in their own service, which exited 0 before the app started.
        migrate = run("ps", "-a", "migrate").stdout
        assert "Exit 0" in migrate, migrate
        logs = run("logs", "--no-color", "migrate").stdout
        assert logs.count("Running upgrade") == 2, logs  # 0001, 0002: each once
    finally:
        subprocess.run(
            [*compose, "down", "-v", "--remove-orphans"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            check=False,
            timeout=300,
        )

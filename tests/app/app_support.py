"""Helpers for the guestbook tests: the app's environment, CSRF tokens, real Gunicorn processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import flask_migrate
import requests
from flask.testing import FlaskClient

from guestbook import create_app
from guestbook.extensions import db

APP_DIR = Path(__file__).resolve().parents[2] / "app"
BIN_DIR = Path(sys.executable).parent
# Long and random enough for the production checks; tests that need weak keys say so.
STRONG_KEY = "k3y-" + "0123456789abcdefghijklmnopqrstuvwxyz"


def app_environ(database_url: str, env: str = "testing", **extra: str) -> dict[str, str]:
    """The environment the app reads, as the operator would set it, nothing inherited."""
    return {"APP_ENV": env, "DATABASE_URL": database_url, "SECRET_KEY": STRONG_KEY, **extra}


def migrate_to_head(database_url: str) -> None:
    app = create_app("testing", environ=app_environ(database_url))
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()


def csrf_token(client: FlaskClient, path: str = "/") -> str:
    """The CSRF token of the form on ``path`` (it also sets the session cookie that backs it)."""
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert match, "no csrf_token in the form"
    return match.group(1)


# -- real processes --------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``condition`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Server:
    """A Gunicorn process serving the app from app/, as the image's WORKDIR would."""

    argv: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] = field(init=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return requests.get(self.base_url + path, timeout=10, **kwargs)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"gunicorn exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return requests.get(self.base_url + "/livez", timeout=2).status_code == 200
        except requests.RequestException:  # not listening yet, or workers still booting
            return False

    def wait_until_serving(self, timeout: float = 30) -> None:
        wait_for(self._answers, timeout, f"gunicorn on {self.base_url}")

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode


def deployment_command(port: int, workers: int = 2, threads: int = 2) -> list[str]:
    """The command line the flaskops Deployment runs (operator/flaskops/manifests.py, gunicorn_command).

    It names no --config: Gunicorn reads ./gunicorn.conf.py from the WORKDIR by default, and the
    JSON log assertions in the tests prove that it did.
    """
    return [
        "gunicorn",
        "--bind",
        f"0.0.0.0:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--timeout",
        "30",
        "--graceful-timeout",
        "25",
        "--max-requests",
        "1000",
        "--max-requests-jitter",
        "100",
        "--worker-tmp-dir",
        "/dev/shm",
        "--no-control-socket",
        "wsgi:app",
    ]


def process_env(environ: Mapping[str, str], home: Path) -> dict[str, str]:
    """A child's environment: only what a container would have, plus the venv's bin on PATH."""
    return {
        "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        **environ,
    }

"""Loopback ports: the one free-port helper of the project (tests, bench, demo, node), and a wait for one."""

from __future__ import annotations

import socket
import time

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port on `host` (default 127.0.0.1) that nothing listens on right now.

    The port is released before returning, so another process may take it first; callers that start a
    server on it retry on "address in use" where that race matters.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30, host: str = HOST) -> None:
    """Return once something accepts TCP connections on host:port; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")

"""An operator that survives its own upgrade (issue 14 item 3): two operator processes, each serving the
webhook, one holding the Lease. The leader is SIGKILLed; the other takes the Lease within the lease
duration after the last renewal it saw (plus its retry period, as with client-go), reconciles an app
created meanwhile and finalizes one deleted meanwhile, and changes nothing it should not (no second Job,
no new password); every admission request sent throughout gets the webhook's answer.

The two processes run as the chart's ServiceAccount in "certs" mode, as the chart runs them; a small TCP
forwarder on loopback stands in for the chart's Service (simulated pods cannot back one): it sends each
connection to the next process that accepts it, as kube-proxy sends it to a ready endpoint.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from e2e_support import (
    DENIED,
    Apps,
    OperatorProcess,
    chart_webhook_configuration,
    flaskapp,
    free_port,
    jobs,
    secret_data,
)
from kubernetes import client

from flaskops import certs, leader, names
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import NotYet, wait_for

pytestmark = pytest.mark.e2e

LEASE_NAMESPACE = "flaskops-system"  # the chart's release namespace in the e2e suite: its Role is there


class Forwarder:
    """A loopback TCP forwarder to several backends: each connection goes to the first that accepts,
    starting from the next one in turn. Closing one side closes the other."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self._turn = 0
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        self._turn += 1
        order = (
            self.backends[self._turn % len(self.backends) :]
            + self.backends[: self._turn % len(self.backends)]
        )
        for port in order:
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=2)
                break
            except OSError:
                continue
        else:
            conn.close()
            return
        upstream.settimeout(None)

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    dst.sendall(data)
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pipe, args=(conn, upstream), daemon=True).start()
        pipe(upstream, conn)
        conn.close()
        upstream.close()

    def close(self) -> None:
        self._closed.set()
        self.sock.close()


def lease_holder(kube: Kube, name: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(kube.api).read_namespaced_lease(name, LEASE_NAMESPACE)
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return lease.spec.holder_identity  # type: ignore[no-any-return]


class Prober:
    """Sends an unsafe FlaskApp (server-side dry run) every 0.2 s; counts the webhook's refusals and any
    answer that is not one (the API server could not reach a webhook)."""

    def __init__(self, kube: Kube, body: dict[str, Any]) -> None:
        self.api = client.CustomObjectsApi(kube.api)
        self.body = body
        self.refused = 0
        self.unanswered: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def once(self) -> str | None:
        """None when the webhook refused the app; else what happened instead."""
        try:
            self.api.create_namespaced_custom_object(
                names.GROUP,
                names.VERSION,
                self.body["metadata"]["namespace"],
                names.FLASKAPP_PLURAL,
                self.body,
                dry_run="All",
                _request_timeout=30,
            )
        except client.exceptions.ApiException as exc:
            if exc.status == 403 and DENIED in json.loads(exc.body).get("message", ""):
                return None
            return f"{exc.status}: {str(exc.body)[:300]}"
        return "admitted"

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            outcome = self.once()
            if outcome is None:
                self.refused += 1
            else:
                self.unanswered.append(outcome)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@pytest.fixture
def pair(
    kube: Kube, operator: OperatorProcess, operator_kubeconfig: Path, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, OperatorProcess, Forwarder, str]]:
    """Operators A and B (A started first, so A leads), each serving the webhook; the chart's webhook
    configuration pointing at the forwarder in front of both. The session's operator pauses meanwhile."""
    ca, _, _ = certs.generate(tmp_path / "certs", ["127.0.0.1"])
    lease = f"flaskops-ha-{secrets.token_hex(3)}"
    operator.stop()
    started: list[OperatorProcess] = []
    forwarder: Forwarder | None = None
    try:
        for who in ("op-a", "op-b"):
            for attempt in range(3):  # a port picked free may be taken before the operator binds it
                env = {
                    "FLASKOPS_WEBHOOK": "certs",
                    "FLASKOPS_WEBHOOK_ADDR": "127.0.0.1",
                    "FLASKOPS_WEBHOOK_HOST": "127.0.0.1",
                    "FLASKOPS_WEBHOOK_PORT": str(free_port()),
                    "FLASKOPS_WEBHOOK_CERT_DIR": str(tmp_path / "certs"),
                    "FLASKOPS_LEADER_ELECTION": "true",
                    "FLASKOPS_LEASE_NAME": lease,
                    "FLASKOPS_LEASE_NAMESPACE": LEASE_NAMESPACE,
                    "POD_NAME": who,
                }
                proc = OperatorProcess(operator_kubeconfig, tmp_path / f"{who}-{attempt}.log", extra_env=env)
                try:
                    proc.start()
                    break
                except RuntimeError as exc:
                    if "address already in use" not in str(exc) or attempt == 2:
                        raise
            started.append(proc)
            if who == "op-a":
                wait_for(
                    lambda: (lease_holder(kube, lease) or "").startswith("op-a_") or _not_yet("no holder"),
                    timeout=30,
                    what="operator A to take the Lease",
                )
        a, b = started
        forwarder = Forwarder([int(p.extra_env["FLASKOPS_WEBHOOK_PORT"]) for p in started])
        vwc = chart_webhook_configuration(f"https://127.0.0.1:{forwarder.port}", ca.read_bytes(), lease)
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(vwc))
        yield a, b, forwarder, lease
    finally:
        kube.kubectl("delete", "validatingwebhookconfiguration", lease, "--ignore-not-found")
        if forwarder is not None:
            forwarder.close()
        for proc in started:
            proc.stop()
        with contextlib.suppress(client.exceptions.ApiException):
            client.CoordinationV1Api(kube.api).delete_namespaced_lease(lease, LEASE_NAMESPACE)
        operator.start()


def database_exists(postgres: Any, name: str) -> bool:
    with psycopg.connect(postgres.admin_url, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def _not_yet(what: str) -> bool:
    raise NotYet(what)


def test_the_leader_dies_another_takes_over_and_admission_keeps_answering(
    kube: Kube,
    apps: Apps,
    ns: str,
    make_server: Any,
    postgres: Any,
    pair: tuple[OperatorProcess, OperatorProcess, Forwarder, str],
) -> None:
    a, b, _, lease = pair
    server = make_server(["development"])
    # Exactly one holder, and it is A; B serves the webhook but has not reconciled anything.
    assert (lease_holder(kube, lease) or "").startswith("op-a_")
    first = flaskapp(
        "before", ns, server=server, environment="development", database={"deletionPolicy": "Delete"}
    )
    apps.apply(first)
    doomed_db = f"doomed_{secrets.token_hex(3)}"
    apps.apply(
        flaskapp(
            "doomed",
            ns,
            server=server,
            environment="development",
            dbname=doomed_db,
            database={"deletionPolicy": "Delete"},
        )
    )
    apps.wait(ns, "before", timeout=180)
    apps.wait(ns, "doomed", timeout=180)
    assert database_exists(postgres, doomed_db)
    password_before = secret_data(kube, ns, "before-db")
    jobs_before = sorted(j.metadata.name for j in jobs(kube, ns, "before"))
    assert len(jobs_before) == 1
    assert apps.get(ns, "before")["metadata"]["finalizers"] == [names.FINALIZER]

    unsafe = flaskapp(
        "unsafe", ns, server=make_server(["production"]), dbname=f"shop_test_{secrets.token_hex(2)}"
    )
    probe = Prober(kube, unsafe)
    wait_for(lambda: probe.once() is None or _not_yet("not refused yet"), timeout=60, what="a refusal")

    with probe:
        wait_for(lambda: probe.refused >= 5 or _not_yet("few probes"), timeout=30, what="probes answered")
        killed = time.monotonic()
        a.kill()
        # Created, and deleted, while nobody leads: the webhook (B's) admits it; nobody handles them yet.
        apps.apply(flaskapp("during", ns, server=server, environment="development"))
        kube.kubectl("delete", "flaskapp", "doomed", "-n", ns, "--wait=false")
        wait_for(
            lambda: (lease_holder(kube, lease) or "").startswith("op-b_") or _not_yet("not B yet"),
            timeout=60,
            interval=0.1,
            what="operator B to take the Lease",
        )
        failover = time.monotonic() - killed
        apps.wait(ns, "during", timeout=180)
        # The new leader ran the finalizer of the app deleted meanwhile: database dropped, app gone.
        wait_for(
            lambda: (
                kube.kubectl("get", "flaskapp", "doomed", "-n", ns, check=False).returncode != 0
                or _not_yet("still there")
            ),
            timeout=120,
            what="the app deleted meanwhile to go",
        )
        assert not database_exists(postgres, doomed_db)
        refused_at_takeover = probe.refused
        wait_for(
            lambda: probe.refused >= refused_at_takeover + 5 or _not_yet("few probes"),
            timeout=30,
            what="probes answered after the takeover",
        )
    print(
        f"failover: {failover:.1f}s; admission probes refused {probe.refused}, unanswered {probe.unanswered}"
    )
    # A follower counts the lease from when it saw the last renewal (up to one retry period after it),
    # and tries again every retry period: lease + 2 retry periods, plus 2 s for a loaded machine.
    assert failover <= leader.LEASE_DURATION_SECONDS + 2 * leader.RETRY_PERIOD_SECONDS + 2, failover
    assert probe.unanswered == [], probe.unanswered

    # The new leader reconciled the new app once, and left the old one's Job and password alone.
    assert len(jobs(kube, ns, "during")) == 1
    assert secret_data(kube, ns, "before-db") == password_before
    assert sorted(j.metadata.name for j in jobs(kube, ns, "before")) == jobs_before
    assert apps.get(ns, "before")["metadata"]["finalizers"] == [names.FINALIZER]

    # Until it led, B wrote nothing: no handler ran, no status, no child, no finalizer of its own.
    log = b.log_text()
    became = log.index("became the leader")
    before_leading = log[:became]
    ran = set(re.findall(r"Handler '([^']+)'", before_leading))
    # Only the event handlers, which fill the cache and queue nothing in a follower.
    assert ran <= {"flaskapp_changed", "child_changed", "server_changed", "namespace_changed"}, ran
    for line in ("status written", '"applied"', "finalizer"):
        assert line not in before_leading, line

    # A clean stop (an upgrade, a drain) hands the Lease over at once: A again, restarted, takes it from B
    # within a few retry periods instead of a whole lease duration.
    a.start()
    stopped = time.monotonic()
    b.stop()
    wait_for(
        lambda: (lease_holder(kube, lease) or "").startswith("op-a_") or _not_yet("not A yet"),
        timeout=60,
        interval=0.1,
        what="operator A to take the released Lease",
    )
    handover = time.monotonic() - stopped
    print(f"handover after a clean stop: {handover:.1f}s")
    assert handover < leader.LEASE_DURATION_SECONDS - leader.RETRY_PERIOD_SECONDS, handover


def test_a_leader_that_cannot_renew_gives_up_within_the_renew_deadline(kube: Kube) -> None:
    """Another holder takes the Lease behind the leader's back (as after a long pause of the leader): the
    leader cannot renew, and within RENEW_DEADLINE (plus one retry) calls its exit instead of leading on."""
    name = f"flaskops-steal-{secrets.token_hex(3)}"
    exited = threading.Event()
    previous = client.Configuration.get_default_copy()
    # The client's elector uses the default configuration: this cluster's, for this test.
    client.Configuration.set_default(kube.api.configuration)
    try:
        flipped = threading.Event()
        me = leader.Leadership(
            name, LEASE_NAMESPACE, on_flip=flipped.set, exit_process=lambda code: exited.set()
        )
        loop = _LoopThread()
        me.start(loop.loop)
        wait_for(lambda: me.leading or _not_yet("not leading"), timeout=30, what="the Lease taken")
        assert flipped.is_set()
        coordination = client.CoordinationV1Api(kube.api)
        lease = coordination.read_namespaced_lease(name, LEASE_NAMESPACE)
        lease.spec.holder_identity = "someone-else"
        lease.spec.renew_time = datetime.datetime.now(datetime.UTC)
        lease.spec.lease_duration_seconds = 3600
        coordination.replace_namespaced_lease(name, LEASE_NAMESPACE, lease)
        stolen = time.monotonic()
        assert exited.wait(leader.RENEW_DEADLINE_SECONDS + 3 * leader.RETRY_PERIOD_SECONDS)
        assert time.monotonic() - stolen >= leader.RENEW_DEADLINE_SECONDS - leader.RETRY_PERIOD_SECONDS
        loop.stop()
    finally:
        client.Configuration.set_default(previous)
        with contextlib.suppress(client.exceptions.ApiException):
            client.CoordinationV1Api(kube.api).delete_namespaced_lease(name, LEASE_NAMESPACE)


class _LoopThread:
    """An asyncio loop in a thread, standing in for kopf's."""

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

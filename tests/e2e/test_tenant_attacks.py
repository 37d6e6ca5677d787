# ruff: noqa: F811  (the fixtures imported from test_tenancy are pytest parameters here)
"""Security review of issue 9 (ownership and tenancy): attacks by a hostile tenant that still work.

Each test asserts the behaviour that MUST hold; it failed on the code reviewed (commit 09e760c). The ones
still marked `xfail(strict=True)` are open findings (the README's security model names them); a fix
flips them to XPASS, and then the mark goes.

The tenant is a ServiceAccount with only FlaskApp rights in its namespace (`make_tenant`), the webhook is
on. Where the attack uses the tenant's *own* PostgreSQL login, the test reads it from the tenant's
`<app>-db` Secret with the cluster admin's client: that is what the tenant's own pods receive in
DATABASE_URL (the README's security model: a FlaskApp runs any image with any env in its namespace).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from e2e_support import Apps, flaskapp, secret_data
from psycopg import sql
from test_tenancy import (  # noqa: F401  (fixtures)
    Tenant,
    forget,
    make_tenant,
    pg_server,
    superuser,
)
from test_webhook import legacy_namespace, webhook  # noqa: F401

from flaskops import names
from flaskops.postgres import naming
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import NotYet, wait_for

pytestmark = pytest.mark.e2e


def _guessed_lock_key(name: str) -> int:
    """The key a tenant can compute: what flaskops used before its keys were keyed with the admin's
    password (sha256 of the name). A tenant who does not hold the admin password can do no better."""
    digest = hashlib.sha256(f"flaskops:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _ready_app(tenant: Tenant, apps: Apps, kube: Kube, server: str, app: str, dbname: str) -> dict[str, str]:
    """A Ready app of the tenant's; returns its `<app>-db` Secret (what its pods get)."""
    out = tenant.apply(flaskapp(app, tenant.namespace, server=server, environment="testing", dbname=dbname))
    assert out.returncode == 0, out.stderr
    apps.wait_reason(tenant.namespace, app, names.DATABASE_READY, "Provisioned", timeout=180)
    data = secret_data(kube, tenant.namespace, names.db_secret_name(app))
    assert data is not None
    return data


def _login(postgres: Any, data: dict[str, str], dbname: str) -> psycopg.Connection:
    """The tenant's own role, connecting to `dbname` (not its own database)."""
    return psycopg.connect(
        host=postgres.host,
        port=postgres.port,
        dbname=dbname,
        user=data["PGUSER"],
        password=data["password"],
        autocommit=True,
        connect_timeout=10,
    )


def _wait_on(apps: Apps, ns: str, app: str, dbname: str) -> None:
    def provisioned() -> bool:
        cond = apps.condition(ns, app, names.DATABASE_READY)
        if cond.get("reason") != "Provisioned" or f"'{dbname}'" not in cond.get("message", ""):
            raise NotYet(f"{cond.get('reason')}: {cond.get('message')}")
        return True

    wait_for(provisioned, timeout=120, what=f"{ns}/{app} provisioned on {dbname}")


def _forget_eventually(postgres: Any, *names_: str) -> None:
    """`forget`, retried: a provisioning that was blocked may still complete right after the attack ends."""
    for _ in range(20):
        try:
            forget(postgres, *names_)
            return
        except psycopg.Error:
            time.sleep(3)
    forget(postgres, *names_)


@pytest.fixture
def held() -> Iterator[list[psycopg.Connection]]:
    conns: list[psycopg.Connection] = []
    yield conns
    for conn in conns:
        conn.close()


# --- finding 1: a tenant's login blocks every CREATE DATABASE on the server --------------------------------


@pytest.mark.usefixtures("webhook")
def test_a_tenant_connected_to_template1_cannot_stop_other_tenants_provisioning(
    make_tenant: Callable[..., Tenant],
    pg_server: Any,
    apps: Apps,
    kube: Kube,
    postgres: Any,
    held: list[psycopg.Connection],
) -> None:
    team_a, team_b = make_tenant(), make_tenant()
    server = pg_server(["development", "testing"])
    a_db, b_db = f"atk_{secrets.token_hex(3)}", f"vic_{secrets.token_hex(3)}"
    try:
        a_secret = _ready_app(team_a, apps, kube, server, "squat", a_db)
        # The tenant's own role may connect to template1 (PUBLIC has CONNECT there by default) and just idle.
        held.append(_login(postgres, a_secret, "template1"))
        out = team_b.apply(
            flaskapp("victim", team_b.namespace, server=server, environment="testing", dbname=b_db)
        )
        assert out.returncode == 0, out.stderr
        # Must hold: team B's app is provisioned regardless of what team A's login does.
        apps.wait_reason(team_b.namespace, "victim", names.DATABASE_READY, "Provisioned", timeout=90)
    finally:
        for conn in held:
            conn.close()
        forget(postgres, a_db, b_db)


# --- finding 2: a tenant's login holds the operator's advisory lock for another tenant's database ----------


@pytest.mark.usefixtures("webhook")
def test_a_tenant_holding_the_operators_advisory_lock_cannot_stall_another_tenant(
    make_tenant: Callable[..., Tenant],
    pg_server: Any,
    apps: Apps,
    kube: Kube,
    postgres: Any,
    held: list[psycopg.Connection],
) -> None:
    team_a, team_b = make_tenant(), make_tenant()
    server = pg_server(["development", "testing"])
    a_db = f"atk_{secrets.token_hex(3)}"
    # B's database name is guessable (here: its default `<ns>__<app>`); the lock key is sha256 of it.
    b_db, _ = naming.default_names(team_b.namespace, "victim")
    try:
        a_secret = _ready_app(team_a, apps, kube, server, "locker", a_db)
        conn = _login(postgres, a_secret, "postgres")
        held.append(conn)
        conn.execute("SELECT pg_advisory_lock(%s::bigint)", (_guessed_lock_key(b_db),))
        body = flaskapp("victim", team_b.namespace, server=server, environment="testing")
        del body["spec"]["database"]["name"]
        assert team_b.apply(body).returncode == 0
        # Must hold: B is provisioned in normal time (it takes a few seconds unattacked).
        apps.wait_reason(team_b.namespace, "victim", names.DATABASE_READY, "Provisioned", timeout=45)
    finally:
        for c in held:
            c.close()
        forget(postgres, a_db, b_db)


# --- finding 3: another namespace's default database name can be squatted ----------------------------------


@pytest.mark.usefixtures("webhook")
def test_a_tenant_cannot_squat_another_namespaces_default_database_name(
    make_tenant: Callable[..., Tenant], pg_server: Any, apps: Apps, kube: Kube, postgres: Any
) -> None:
    team_a, team_b = make_tenant(), make_tenant()
    server = pg_server(["development", "testing"])
    b_default, _ = naming.default_names(team_b.namespace, "web")
    try:
        out = team_a.apply(
            flaskapp("squatter", team_a.namespace, server=server, environment="testing", dbname=b_default)
        )
        # Must hold (either is acceptable): the squat is refused at admission, or B still gets its database.
        if out.returncode == 0:
            apps.wait_reason(team_a.namespace, "squatter", names.DATABASE_READY, "Provisioned", timeout=120)
            body = flaskapp("web", team_b.namespace, server=server, environment="testing")
            del body["spec"]["database"]["name"]
            assert team_b.apply(body).returncode == 0
            apps.wait_reason(team_b.namespace, "web", names.DATABASE_READY, "Provisioned", timeout=60)
    finally:
        forget(postgres, b_default)


# --- finding 4: renaming spec.database.name leaks the old database (and a live login role) -----------------


@pytest.mark.usefixtures("webhook")
def test_renaming_the_database_leaves_nothing_behind_after_delete(
    make_tenant: Callable[..., Tenant], pg_server: Any, apps: Apps, kube: Kube, postgres: Any
) -> None:
    """Fixed by refusing the rename (the CRD: database.server and database.name never change), so one
    FlaskApp can never own more than one database."""
    tenant = make_tenant()
    server = pg_server(["development", "testing"])
    made = [f"ren_{i}_{secrets.token_hex(3)}" for i in range(3)]
    try:
        for i, dbname in enumerate(made):
            body = flaskapp(
                "hog",
                tenant.namespace,
                server=server,
                environment="testing",
                dbname=dbname,
                database={"deletionPolicy": "Delete"},
            )
            out = tenant.apply(body)
            if i == 0:
                assert out.returncode == 0, out.stderr
                _wait_on(apps, tenant.namespace, "hog", dbname)
            else:
                assert out.returncode != 0 and "cannot change" in out.stderr, out.stderr
        assert tenant.delete("hog").returncode == 0
        with superuser(postgres) as conn:
            left = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (made,)).fetchall()
            roles = conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) AND rolcanlogin", (made,)
            ).fetchall()
        # Must hold: a deleted app with deletionPolicy Delete leaves no database and no login role.
        assert left == [] and roles == [], (left, roles)
    finally:
        forget(postgres, *made)


# --- finding 5: every tenant's login reads every other tenant's ownership record ---------------------------


@pytest.mark.usefixtures("webhook")
def test_a_tenants_login_cannot_list_other_tenants_namespaces_and_apps(
    make_tenant: Callable[..., Tenant], pg_server: Any, apps: Apps, kube: Kube, postgres: Any
) -> None:
    team_a, team_b = make_tenant(), make_tenant()
    server = pg_server(["development", "testing"])
    a_db, b_db = f"spy_{secrets.token_hex(3)}", f"sec_{secrets.token_hex(3)}"
    try:
        a_secret = _ready_app(team_a, apps, kube, server, "spy", a_db)
        _ready_app(team_b, apps, kube, server, "payroll", b_db)
        b_uid = apps.get(team_b.namespace, "payroll")["metadata"]["uid"]
        with _login(postgres, a_secret, a_db) as conn:
            seen = "\n".join(
                str(r[0])
                for r in conn.execute(
                    "SELECT shobj_description(oid, 'pg_database') FROM pg_database"
                    " UNION ALL SELECT shobj_description(oid, 'pg_authid') FROM pg_roles"
                ).fetchall()
            )
        # Must hold: nothing of team B (namespace, app name, UID) is readable with team A's login.
        assert team_b.namespace not in seen and b_uid not in seen, seen
    finally:
        forget(postgres, a_db, b_db)


# --- finding 6: the admission answer tells a tenant about another tenant's app -----------------------------


@pytest.mark.usefixtures("webhook")
def test_the_webhook_answer_says_nothing_of_another_tenants_app(
    make_tenant: Callable[..., Tenant], pg_server: Any, apps: Apps, kube: Kube, postgres: Any
) -> None:
    team_a, team_b = make_tenant(), make_tenant()
    server = pg_server(["development", "testing"])
    b_db = f"hr_{secrets.token_hex(3)}"
    try:
        out = team_b.apply(
            flaskapp("hr", team_b.namespace, server=server, environment="development", dbname=b_db)
        )
        assert out.returncode == 0, out.stderr
        apps.wait_reason(team_b.namespace, "hr", names.DATABASE_READY, "Provisioned", timeout=120)
        # Team A probes a name in another environment: the answer differs between "used" and "free",
        # and names the other app's environment.
        probe = team_a.apply(
            flaskapp("probe", team_a.namespace, server=server, environment="testing", dbname=b_db)
        )
        free = team_a.apply(
            flaskapp(
                "probe2",
                team_a.namespace,
                server=server,
                environment="testing",
                dbname=f"free_{secrets.token_hex(3)}",
            )
        )
        assert free.returncode == 0
        assert "environment 'development'" not in probe.stderr, probe.stderr
    finally:
        forget(postgres, b_db)


# --- finding 7: the tenant's login role has no connection limit --------------------------------------------


@pytest.mark.usefixtures("webhook")
def test_a_tenants_role_has_a_connection_limit(
    make_tenant: Callable[..., Tenant], pg_server: Any, apps: Apps, kube: Kube, postgres: Any
) -> None:
    tenant = make_tenant()
    server = pg_server(["development", "testing"])
    dbname = f"conn_{secrets.token_hex(3)}"
    try:
        _ready_app(tenant, apps, kube, server, "many", dbname)
        with superuser(postgres) as conn:
            row = conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (dbname,)).fetchone()
        # Must hold: one tenant's role cannot take all of max_connections from the others.
        assert row is not None and row[0] != -1, row
    finally:
        forget(postgres, dbname)


# --- finding 2b: the same lock, on the tenant's own names, wedges the whole operator -----------------------


@pytest.mark.usefixtures("webhook")
def test_a_tenant_locking_its_own_names_cannot_wedge_the_operator_for_everyone(
    make_tenant: Callable[..., Tenant],
    pg_server: Any,
    apps: Apps,
    kube: Kube,
    postgres: Any,
    held: list[psycopg.Connection],
) -> None:
    """No guessing needed: the tenant picks the names of its own next apps, holds their lock keys with
    its own login, and creates them. Each reconcile blocks a kopf worker thread (60 s statement timeout,
    then a retry every 10 s); beyond FLASKOPS_PROVISION_CONCURRENCY (4) they block on the per-server gate
    with no timeout. With FLASKOPS_MAX_WORKERS (8) threads taken, apps on *another* server stop too."""
    team_a, team_b = make_tenant(), make_tenant()
    server = pg_server(["development", "testing"])
    other_server = pg_server(["development", "testing"])
    a_db = f"atk_{secrets.token_hex(3)}"
    own = [f"own_{i}_{secrets.token_hex(3)}" for i in range(10)]
    b_db = f"vic_{secrets.token_hex(3)}"
    try:
        a_secret = _ready_app(team_a, apps, kube, server, "locker", a_db)
        conn = _login(postgres, a_secret, "postgres")
        held.append(conn)
        for dbname in own:
            conn.execute("SELECT pg_advisory_lock(%s::bigint)", (_guessed_lock_key(dbname),))
        refused = []
        for i, dbname in enumerate(own):
            out = team_a.apply(
                flaskapp(f"l{i}", team_a.namespace, server=server, environment="testing", dbname=dbname)
            )
            if out.returncode != 0:
                refused.append(out.stderr)
        # Already here some of A's own applies time out: the webhook runs in the same worker threads.
        time.sleep(5)
        out = team_b.apply(
            flaskapp("victim", team_b.namespace, server=other_server, environment="testing", dbname=b_db)
        )
        # Must hold: admission answers team B (today: "failed calling webhook ... context deadline exceeded").
        assert out.returncode == 0, (out.stderr, refused)
        # Must hold: team B, on another PostgresServer, is provisioned in normal time.
        apps.wait_reason(team_b.namespace, "victim", names.DATABASE_READY, "Provisioned", timeout=45)
    finally:
        for c in held:
            c.close()
        for ns in (team_a.namespace, team_b.namespace):
            kube.kubectl("delete", "flaskapps", "--all", "-n", ns, "--wait=false")
        _forget_eventually(postgres, a_db, b_db, *own)


# --- finding 8: apps provisioned before the fix are refused on their next spec change ----------------------


@pytest.mark.usefixtures("webhook")
def test_an_app_provisioned_before_the_ownership_records_survives_an_image_bump(
    make_tenant: Callable[..., Tenant], pg_server: Any, apps: Apps, kube: Kube, postgres: Any
) -> None:
    tenant = make_tenant()
    server = pg_server(["development", "testing"])
    dbname = f"old_{secrets.token_hex(3)}"
    try:
        _ready_app(tenant, apps, kube, server, "legacy", dbname)
        # What the release before d1e1e58 left on the server: no role comment, the environment stamp only.
        with superuser(postgres) as conn:
            conn.execute(sql.SQL("COMMENT ON ROLE {} IS NULL").format(sql.Identifier(dbname)))
            conn.execute(
                sql.SQL("COMMENT ON DATABASE {} IS 'flaskops:environment=testing'").format(
                    sql.Identifier(dbname)
                )
            )
        body = flaskapp(
            "legacy",
            tenant.namespace,
            server=server,
            environment="testing",
            dbname=dbname,
            image="registry.example/guestbook:1.0.1",
        )
        assert tenant.apply(body).returncode == 0
        generation = apps.get(tenant.namespace, "legacy")["metadata"]["generation"]

        def judged() -> dict[str, Any]:
            status = apps.get(tenant.namespace, "legacy").get("status") or {}
            if status.get("observedGeneration") != generation:
                raise NotYet(str(status.get("observedGeneration")))
            return apps.condition(tenant.namespace, "legacy", names.DATABASE_READY)

        cond = wait_for(judged, timeout=90, what="generation observed")
        # Must hold: the app the operator itself provisioned keeps working after the upgrade.
        assert cond.get("reason") == "Provisioned", cond
    finally:
        forget(postgres, dbname)


# --- finding 6b: the webhook port answered forged reviews about any namespace, unauthenticated --------------
# Fixed two ways: with the API server's client CA configured (the `webhook` fixture, as the testbed's API
# server presents a client certificate) the TLS handshake refuses every other caller; without one, the
# answer no longer depends on other namespaces' objects (test_webhook_self.py forges reviews against it).


def test_a_forged_review_on_the_webhook_port_is_not_answered(
    make_tenant: Callable[..., Tenant],
    pg_server: Any,
    apps: Apps,
    kube: Kube,
    postgres: Any,
    webhook: Any,
    tmp_path: Path,
) -> None:
    """Any pod that reaches the operator's webhook port (a tenant's own app, whose image the tenant
    chose) used to be able to ask about any namespace: whether a database name is used there and in
    which environment, and which namespaces a PostgresServer's selector admits."""
    client_dir = kube.webhook_client_dir
    if client_dir is None:
        pytest.skip(
            "the API server's webhook client certificate is the testbed's; KUBECONFIG's cluster has its own"
        )
    team_b = make_tenant({"tier": "gold"})
    server = pg_server(["development", "testing"])
    b_db = f"fin_{secrets.token_hex(3)}"
    try:
        out = team_b.apply(
            flaskapp("ledger", team_b.namespace, server=server, environment="development", dbname=b_db)
        )
        assert out.returncode == 0, out.stderr
        apps.wait_reason(team_b.namespace, "ledger", names.DATABASE_READY, "Provisioned", timeout=120)
        port = int(webhook.extra_env["FLASKOPS_WEBHOOK_PORT"])
        # A client certificate of the attacker's own making (another CA), and none at all.
        from flaskops_testbed import webhook_client

        webhook_client.write(tmp_path / "forged")
        forged = (str(tmp_path / "forged" / "client.crt"), str(tmp_path / "forged" / "client.key"))

        def ask(dbname: str, cert: tuple[str, str] | None) -> requests.Response:
            body = flaskapp("probe", team_b.namespace, server=server, environment="testing", dbname=dbname)
            review = {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": secrets.token_hex(8),
                    "operation": "CREATE",
                    "userInfo": {"username": "system:anonymous"},
                    "resource": {"group": names.GROUP, "version": "v1alpha1", "resource": "flaskapps"},
                    "namespace": team_b.namespace,
                    "name": "probe",
                    "object": body,
                },
            }
            return requests.post(
                f"https://127.0.0.1:{port}/validate-flaskapp",
                json=review,
                verify=str(Path(webhook.extra_env["FLASKOPS_WEBHOOK_CERT_DIR"]) / "ca.crt"),
                cert=cert,
                timeout=10,
            )

        for cert in (None, forged):
            for dbname in (b_db, f"free_{secrets.token_hex(3)}"):
                # Must hold: no answer at all (the handshake fails), so nothing to tell apart.
                with pytest.raises(requests.exceptions.ConnectionError):
                    ask(dbname, cert)
        # The API server's own certificate is answered, and judges the other namespace's app (S5).
        genuine = ask(b_db, (str(client_dir / "client.crt"), str(client_dir / "client.key")))
        assert genuine.status_code == 200, genuine.text
        assert genuine.json()["response"]["allowed"] is False, genuine.json()
    finally:
        forget(postgres, b_db)


# --- held up: a FlaskApp deleted while it is being provisioned leaves nothing (8 tries) ----------------------


@pytest.mark.usefixtures("webhook")
def test_deleting_during_provisioning_leaves_no_database(
    make_tenant: Callable[..., Tenant], pg_server: Any, apps: Apps, kube: Kube, postgres: Any
) -> None:
    tenant = make_tenant()
    server = pg_server(["development", "testing"])
    made = [f"race_{i}_{secrets.token_hex(3)}" for i in range(8)]
    try:
        for i, dbname in enumerate(made):
            body = flaskapp(
                f"r{i}",
                tenant.namespace,
                server=server,
                environment="testing",
                dbname=dbname,
                database={"deletionPolicy": "Delete"},
            )
            assert tenant.apply(body).returncode == 0
            time.sleep(0.3 * (i % 4))
            tenant.kubectl("delete", "flaskapp", f"r{i}", "-n", tenant.namespace, "--wait=false")

        def gone() -> bool:
            out = tenant.kubectl("get", "flaskapps", "-n", tenant.namespace, "-o", "name")
            if out.stdout.strip():
                raise NotYet(out.stdout)
            return True

        wait_for(gone, timeout=120, what="all FlaskApps deleted")
        time.sleep(15)
        with superuser(postgres) as conn:
            left = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (made,)).fetchall()
            roles = conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (made,)).fetchall()
        # Must hold: deletionPolicy Delete leaves nothing, however early the app is deleted.
        assert left == [] and roles == [], (left, roles)
    finally:
        _forget_eventually(postgres, *made)


# --- held up: a huge spec (600 kB of env) neither hot-loops nor slows another tenant -----------------------


@pytest.mark.usefixtures("webhook")
def test_a_huge_spec_does_not_slow_other_tenants(
    make_tenant: Callable[..., Tenant], pg_server: Any, apps: Apps, kube: Kube, postgres: Any, webhook: Any
) -> None:
    team_a, team_b = make_tenant(), make_tenant()
    server = pg_server(["development", "testing"])
    a_db, b_db = f"big_{secrets.token_hex(3)}", f"sml_{secrets.token_hex(3)}"
    try:
        body = flaskapp("big", team_a.namespace, server=server, environment="testing", dbname=a_db)
        body["spec"]["env"] = [{"name": f"V{i}", "value": "x" * 100_000} for i in range(6)]
        out = team_a.apply(body)
        started = time.monotonic()
        out_b = team_b.apply(
            flaskapp("small", team_b.namespace, server=server, environment="testing", dbname=b_db)
        )
        assert out_b.returncode == 0, out_b.stderr
        apps.wait_reason(team_b.namespace, "small", names.DATABASE_READY, "Provisioned", timeout=60)
        time.sleep(20)
        log = webhook.log_text()
        big_runs = log.count('"flaskapp": "big"')
        assert big_runs < 40, (out.returncode, out.stderr[:300], big_runs, time.monotonic() - started)
    finally:
        forget(postgres, a_db, b_db)

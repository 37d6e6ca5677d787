"""A hostile tenant: a ServiceAccount that may only manage FlaskApps in its own namespace, with the
webhook on (the chart's configuration, failurePolicy Fail), against the session's real PostgreSQL.

Each test is one way a tenant could try to reach what is not theirs through the operator's admin power:
the superuser or admin role, another namespace's database, a role made by hand, a Secret or Deployment
it did not create, a server it may not use, a second name for the same server. After each attempt the
test checks what must still hold: the admin logs in, the other team's password works, nothing changed.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
import yaml
from e2e_support import Apps, OperatorProcess, flaskapp, make_namespace, secret_data
from kubernetes import client
from psycopg import sql

# The module-scoped webhook (the chart's configuration pointing at an operator on loopback): every
# attempt here goes through admission first, as a tenant's `kubectl apply` does.
from test_webhook import legacy_namespace, webhook  # noqa: F401

from flaskops import names
from flaskops_testbed.kube_fixtures import Kube
from flaskops_testbed.waiting import NotYet, wait_for

pytestmark = pytest.mark.e2e

ADMIN_NAMESPACE = "flaskops-system"


@dataclass
class Tenant:
    """kubectl as `system:serviceaccount:<ns>:tenant`, whose only rights are FlaskApps in <ns>."""

    kube: Kube
    namespace: str
    kubeconfig: Path

    def kubectl(self, *args: str, input: str | None = None) -> Any:
        return self.kube.run(
            [str(self.kube.kubectl_binary), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            check=False,
        )

    def apply(self, body: dict[str, Any]) -> Any:
        return self.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))

    def delete(self, name: str) -> Any:
        return self.kubectl("delete", "flaskapp", name, "-n", self.namespace, "--timeout=90s")


@pytest.fixture
def make_tenant(kube: Kube, tmp_path: Path) -> Iterator[Callable[..., Tenant]]:
    """A namespace and a tenant ServiceAccount in it with only FlaskApp rights; all deleted afterwards."""
    made: list[str] = []
    rbac = client.RbacAuthorizationV1Api(kube.api)

    def make(labels: dict[str, str] | None = None) -> Tenant:
        ns = make_namespace(kube, "tn", labels)
        made.append(ns)
        client.CoreV1Api(kube.api).create_namespaced_service_account(
            ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="tenant"))
        )
        rbac.create_namespaced_role(
            ns,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="flaskapps-only"),
                rules=[
                    client.V1PolicyRule(
                        api_groups=[names.GROUP],
                        resources=[names.FLASKAPP_PLURAL],
                        verbs=["get", "list", "watch", "create", "update", "patch", "delete"],
                    )
                ],
            ),
        )
        rbac.create_namespaced_role_binding(
            ns,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="flaskapps-only"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="flaskapps-only"
                ),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name="tenant", namespace=ns)],
            ),
        )
        tenant = Tenant(
            kube, ns, kube.service_account_kubeconfig(ns, "tenant", tmp_path / f"{ns}.kubeconfig")
        )
        # The tenant really is powerless outside FlaskApps.
        assert tenant.kubectl("get", "secrets", "-n", ns).returncode != 0
        return tenant

    yield make
    for ns in made:
        kube.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found")


@pytest.fixture
def pg_server(kube: Kube, postgres: Any) -> Iterator[Callable[..., str]]:
    """A PostgresServer on the session's PostgreSQL with an admin Secret of its own; deleted afterwards."""
    made: list[str] = []

    def make(
        environments: list[str],
        *,
        username: str | None = None,
        password: str | None = None,
        host: str | None = None,
        **spec: Any,
    ) -> str:
        name = f"pg-{secrets.token_hex(4)}"
        secret = client.V1Secret(
            metadata=client.V1ObjectMeta(name=name, namespace=ADMIN_NAMESPACE),
            string_data={
                "username": username or postgres.superuser,
                "password": password or postgres.password,
            },
        )
        client.CoreV1Api(kube.api).create_namespaced_secret(ADMIN_NAMESPACE, secret)
        body = {
            "apiVersion": names.API_VERSION,
            "kind": names.POSTGRESSERVER_KIND,
            "metadata": {"name": name},
            "spec": {
                "host": host or postgres.host,
                "port": postgres.port,
                "sslMode": "disable",
                "adminSecretRef": {"namespace": ADMIN_NAMESPACE, "name": name},
                "environments": environments,
                **spec,
            },
        }
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
        made.append(name)
        return name

    yield make
    for name in made:
        kube.kubectl("delete", "postgresserver", name, "--ignore-not-found", "--wait=false")
        kube.kubectl("delete", "secret", name, "-n", ADMIN_NAMESPACE, "--ignore-not-found")


def superuser(postgres: Any) -> psycopg.Connection:
    return psycopg.connect(postgres.admin_url, autocommit=True, connect_timeout=10)


def role_row(postgres: Any, role: str) -> tuple[Any, ...] | None:
    with superuser(postgres) as conn:
        return conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolcanlogin FROM pg_roles WHERE rolname = %s",
            (role,),
        ).fetchone()


def logs_in(postgres: Any, dbname: str, user: str, password: str) -> bool:
    try:
        psycopg.connect(
            host=postgres.host,
            port=postgres.port,
            dbname=dbname,
            user=user,
            password=password,
            connect_timeout=10,
        ).close()
    except psycopg.OperationalError:
        return False
    return True


def tenant_view(apps: Apps, ns: str, name: str) -> str:
    """Everything a tenant reads about its app: conditions and Events."""
    body = apps.get(ns, name)
    events = apps.events(ns, name)
    return json.dumps(body.get("status") or {}) + json.dumps([(e["reason"], e["message"]) for e in events])


def forget(postgres: Any, *names_: str) -> None:
    with superuser(postgres) as conn:
        for n in names_:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(n)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(n)))


# --- 1. the superuser and the admin role -----------------------------------------------------------------


@pytest.mark.usefixtures("webhook")
def test_reserved_names_are_refused_at_apply(make_tenant: Callable[..., Tenant], pg_server: Any) -> None:
    tenant = make_tenant()
    server = pg_server(["development", "testing"])
    for dbname in ("postgres", "template1", "pg_monitor"):
        body = flaskapp("grab", tenant.namespace, server=server, environment="testing", dbname=dbname)
        out = tenant.apply(body)
        assert out.returncode != 0, out.stdout
        assert "spec.database.name" in out.stderr and "reserved" in out.stderr, out.stderr


@pytest.mark.usefixtures("webhook")
def test_the_admin_role_and_privileged_roles_are_never_handed_out(
    make_tenant: Callable[..., Tenant], pg_server: Any, apps: Apps, kube: Kube, postgres: Any
) -> None:
    """Reproduction 1, by a name no static list knows: the server's own admin (a CREATEROLE/CREATEDB role,
    as managed PostgreSQL hands out), and a privileged role made by someone else."""
    admin_role, helper = f"dbadmin_{secrets.token_hex(3)}", f"reporting_{secrets.token_hex(3)}"
    admin_password = secrets.token_urlsafe(16)
    with superuser(postgres) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB PASSWORD {}").format(
                sql.Identifier(admin_role), sql.Literal(admin_password)
            )
        )
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(sql.Identifier(helper)))
    try:
        tenant = make_tenant()
        server = pg_server(["development", "testing"], username=admin_role, password=admin_password)
        for app, dbname in (("takeadmin", admin_role), ("takehelper", helper)):
            body = flaskapp(
                app,
                tenant.namespace,
                server=server,
                environment="testing",
                dbname=dbname,
                database={"deletionPolicy": "Delete"},
            )
            out = tenant.apply(body)
            assert out.returncode == 0, out.stderr  # no static list can know these names: reconcile refuses
            cond = apps.wait_reason(tenant.namespace, app, names.DATABASE_READY, "ReservedName")
            assert apps.condition(tenant.namespace, app, names.STALLED)["status"] == "True"
            assert secret_data(kube, tenant.namespace, names.db_secret_name(app)) is None
            view = tenant_view(apps, tenant.namespace, app)
            # The same words as for any reserved name: nothing says which role is the admin.
            assert "admin role" not in cond["message"] and "admin Secret" not in cond["message"]
            assert admin_password not in view
        # Deleting them (deletionPolicy Delete) drops nothing and alters nothing.
        for app in ("takeadmin", "takehelper"):
            assert tenant.delete(app).returncode == 0
        assert role_row(postgres, admin_role) == (False, True, True, True)
        assert role_row(postgres, helper) == (False, False, True, True)
        assert logs_in(postgres, "postgres", admin_role, admin_password)
        with superuser(postgres) as conn:
            # CONNECT on the maintenance database is still granted to PUBLIC.
            row = conn.execute("SELECT has_database_privilege('public', 'postgres', 'CONNECT')").fetchone()
        assert row == (True,)
    finally:
        forget(postgres, admin_role, helper)


# --- 2. another namespace's database ---------------------------------------------------------------------


@pytest.mark.usefixtures("webhook")
def test_a_tenant_can_neither_take_nor_drop_another_tenants_database(
    make_tenant: Callable[..., Tenant], pg_server: Any, apps: Apps, kube: Kube, postgres: Any
) -> None:
    team_a, team_b = make_tenant(), make_tenant()
    server = pg_server(["development", "testing"])
    shared = f"orders_{secrets.token_hex(3)}"
    assert (
        team_b.apply(
            flaskapp("orders", team_b.namespace, server=server, environment="testing", dbname=shared)
        ).returncode
        == 0
    )
    apps.wait(team_b.namespace, "orders", timeout=180)
    b_secret = secret_data(kube, team_b.namespace, names.db_secret_name("orders"))
    assert b_secret is not None
    with psycopg.connect(b_secret["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int)")
        conn.execute("INSERT INTO orders VALUES (42)")

    body = flaskapp(
        "thief",
        team_a.namespace,
        server=server,
        environment="testing",
        dbname=shared,
        database={"deletionPolicy": "Delete"},
    )
    assert team_a.apply(body).returncode == 0
    cond = apps.wait_reason(team_a.namespace, "thief", names.DATABASE_READY, "RoleOwnedElsewhere")
    assert apps.condition(team_a.namespace, "thief", names.STALLED)["status"] == "True"
    view = tenant_view(apps, team_a.namespace, "thief")
    assert team_b.namespace not in view and "orders'" not in cond["message"].replace(shared, "")
    assert secret_data(kube, team_a.namespace, names.db_secret_name("thief")) is None

    # Reproduction 2: the finalizer of the refused app must not drop team B's database.
    assert team_a.delete("thief").returncode == 0
    with psycopg.connect(b_secret["DATABASE_URL"], autocommit=True) as conn:
        assert conn.execute("SELECT id FROM orders").fetchall() == [(42,)]
    assert apps.condition(team_b.namespace, "orders", names.READY)["status"] == "True"


# --- 3. adoption by name ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("webhook")
def test_a_legacy_database_is_adopted_only_with_both_consents(
    make_tenant: Callable[..., Tenant], pg_server: Any, apps: Apps, kube: Kube, postgres: Any
) -> None:
    legacy = f"legacy_{secrets.token_hex(3)}"
    legacy_password = secrets.token_urlsafe(16)
    with superuser(postgres) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(legacy), sql.Literal(legacy_password)
            )
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(legacy), sql.Identifier(legacy))
        )
    try:
        tenant = make_tenant()
        server = pg_server(["development", "testing"])
        body = flaskapp("shop", tenant.namespace, server=server, environment="testing", dbname=legacy)
        assert tenant.apply(body).returncode == 0
        cond = apps.wait_reason(tenant.namespace, "shop", names.DATABASE_READY, "RoleOwnedElsewhere")
        assert "adoptExisting" in cond["message"]
        assert logs_in(postgres, legacy, legacy, legacy_password)

        body["spec"]["database"]["adoptExisting"] = True  # the tenant alone cannot adopt it
        assert tenant.apply(body).returncode == 0

        def judged_again() -> bool:
            message = apps.condition(tenant.namespace, "shop", names.DATABASE_READY)["message"]
            if "adoptableDatabases for this namespace" not in message:
                raise NotYet(message)
            return True

        wait_for(judged_again, timeout=60, what="the refusal naming adoptableDatabases")
        assert logs_in(postgres, legacy, legacy, legacy_password)
        assert secret_data(kube, tenant.namespace, names.db_secret_name("shop")) is None

        # The cluster admin consents for this namespace and database.
        kube.kubectl(
            "patch",
            "postgresserver",
            server,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"adoptableDatabases": [{"namespace": tenant.namespace, "name": legacy}]}}),
        )
        apps.wait(tenant.namespace, "shop", timeout=180)
        adopted = [e for e in apps.events(tenant.namespace, "shop") if e["reason"] == "DatabaseAdopted"]
        assert adopted and adopted[0]["type"] == "Warning" and "password" in adopted[0]["message"]
        data = secret_data(kube, tenant.namespace, names.db_secret_name("shop"))
        assert data is not None and logs_in(postgres, legacy, legacy, data["password"])
        assert not logs_in(postgres, legacy, legacy, legacy_password)  # said so in the Event
    finally:
        forget(postgres, legacy)


@pytest.mark.usefixtures("webhook")
def test_children_it_did_not_create_are_never_taken(
    make_tenant: Callable[..., Tenant], pg_server: Any, apps: Apps, kube: Kube
) -> None:
    tenant = make_tenant()
    server = pg_server(["development", "testing"])
    core = client.CoreV1Api(kube.api)
    # Someone else in the namespace made a Secret with the name the app's credentials would take...
    planted = client.V1Secret(
        metadata=client.V1ObjectMeta(name=names.db_secret_name("keys")),
        string_data={"password": "chosen-by-someone-else"},
    )
    core.create_namespaced_secret(tenant.namespace, planted)
    # ... and a Deployment with another app's name.
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": tenant.namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "registry.example/other:1"}]},
            },
        },
    }
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(deployment))
    for app in ("keys", "web"):
        assert (
            tenant.apply(flaskapp(app, tenant.namespace, server=server, environment="testing")).returncode
            == 0
        )
    secret_cond = apps.wait_reason(tenant.namespace, "keys", names.DATABASE_READY, "NotOwned")
    assert f"Secret '{names.db_secret_name('keys')}'" in secret_cond["message"]
    web_cond = apps.wait_reason(tenant.namespace, "web", names.AVAILABLE, "NotOwned", timeout=180)
    assert "Deployment 'web'" in web_cond["message"]

    assert secret_data(kube, tenant.namespace, names.db_secret_name("keys")) == {
        "password": "chosen-by-someone-else"
    }
    dep = json.loads(kube.kubectl("get", "deployment", "web", "-n", tenant.namespace, "-o", "json").stdout)
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/other:1"
    assert not dep["metadata"].get("ownerReferences")
    for app in ("keys", "web"):
        assert tenant.delete(app).returncode == 0
    assert secret_data(kube, tenant.namespace, names.db_secret_name("keys")) is not None
    kube.kubectl("get", "deployment", "web", "-n", tenant.namespace)  # still there


# --- which namespaces may use a server, and one server behind two names -----------------------------------


@pytest.mark.usefixtures("webhook")
def test_allowed_namespaces_is_enforced_at_apply(
    make_tenant: Callable[..., Tenant], pg_server: Any, apps: Apps, kube: Kube
) -> None:
    label = f"flaskops.dev/tenant-{secrets.token_hex(2)}"
    server = pg_server(
        ["development", "testing"],
        allowedNamespaces={"from": "Selector", "selector": {"matchLabels": {label: "yes"}}},
    )
    outsider, member = make_tenant(), make_tenant({label: "yes"})

    def refused() -> str:
        out = outsider.apply(flaskapp("app", outsider.namespace, server=server, environment="testing"))
        if out.returncode == 0:
            raise AssertionError("an app outside allowedNamespaces was admitted")
        if "NamespaceNotAllowed" not in out.stderr:
            raise NotYet(out.stderr)  # the operator's index has not seen the server yet
        return str(out.stderr)

    stderr = wait_for(refused, timeout=60, what="the webhook's NamespaceNotAllowed")
    assert server in stderr and outsider.namespace in stderr and member.namespace not in stderr
    assert (
        member.apply(flaskapp("app", member.namespace, server=server, environment="testing")).returncode == 0
    )
    apps.wait(member.namespace, "app", timeout=180)

    # Labelling the namespace admits it.
    kube.kubectl("label", "namespace", outsider.namespace, f"{label}=yes")

    def admitted() -> bool:
        out = outsider.apply(flaskapp("app", outsider.namespace, server=server, environment="testing"))
        if out.returncode != 0:
            raise NotYet(out.stderr)
        return True

    wait_for(admitted, timeout=60, what="admission after the namespace was labelled")
    apps.wait(outsider.namespace, "app", timeout=180)


@pytest.mark.usefixtures("webhook")
def test_one_server_behind_two_host_names_is_one_server(
    make_tenant: Callable[..., Tenant], pg_server: Any, apps: Apps, kube: Kube, postgres: Any
) -> None:
    first, second = make_tenant(), make_tenant()
    by_ip = pg_server(["development", "testing"], host="127.0.0.1")
    by_name = pg_server(["development", "testing"], host="localhost")
    dbname = f"ledger_{secrets.token_hex(3)}"
    assert (
        first.apply(
            flaskapp("ledger", first.namespace, server=by_ip, environment="testing", dbname=dbname)
        ).returncode
        == 0
    )
    apps.wait(first.namespace, "ledger", timeout=180)
    recorded = apps.get(first.namespace, "ledger")["status"]["database"]
    with superuser(postgres) as conn:
        row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    assert row is not None and recorded["systemIdentifier"] == row[0]
    password = secret_data(kube, first.namespace, names.db_secret_name("ledger"))["password"]  # type: ignore[index]

    # Another environment through the other host name: rule S5 sees one database.
    body = flaskapp("ledger", second.namespace, server=by_name, environment="development", dbname=dbname)
    assert second.apply(body).returncode == 0
    cond = apps.wait_reason(second.namespace, "ledger", names.ENVIRONMENT_SAFE, "UnsafeDatabasePairing")
    assert "S5" in cond["message"] and first.namespace not in cond["message"]
    # The same environment: the ownership record refuses it.
    assert second.kubectl("delete", "flaskapp", "ledger", "-n", second.namespace).returncode == 0
    body["spec"]["environment"] = "testing"
    assert second.apply(body).returncode == 0
    apps.wait_reason(second.namespace, "ledger", names.DATABASE_READY, "RoleOwnedElsewhere")
    assert logs_in(postgres, dbname, dbname, password)


# --- Retain: the same namespace/name re-attaches -----------------------------------------------------------


@pytest.mark.usefixtures("webhook")
def test_retained_database_reattaches_to_the_same_app_only(
    make_tenant: Callable[..., Tenant], pg_server: Any, apps: Apps, kube: Kube, postgres: Any
) -> None:
    owner, other = make_tenant(), make_tenant()
    server = pg_server(["production"])
    dbname = f"shop_{secrets.token_hex(3)}"
    body = flaskapp("shop", owner.namespace, server=server, dbname=dbname)
    assert owner.apply(body).returncode == 0
    apps.wait(owner.namespace, "shop", timeout=180)
    url = secret_data(kube, owner.namespace, names.db_secret_name("shop"))["DATABASE_URL"]  # type: ignore[index]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
    assert owner.delete("shop").returncode == 0

    assert other.apply(flaskapp("shop", other.namespace, server=server, dbname=dbname)).returncode == 0
    apps.wait_reason(other.namespace, "shop", names.DATABASE_READY, "RoleOwnedElsewhere")

    assert owner.apply(body).returncode == 0
    apps.wait(owner.namespace, "shop", timeout=180)
    url = secret_data(kube, owner.namespace, names.db_secret_name("shop"))["DATABASE_URL"]  # type: ignore[index]
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("still here",)]


# --- messages and the webhook's own port -------------------------------------------------------------------


@pytest.mark.usefixtures("webhook")
def test_admin_trouble_names_no_admin(
    make_tenant: Callable[..., Tenant], pg_server: Any, apps: Apps, postgres: Any
) -> None:
    tenant = make_tenant()
    server = pg_server(["development", "testing"], password="not-the-password")
    assert (
        tenant.apply(flaskapp("app", tenant.namespace, server=server, environment="testing")).returncode == 0
    )
    cond = apps.wait_reason(tenant.namespace, "app", names.DATABASE_READY, "AdminAuthFailed", timeout=60)
    view = tenant_view(apps, tenant.namespace, "app")
    assert server in cond["message"]
    assert f"'{postgres.superuser}'" not in view and f'"{postgres.superuser}"' not in view
    assert "not-the-password" not in view and ADMIN_NAMESPACE not in view


@pytest.fixture
def webhook_url(webhook: OperatorProcess) -> tuple[str, str, tuple[str, str] | None]:  # noqa: F811 - the imported module fixture
    """The webhook's URL on loopback, the CA file that signed its certificate, and the client certificate
    it requires (the testbed API server's, from the CA's directory), if it requires one."""
    env = webhook.extra_env
    client_ca = env.get("FLASKOPS_WEBHOOK_CLIENT_CA")
    client = Path(client_ca).parent if client_ca else None
    return (
        f"https://127.0.0.1:{env['FLASKOPS_WEBHOOK_PORT']}/validate-flaskapp",
        str(Path(env["FLASKOPS_WEBHOOK_CERT_DIR"]) / "ca.crt"),
        (str(client / "client.crt"), str(client / "client.key")) if client else None,
    )


def _post(target: tuple[str, str, tuple[str, str] | None], payload: bytes) -> tuple[int, str]:
    url, ca, cert = target
    resp = requests.post(
        url, data=payload, headers={"Content-Type": "application/json"}, verify=ca, cert=cert, timeout=10
    )
    return resp.status_code, resp.text


def _review(obj: Any, **request: Any) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0000",
            "operation": "CREATE",
            "userInfo": {"username": "mallory"},
            "resource": {"group": names.GROUP, "version": names.VERSION, "resource": names.FLASKAPP_PLURAL},
            "kind": {"group": names.GROUP, "version": names.VERSION, "kind": names.FLASKAPP_KIND},
            "namespace": "shop",
            "name": "x",
            "object": obj,
            **request,
        },
    }


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"kind": "AdmissionReview"}',
        json.dumps(_review(None)).encode(),
        json.dumps(_review("a string")).encode(),
        json.dumps(_review({}, operation="EXPLODE")).encode(),
        json.dumps(_review({}, resource=[1, 2])).encode(),
    ],
)
def test_malformed_reviews_get_a_plain_400(
    webhook_url: tuple[str, str, tuple[str, str] | None], payload: bytes
) -> None:
    status, text = _post(webhook_url, payload)
    assert status == 400, (status, text)
    assert "Traceback" not in text and "Error(" not in text


def test_a_review_of_a_malformed_flaskapp_is_refused_as_400(
    webhook_url: tuple[str, str, tuple[str, str] | None],
) -> None:
    obj = {
        "apiVersion": names.API_VERSION,
        "kind": names.FLASKAPP_KIND,
        "metadata": {"name": "x", "namespace": "shop"},
        "spec": {"environment": "testing", "image": "i", "replicas": "many", "database": {"server": 7}},
    }
    status, text = _post(webhook_url, json.dumps(_review(obj)).encode())
    assert status == 200, text  # a well-formed review: the verdict is inside
    response = json.loads(text)["response"]
    assert response["allowed"] is False and response["status"]["code"] == 400, response
    assert "Traceback" not in text and "ValueError" not in text

"""The chart without a cluster: lint, schema, Kubernetes schemas, policy scan, RBAC shape, one source of truth."""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.chart_support import CHART, ROOT, find, helm_binary, operator_container, render

# Rendered variants every structural test runs on: cluster-wide, Role-only, cert-manager.
VARIANTS = {
    "cluster": (),
    "namespaced": ("--set", "operator.watchNamespace=shop"),
    "cert-manager": ("--set", "webhook.certManager.enabled=true"),
    "no-webhook": ("--set", "webhook.enabled=false", "--set", "crds.create=false"),
    # A public CA certificate (made by flaskops_testbed.webhook_client; no key is kept).
    "client-ca": ("--set-file", f"webhook.clientCA={Path(__file__).parent / 'webhook-client-ca.pem'}"),
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def docs(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(*VARIANTS[request.param])


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_lint(variant: str) -> None:
    out = helm("lint", "--strict", str(CHART), *VARIANTS[variant])
    assert out.returncode == 0, out.stdout + out.stderr


def test_crds_are_the_repository_crds() -> None:
    """files/crds is a generated copy of crds/ (the one source of truth): identical, file for file."""
    src = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    copy = sorted(p.name for p in (CHART / "files" / "crds").glob("*.yaml"))
    cmp = filecmp.cmpfiles(ROOT / "crds", CHART / "files" / "crds", src, shallow=False)
    assert copy == src and not cmp[1] and not cmp[2], (
        "charts/flaskops/files/crds differs from crds/: run `cp crds/*.yaml charts/flaskops/files/crds/`"
    )


def test_rendered_crds_equal_the_source_plus_keep() -> None:
    rendered = {d["metadata"]["name"]: d for d in render() if d["kind"] == "CustomResourceDefinition"}
    for path in (ROOT / "crds").glob("*.yaml"):
        source = yaml.safe_load(path.read_text())
        got = rendered[source["metadata"]["name"]]
        assert got["spec"] == source["spec"]
        assert got["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert source["metadata"]["labels"].items() <= got["metadata"]["labels"].items()
    assert not [d for d in render("--set", "crds.create=false") if d["kind"] == "CustomResourceDefinition"]


def test_app_version_is_the_project_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == project, "Chart.yaml appVersion must equal pyproject.toml's version"
    image = operator_container(render())["image"]
    assert image.endswith(f":{project}")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (("--set", "operator.replicas=two"), "at '/operator/replicas': got string, want integer"),
        (("--set", "operator.replicas=-1"), "/operator/replicas"),
        (("--set", "webhook.failurePolicy=Sometimes"), "value must be one of 'Fail', 'Ignore'"),
        (("--set-json", 'crds.create="yes"'), "at '/crds/create': got string, want boolean"),
        (("--set", "operator.watchNamespace=Not_A_Namespace"), "/operator/watchNamespace"),
        (("--set", "webhok.enabled=false"), "additional properties 'webhok' not allowed"),
        (("--set", "webhook.clientCA=my-ca"), "at '/webhook/clientCA'"),
    ],
)
def test_schema_refuses_wrong_values(setting: tuple[str, ...], message: str) -> None:
    out = helm("template", "x", str(CHART), *setting)
    assert out.returncode != 0
    assert "values don't meet the specifications of the schema" in out.stderr
    assert message in out.stderr, out.stderr


def test_manifests_validate_against_kubernetes_schemas(tmp_path: Path) -> None:
    """`kubernetes-validate --strict` (its newest schemas, 1.37 >= the testbed's 1.36) on every built-in kind."""
    files = []
    for variant, args in VARIANTS.items():
        for i, doc in enumerate(render(*args)):
            if doc["apiVersion"].startswith("cert-manager.io/"):
                continue  # not a Kubernetes schema; cert-manager validates its own kinds
            path = tmp_path / f"{variant}-{i}-{doc['kind']}.yaml"
            path.write_text(yaml.safe_dump(doc))
            files.append(str(path))
    cmd = [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet"]
    out = subprocess.run([*cmd, *files], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def _rules(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [
        rule
        for d in docs
        if d["kind"] == kind and not d["metadata"]["name"].endswith(("-view", "-edit"))
        for rule in d.get("rules", [])
    ]


def _grants(rules: list[dict[str, Any]], resource: str, verb: str) -> bool:
    return any(
        (resource in r["resources"] or "*" in r["resources"]) and (verb in r["verbs"] or "*" in r["verbs"])
        for r in rules
    )


def test_operator_rbac_is_least_privilege(docs: list[dict[str, Any]]) -> None:
    rules = _rules(docs, "ClusterRole") + _rules(docs, "Role")
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
    # list/watch on Secrets serve one label-selected watch of the operator's own Secrets (drift repair);
    # deleting, replacing or bulk-deleting a Secret is never needed.
    for verb in ("delete", "update", "deletecollection"):
        assert not _grants(rules, "secrets", verb), f"the operator must not {verb} Secrets"
    for res in ("pods", "pods/exec", "serviceaccounts", "roles", "rolebindings", "clusterroles", "nodes"):
        for verb in ("create", "get", "list", "patch", "delete", "escalate", "bind"):
            assert not _grants(rules, res, verb), f"the operator must not {verb} {res}"
    assert not _grants(rules, "validatingwebhookconfigurations", "create")
    assert not _grants(rules, "deployments", "delete") and not _grants(rules, "services", "delete")


def test_role_only_mode_grants_namespaced_resources_in_one_namespace() -> None:
    docs = render("--set", "operator.watchNamespace=shop")
    cluster_resources = {r for rule in _rules(docs, "ClusterRole") for r in rule["resources"]}
    assert cluster_resources == {
        "postgresservers",
        "postgresservers/status",
        "customresourcedefinitions",
        "namespaces",
    }
    role = find(docs, "Role", "flaskops-operator")
    assert role["metadata"]["namespace"] == "shop"
    secrets_role = find(docs, "Role", "flaskops-admin-secrets")
    assert secrets_role["metadata"]["namespace"] == "flaskops-system"
    assert secrets_role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]
    named = render("--set", "operator.watchNamespace=shop", "--set", "rbac.adminSecretNames={pg-admin}")
    assert find(named, "Role", "flaskops-admin-secrets")["rules"][0]["resourceNames"] == ["pg-admin"]
    assert "--namespace=shop" in operator_container(docs)["args"]
    vwc = find(docs, "ValidatingWebhookConfiguration")
    assert vwc["webhooks"][0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}


def test_aggregated_roles_extend_view_and_edit() -> None:
    docs = render()
    view = find(docs, "ClusterRole", "flaskops-view")
    edit = find(docs, "ClusterRole", "flaskops-edit")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert set(view["rules"][0]["verbs"]) == {"get", "list", "watch"}
    assert edit["rules"] == [
        {
            "apiGroups": ["flaskops.dev"],
            "resources": ["flaskapps"],
            "verbs": ["create", "update", "patch", "delete", "deletecollection"],
        }
    ]


def test_operator_pod_is_restricted(docs: list[dict[str, Any]]) -> None:
    dep = find(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = operator_container(docs)
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert "/tmp" in mounts
    env = {e["name"]: e.get("value") for e in c["env"]}
    webhook = any(d["kind"] == "ValidatingWebhookConfiguration" for d in docs)
    assert env["FLASKOPS_WEBHOOK"] == ("certs" if webhook else "none")
    if webhook:
        assert env["FLASKOPS_WEBHOOK_CERT_DIR"] in mounts


def test_a_client_ca_makes_the_webhook_require_the_api_servers_certificate() -> None:
    pem = (Path(__file__).parent / "webhook-client-ca.pem").read_text()
    docs = render(*VARIANTS["client-ca"])
    config_map = find(docs, "ConfigMap", "flaskops-webhook-client-ca")
    assert config_map["data"] == {"ca.crt": pem}
    c = operator_container(docs)
    env = {e["name"]: e.get("value") for e in c["env"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert env["FLASKOPS_WEBHOOK_CLIENT_CA"] == mounts["webhook-client-ca"] + "/ca.crt"
    pod = find(docs, "Deployment")["spec"]["template"]
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "webhook-client-ca")
    assert volume["configMap"]["name"] == "flaskops-webhook-client-ca"
    assert "checksum/webhook-client-ca" in pod["metadata"]["annotations"]  # a new CA restarts the pods
    plain = operator_container(render())
    assert "FLASKOPS_WEBHOOK_CLIENT_CA" not in {e["name"] for e in plain["env"]}  # off by default


def test_webhook_path_is_the_kopf_handler_id() -> None:
    """kopf serves a validating handler at /<id>: the configuration must call exactly that path."""
    handlers = (ROOT / "operator" / "flaskops" / "handlers.py").read_text()
    ids = re.findall(r'id="(validate-[a-z-]+)"', handlers)
    vwc = find(render(), "ValidatingWebhookConfiguration")
    hook = vwc["webhooks"][0]
    assert hook["clientConfig"]["service"]["path"] == f"/{ids[0]}"
    assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
    assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    ignore = find(render("--set", "webhook.failurePolicy=Ignore"), "ValidatingWebhookConfiguration")
    assert ignore["webhooks"][0]["failurePolicy"] == "Ignore"


def test_chart_generated_certificate_serves_the_webhook_service() -> None:
    import base64

    from cryptography import x509

    docs = render()
    secret = find(docs, "Secret")
    vwc = find(docs, "ValidatingWebhookConfiguration")
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    crt = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert vwc["webhooks"][0]["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    assert crt.issuer == ca.subject
    crt.verify_directly_issued_by(ca)
    sans = crt.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "flaskops-webhook.flaskops-system.svc" in sans.get_values_for_type(x509.DNSName)


def test_cert_manager_mode_lets_cert_manager_inject_the_ca() -> None:
    docs = render("--set", "webhook.certManager.enabled=true")
    assert not [d for d in docs if d["kind"] == "Secret"]
    cert = find(docs, "Certificate")
    vwc = find(docs, "ValidatingWebhookConfiguration")
    assert "caBundle" not in vwc["webhooks"][0]["clientConfig"]
    assert vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"flaskops-system/{cert['metadata']['name']}"
    )
    assert cert["spec"]["secretName"] == cert["metadata"]["name"]
    assert find(docs, "Issuer")["spec"] == {"selfSigned": {}}


def test_helm_test_hook_is_restricted() -> None:
    job = find(render(), "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # The test pod gets the CA only, never the serving key.
    items = job["spec"]["template"]["spec"]["volumes"][0]["secret"]["items"]
    assert items == [{"key": "ca.crt", "path": "ca.crt"}]


def test_notes_print_the_next_commands() -> None:
    out = helm("install", "flaskops", str(CHART), "--dry-run=client", "-n", "flaskops-system")
    assert out.returncode == 0, out.stderr
    notes = out.stdout.split("NOTES:", 1)[1]
    assert "kubectl apply -f examples/flaskapp.yaml" in notes
    assert "kubectl wait --for=condition=Ready flaskapp/guestbook" in notes


# checkov pins packaging<24 and (through botocore) python-dateutil<3, which clash with pytest and the
# kubernetes client in .venv: it lives in its own virtual environment, made once, in the testbed cache.
CHECKOV_VERSION = "3.3.30"


@pytest.fixture(scope="session")
def checkov() -> list[str]:
    from flaskops_testbed import paths

    venv = paths.cache_dir() / "tools" / f"checkov-{CHECKOV_VERSION}"
    python = venv / "bin" / "python"
    if not python.exists():
        tmp = venv.with_name(venv.name + f".tmp{uuid.uuid4().hex[:6]}")
        subprocess.run([sys.executable, "-m", "venv", str(tmp)], check=True)
        subprocess.run(
            [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", f"checkov=={CHECKOV_VERSION}"],
            check=True,
            timeout=900,
        )
        try:
            tmp.rename(venv)  # atomic: a concurrent session may have won, then use its copy
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return [str(python), "-m", "checkov.main"]


def test_policy_scan(checkov: list[str], tmp_path: Path) -> None:
    """checkov passes on every rendered variant; skipped checks are listed with reasons in .checkov.yaml."""
    for variant, args in VARIANTS.items():
        (tmp_path / f"{variant}.yaml").write_text(yaml.safe_dump_all(render(*args)))
    out = subprocess.run(
        [
            *checkov,
            "--directory",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--config-file",
            str(CHART / ".checkov.yaml"),
            "--compact",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-6000:]
    assert "Failed checks: 0" in out.stdout
    skipped = yaml.safe_load((CHART / ".checkov.yaml").read_text())["skip-check"]
    reasons = (CHART / ".checkov.yaml").read_text()
    for check in skipped:
        # Each exception is preceded by a comment that says why.
        assert re.search(rf"#[^\n]*\n(?:\s*#[^\n]*\n)*\s*- {check}\n", reasons), check


def test_operator_is_highly_available_by_default() -> None:
    """Two pods serving the webhook, rolled one at a time, spread over nodes, guarded by a budget; the
    Lease (in the release namespace, the only coordination.k8s.io rights) decides who reconciles."""
    docs = render()
    dep = find(docs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    selector = dep["spec"]["selector"]["matchLabels"]
    (term,) = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"] == {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": selector},
    }
    pdb = find(docs, "PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    env = {e["name"]: e for e in operator_container(docs)["env"]}
    assert env["FLASKOPS_LEADER_ELECTION"]["value"] == "true"
    assert env["FLASKOPS_LEASE_NAME"]["value"] == dep["metadata"]["name"]
    assert env["FLASKOPS_LEASE_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    for args in ((), ("--set", "operator.watchNamespace=shop")):
        lease_roles = [
            d
            for d in render(*args)
            if d["kind"] == "Role" and any("coordination.k8s.io" in r["apiGroups"] for r in d["rules"])
        ]
        assert [(r["metadata"]["namespace"], r["rules"]) for r in lease_roles] == [
            (
                dep["metadata"]["namespace"],
                [
                    {
                        "apiGroups": ["coordination.k8s.io"],
                        "resources": ["leases"],
                        "verbs": ["get", "create", "update"],
                    }
                ],
            )
        ]

    # One replica: no budget (it would block every drain); an explicit affinity replaces the default.
    single = render("--set", "operator.replicas=1")
    assert not [d for d in single if d["kind"] == "PodDisruptionBudget"]
    mine = find(render("--set", "operator.affinity.nodeAffinity.x=y"), "Deployment")
    assert mine["spec"]["template"]["spec"]["affinity"] == {"nodeAffinity": {"x": "y"}}

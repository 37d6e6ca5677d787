"""The children the operator builds, on plain data."""

import copy

from flaskops import manifests, names
from flaskops.spec import parse_flaskapp

BASE = {
    "metadata": {"name": "guestbook", "namespace": "shop", "uid": "u-1", "generation": 1},
    "spec": {
        "environment": "production",
        "image": "reg/guestbook:1",
        "database": {"server": "main"},
        "gunicorn": {"workers": 3, "threads": 2, "timeout": 40, "gracefulTimeout": 20, "maxRequests": 500},
        "env": [{"name": "FEATURE", "value": "on"}],
    },
}


def app(**spec_changes):
    body = copy.deepcopy(BASE)
    body["spec"].update(spec_changes)
    return parse_flaskapp(body)


def env_map(container):
    return {e["name"]: e for e in container["env"]}


def test_migration_job_is_restricted_and_reads_the_secrets():
    job = manifests.migration_job(app())
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert job["metadata"]["name"].startswith("guestbook-migrate-")
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["command"] == ["flask", "db", "upgrade"]
    assert container["image"] == "reg/guestbook:1"
    env = env_map(container)
    assert env["APP_ENV"]["value"] == "production"
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "guestbook-db", "key": "DATABASE_URL"}
    assert env["SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "guestbook-secret-key"
    assert env["FEATURE"]["value"] == "on"
    assert job["spec"]["backoffLimit"] == 0


def test_migration_hash_tracks_image_command_env_and_pod_labels_only():
    base = manifests.migration_job_name(app())
    assert manifests.migration_job_name(app()) == base
    assert manifests.migration_job_name(app(replicas=7)) == base
    assert manifests.migration_job_name(app(image="reg/guestbook:2")) != base
    assert manifests.migration_job_name(app(env=[])) != base
    assert manifests.migration_job_name(app(migrations={"command": ["alembic", "upgrade", "head"]})) != base
    assert manifests.migration_job_name(app(migrations={"podLabels": {"x": "y"}})) != base
    assert manifests.migration_job_name(app(), retry="1") != base


def test_existing_secret_feeds_database_url():
    a = app(database={"existingSecret": {"name": "legacy", "key": "URL"}})
    env = env_map(manifests.migration_job(a)["spec"]["template"]["spec"]["containers"][0])
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "legacy", "key": "URL"}


def test_deployment_runs_gunicorn_from_the_spec():
    dep = manifests.deployment(app(), "reg/guestbook:0", "sum-1")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "reg/guestbook:0"  # the image passed in (the migrated one), not spec.image
    cmd = c["command"]
    assert cmd[0] == "gunicorn" and cmd[-1] == "wsgi:app"
    assert cmd[cmd.index("--workers") + 1] == "3"
    assert cmd[cmd.index("--threads") + 1] == "2"
    assert cmd[cmd.index("--graceful-timeout") + 1] == "20"
    assert cmd[cmd.index("--bind") + 1] == "0.0.0.0:8000"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert c["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["terminationGracePeriodSeconds"] > 20
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations[names.ANNOTATION_SECRETS_CHECKSUM] == "sum-1"
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert (
        dep["spec"]["selector"]["matchLabels"].items()
        <= dep["spec"]["template"]["metadata"]["labels"].items()
    )


def test_user_pod_labels_cannot_override_the_selector():
    a = app(podLabels={names.LABEL_APP: "hijack", "team": "x"})
    labels = manifests.deployment(a, "i", "s")["spec"]["template"]["metadata"]["labels"]
    assert labels[names.LABEL_APP] == "guestbook"
    assert labels["team"] == "x"


def test_secrets_checksum_changes_with_data():
    one = manifests.secrets_checksum({"a": "1"}, {"SECRET_KEY": "k"})
    assert one == manifests.secrets_checksum({"a": "1"}, {"SECRET_KEY": "k"})
    assert one != manifests.secrets_checksum({"a": "1"}, {"SECRET_KEY": "rotated"})


def test_service_targets_the_named_port():
    svc = manifests.service(app())
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert svc["spec"]["selector"] == manifests.web_selector(app())


# --- scheduling pass-through, default spread, PodDisruptionBudget --------------------------------------------

SCHEDULING = {
    "nodeSelector": {"pool": "web"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}},
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []},
    },
    "priorityClassName": "business-critical",
}


def test_an_app_without_the_new_fields_keeps_its_hashes_from_before_they_existed():
    """Pinned values computed with the operator before scheduling fields existed: an operator upgrade must
    neither start a new migration Job nor change the Deployment it applied (no needless restarts)."""
    assert manifests.migration_job_name(app()) == "guestbook-migrate-caff067919"
    assert manifests.digest(manifests.legacy_deployment(app(), "reg/guestbook:1", "abc")) == "a0f615efe8"
    pod = manifests.deployment(app(), "reg/guestbook:1", "abc", default_spread=False)["spec"]["template"][
        "spec"
    ]
    assert not {
        "nodeSelector",
        "tolerations",
        "affinity",
        "priorityClassName",
        "topologySpreadConstraints",
    } & set(pod)


def test_scheduling_fields_reach_both_pod_templates():
    a = app(**SCHEDULING)
    web = manifests.deployment(a, a.image, "x")["spec"]["template"]["spec"]
    job = manifests.migration_job(a)["spec"]["template"]["spec"]
    for pod in (web, job):
        assert pod["nodeSelector"] == {"pool": "web"}
        assert pod["tolerations"] == SCHEDULING["tolerations"]
        assert pod["priorityClassName"] == "business-critical"
    assert web["affinity"] == SCHEDULING["affinity"]
    # The one-off Job pod gets where it may run, not the web pods' (anti-)affinity among themselves.
    assert job["affinity"] == {"nodeAffinity": SCHEDULING["affinity"]["nodeAffinity"]}
    assert "topologySpreadConstraints" not in job
    assert manifests.migration_job_name(a) != manifests.migration_job_name(app())


def test_default_spread_is_by_host_and_zone_and_overridable():
    web = manifests.deployment(app(), "i", "x")["spec"]["template"]["spec"]
    spread = web["topologySpreadConstraints"]
    assert [t["topologyKey"] for t in spread] == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    assert {t["whenUnsatisfiable"] for t in spread} == {"ScheduleAnyway"}
    assert all(t["labelSelector"]["matchLabels"] == manifests.web_selector(app()) for t in spread)
    mine = [{"maxSkew": 2, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule"}]
    assert (
        manifests.deployment(app(topologySpreadConstraints=mine), "i", "x")["spec"]["template"]["spec"][
            "topologySpreadConstraints"
        ]
        == mine
    )
    off = manifests.deployment(app(topologySpreadConstraints=[]), "i", "x")["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in off


def test_base_template_hash_ignores_only_the_default_spread():
    def base(a, checksum="x"):
        return manifests.deployment(a, a.image, checksum)["metadata"]["annotations"][
            names.ANNOTATION_BASE_TEMPLATE
        ]

    assert base(app()) == manifests.digest(
        manifests.deployment(app(), "reg/guestbook:1", "x", default_spread=False)["spec"]["template"]
    )
    assert base(app(replicas=9)) == base(app())
    assert base(app(image="reg/guestbook:2")) != base(app())
    assert base(app(), checksum="y") != base(app())


def test_pod_disruption_budget_allows_one_eviction_of_the_web_pods():
    pdb = manifests.pod_disruption_budget(app())
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["metadata"]["name"] == "guestbook"
    assert pdb["metadata"]["ownerReferences"] == [manifests.owner_reference(app())]
    assert pdb["metadata"]["labels"] == manifests.labels(app(), "web")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["selector"] == {"matchLabels": manifests.web_selector(app())}
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def _as_applied(body):
    """A Deployment as the API returns it after the operator applied `body`."""
    from flaskops.steps import children

    out = copy.deepcopy(body)
    out["metadata"].setdefault("annotations", {})[children.APPLIED_HASH] = manifests.digest(body)
    return out


def test_an_upgrade_alone_keeps_a_deployment_without_spread_until_its_pods_roll_anyway():
    from flaskops.steps.rollout import desired_deployment

    a = app()
    legacy = _as_applied(manifests.legacy_deployment(a, a.image, "x"))
    kept = desired_deployment(a, "x", legacy)
    # Same pod template (no restart): only the Deployment's own annotation is new.
    assert kept["spec"]["template"] == legacy["spec"]["template"]
    # Once annotated, still kept, as long as the template would not change otherwise; scaling too.
    annotated = _as_applied(kept)
    assert (
        desired_deployment(app(replicas=5), "x", annotated)["spec"]["template"] == legacy["spec"]["template"]
    )
    # A real change (new Secret data, new image) rolls the pods anyway: the default spread comes with it.
    rolled = desired_deployment(a, "y", annotated)["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" in rolled
    assert "topologySpreadConstraints" in desired_deployment(a, "y", legacy)["spec"]["template"]["spec"]
    # New Deployments and those already spread get the default at once.
    assert "topologySpreadConstraints" in desired_deployment(a, "x", None)["spec"]["template"]["spec"]
    spread = _as_applied(manifests.deployment(a, a.image, "x"))
    assert desired_deployment(a, "x", spread) == manifests.deployment(a, a.image, "x")


# --- the statement timeout below Gunicorn's worker timeout (issue 11, item 10) ---------------------------


def web_env(a):
    return env_map(manifests.deployment(a, "i", "s")["spec"]["template"]["spec"]["containers"][0])


def gunicorn(timeout, graceful=None):
    return {"workers": 1, "threads": 1, "timeout": timeout, "gracefulTimeout": graceful or min(timeout, 25)}


def test_a_short_worker_timeout_gets_a_statement_timeout_below_it():
    for timeout, expected in ((5, "4000"), (15, "14000"), (2, "1000"), (1, "500")):
        env = web_env(app(gunicorn=gunicorn(timeout)))
        assert env[manifests.STATEMENT_TIMEOUT_VAR] == {"name": "DB_STATEMENT_TIMEOUT_MS", "value": expected}
        assert int(expected) < timeout * 1000


def test_the_apps_default_is_left_alone_when_already_below_the_worker_timeout():
    # No new variable, so the pod template of an existing app with the default 30 s does not change.
    for timeout in (16, 30, 40, 3600):
        assert manifests.STATEMENT_TIMEOUT_VAR not in web_env(app(gunicorn=gunicorn(timeout)))
    assert manifests.STATEMENT_TIMEOUT_VAR not in web_env(parse_flaskapp({**BASE, "spec": {**BASE["spec"]}}))


def test_the_users_own_statement_timeout_wins_and_the_migration_is_untouched():
    a = app(gunicorn=gunicorn(5), env=[{"name": "DB_STATEMENT_TIMEOUT_MS", "value": "2500"}])
    (entry,) = [
        e
        for e in manifests.deployment(a, "i", "s")["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "DB_STATEMENT_TIMEOUT_MS"
    ]
    assert entry["value"] == "2500"
    # The migration lifts the statement timeout itself: its Job (and so its hash) never gets the variable.
    short = app(gunicorn=gunicorn(5))
    assert "DB_STATEMENT_TIMEOUT_MS" not in env_map(
        manifests.migration_job(short)["spec"]["template"]["spec"]["containers"][0]
    )
    assert manifests.migration_hash(short) == manifests.migration_hash(app(gunicorn=gunicorn(30)))


def test_a_contradicting_statement_timeout_is_named_with_both_fields():
    def conflict(value, timeout=5):
        return manifests.statement_timeout_conflict(
            app(gunicorn=gunicorn(timeout), env=[{"name": "DB_STATEMENT_TIMEOUT_MS", "value": value}])
        )

    message = conflict("15000")
    assert message and "DB_STATEMENT_TIMEOUT_MS=15000" in message and "spec.gunicorn.timeout=5" in message
    assert conflict("5000") is not None  # equal is too late: the worker dies as the statement is cancelled
    assert "the app's default, 15000" in (conflict("") or "")  # empty: the app falls back to 15 s
    for fine in ("4999", "0", "soon"):  # below; none from the app; the app itself refuses a non-number
        assert conflict(fine) is None
    valued_from = app(
        gunicorn=gunicorn(5),
        env=[
            {"name": "DB_STATEMENT_TIMEOUT_MS", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}
        ],
    )
    assert manifests.statement_timeout_conflict(valued_from) is None
    container = manifests.deployment(valued_from, "i", "s")["spec"]["template"]["spec"]["containers"][0]
    ours = [e for e in container["env"] if e["name"] == manifests.STATEMENT_TIMEOUT_VAR]
    assert ours == [valued_from.env[0]]  # the user's reference, and no second value beside it


def test_the_apps_default_statement_timeout_is_the_one_the_operator_assumes():
    from guestbook.config import load_config

    config = load_config("testing", {"SECRET_KEY": "k", "DATABASE_URL": "postgresql://u@h/guestbook_test"})
    assert config.DB_STATEMENT_TIMEOUT_MS == manifests.APP_STATEMENT_TIMEOUT_MS

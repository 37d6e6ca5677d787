"""`kubectl flaskops`: the pure parts (rendering, tokens, names shared with the operator). The commands
themselves run against the real API server as a namespace user in tests/e2e/test_cli_plugin.py."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from flaskops import cli, manifests, names
from flaskops.spec import parse_flaskapp
from flaskops.steps import migrate

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)

APP: dict[str, Any] = {
    "metadata": {"name": "guestbook", "namespace": "shop", "generation": 3, "uid": "u-1"},
    "spec": {
        "environment": "production",
        "image": "reg/guestbook:2",
        "database": {"server": "main"},
        "secretKey": {"rotation": "2026-11"},
    },
    "status": {
        "observedGeneration": 3,
        "desiredImage": "reg/guestbook:2",
        "migratedImage": "reg/guestbook:1",
        "servingImage": "reg/guestbook:1",
        "migration": {
            "jobName": "guestbook-migrate-0123456789",
            "image": "reg/guestbook:2",
            "outcome": "Failed",
            "startedAt": "2026-11-29T11:50:00Z",
            "completedAt": "2026-11-29T11:55:00Z",
        },
        "database": {
            "secretName": "guestbook-db",
            "host": "pg.internal",
            "port": 5432,
            "name": "guestbook_prod",
            "user": "guestbook_prod",
        },
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "MigrationFailed",
                "message": "Job 'guestbook-migrate-0123456789' failed",
                "lastTransitionTime": "2026-11-29T11:55:00Z",
            },
            {
                "type": "Migrated",
                "status": "False",
                "reason": "MigrationFailed",
                "message": "Job 'guestbook-migrate-0123456789' failed",
                "lastTransitionTime": "2026-11-29T11:55:00Z",
            },
        ],
    },
}


def test_status_page_names_what_the_next_command_needs() -> None:
    rep = cli.AppReport(
        app=APP,
        job={"metadata": {"name": "guestbook-migrate-0123456789"}},
        pod={"metadata": {"name": "guestbook-migrate-0123456789-abcde"}, "status": {"phase": "Failed"}},
        log_lines=["INFO  [alembic] Running upgrade 0001 -> 0002", "ERROR boom"],
    )
    page = cli.render_status(rep, NOW)
    for text in (
        "FlaskApp shop/guestbook",
        "desired   reg/guestbook:2",
        "migrated  reg/guestbook:1",
        "serving   reg/guestbook:1",
        "MigrationFailed",
        "5m",  # the conditions' age
        "guestbook-migrate-0123456789-abcde (Failed)",
        "ERROR boom",
        "PostgresServer main",
        "guestbook-db",
        "guestbook-secret-key",
        "'2026-11'",
        "none yet",  # no Deployment
    ):
        assert text in page, f"{text!r} missing from:\n{page}"


def test_status_page_of_an_unreconciled_app_and_unavailable_log() -> None:
    app = copy.deepcopy(APP)
    app["status"] = {"migration": APP["status"]["migration"]}
    app["spec"]["database"] = {"existingSecret": {"name": "legacy-db"}}
    app["spec"]["secretKey"] = {"secretRef": {"name": "my-key"}}
    page = cli.render_status(cli.AppReport(app=app, log_error="cannot read the log: 502 Bad Gateway"), NOW)
    assert "the operator has not reconciled this app" in page
    assert "your Secret legacy-db, key DATABASE_URL" in page
    assert "your Secret my-key, key SECRET_KEY" in page
    assert "(deleted)" in page  # status names a Job that is gone
    assert "unavailable: cannot read the log: 502 Bad Gateway" in page


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("2026-11-29T11:59:15Z", "45s"),
        ("2026-11-29T11:48:00Z", "12m"),
        ("2026-11-29T09:00:00Z", "3h"),
        ("2026-11-24T12:00:00Z", "5d"),
        (None, "-"),
    ],
)
def test_age_reads_like_kubectl(since: str | None, expected: str) -> None:
    assert cli.age(since, NOW) == expected


def test_token_fits_the_rotation_field() -> None:
    # spec.secretKey.rotation has maxLength 63; annotation values have no such bound but stay short too.
    assert cli.token(NOW) == "20261129T120000Z"
    assert len(cli.token(NOW)) <= 63


def test_names_shared_with_the_operator_do_not_drift() -> None:
    assert cli.RETRY_MIGRATION == migrate.RETRY_MIGRATION
    app = parse_flaskapp(APP)
    job_pod = manifests.migration_job(app)["spec"]["template"]["spec"]
    assert [c["name"] for c in job_pod["containers"]] == ["migrate"]
    web_pod = manifests.deployment(app, app.image, "x")["spec"]["template"]
    assert [c["name"] for c in web_pod["spec"]["containers"]] == ["web"]
    assert web_pod["metadata"]["labels"][names.LABEL_COMPONENT] == "web"


def test_newest_pod_wins() -> None:
    pods = [
        {"metadata": {"name": "a", "creationTimestamp": "2026-11-29T11:00:00Z"}},
        {"metadata": {"name": "b", "creationTimestamp": "2026-11-29T11:05:00Z"}},
    ]
    assert cli.newest(pods) == pods[1]
    assert cli.newest([]) is None


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["status"])
    assert exc.value.code == 2
    assert "name" in capsys.readouterr().err


def test_missing_kubeconfig_is_one_line(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--kubeconfig", str(tmp_path / "nope"), "status", "x"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no usable kubeconfig") and err.count("\n") == 1


def test_api_errors_are_one_line_with_the_servers_message() -> None:
    exc = cli.ApiException(status=400, reason="Bad Request")
    exc.body = '{"kind": "Status", "message": "pod has no running container"}'
    assert cli._api_error(exc, "read the log") == (
        "cannot read the log: 400 Bad Request: pod has no running container"
    )
    assert "forbidden to patch" in cli._api_error(cli.ApiException(status=403), "patch x")
    assert (
        cli._api_error(cli.ApiException(status=502, reason="Bad Gateway"), "x") == "cannot x: 502 Bad Gateway"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["-n", "shop", "status", "web"],
        ["status", "web", "-n", "shop"],
        ["status", "-n", "shop", "web"],
        ["--namespace", "shop", "status", "web", "--log-lines", "3"],
    ],
)
def test_namespace_flag_goes_anywhere_as_with_kubectl(argv: list[str]) -> None:
    args = cli.parser().parse_args(argv)
    assert (args.command, args.name, args.namespace) == ("status", "web", "shop")


def test_flags_default_to_the_kubeconfig() -> None:
    args = cli.parser().parse_args(["logs", "web", "--migration"])
    assert not hasattr(args, "namespace") and not hasattr(args, "context") and args.migration

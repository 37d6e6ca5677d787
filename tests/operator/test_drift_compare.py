"""drift.differences: what counts as someone's change to a child (plain data, no cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from flaskops import drift, manifests
from flaskops.spec import parse_flaskapp


def _app() -> Any:
    return parse_flaskapp(
        {
            "metadata": {"name": "shop", "namespace": "ns", "uid": "u-1", "generation": 1},
            "spec": {
                "image": "shop:1",
                "environment": "testing",
                "database": {"server": "main"},
                "resources": {"requests": {"cpu": "0.5", "memory": "128Mi"}},
            },
        }
    )


def test_an_untouched_child_with_server_defaults_is_no_drift() -> None:
    desired = manifests.deployment(_app(), "shop:1", "abc")
    live = _as_stored(desired)
    assert drift.differences(desired, live) == []


def test_an_edited_image_or_replica_count_is_drift() -> None:
    desired = manifests.deployment(_app(), "shop:1", "abc")
    live = _as_stored(desired)
    live["spec"]["replicas"] = 7
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    assert drift.differences(desired, live) == ["spec.replicas", "spec.template.spec.containers[0].image"]


def test_a_removed_label_env_var_or_owner_is_drift() -> None:
    desired = manifests.deployment(_app(), "shop:1", "abc")
    live = _as_stored(desired)
    del live["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    live["spec"]["template"]["spec"]["containers"][0]["env"].pop()
    live["metadata"]["ownerReferences"] = []
    assert drift.differences(desired, live) == [
        "metadata.labels.app.kubernetes.io/managed-by",
        "metadata.ownerReferences",
        "spec.template.spec.containers[0].env",
    ]


def test_a_deleted_child_is_drift() -> None:
    assert drift.differences(manifests.service(_app()), None) == [""]


@pytest.mark.parametrize(("want", "have"), [("0.5", "500m"), ("1", "1000m"), ("1Gi", "1024Mi"), (2, "2")])
def test_quantities_written_another_way_are_the_same(want: Any, have: str) -> None:
    assert (
        drift.differences({"resources": {"limits": {"cpu": want}}}, {"resources": {"limits": {"cpu": have}}})
        == []
    )


def test_a_quantity_outside_resources_compares_as_text() -> None:
    assert drift.differences({"data": {"x": "0.5"}}, {"data": {"x": "500m"}}) == ["data.x"]


@pytest.mark.parametrize("empty", ["", 0, False, {}, [], None])
def test_an_empty_value_the_server_omits_is_no_drift(empty: Any) -> None:
    assert drift.differences({"spec": {"x": empty}}, {"spec": {}}) == []


def test_an_edited_secret_value_is_drift() -> None:
    desired = manifests.secret(_app(), "shop-db", "db-credentials", {"host": "pg", "password": "p"})
    live = _as_stored(desired)
    live["data"]["host"] = "ZXZpbA=="
    assert drift.differences(desired, live) == ["data.host"]


def _as_stored(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` as a GET returns it: the same fields plus what the API server adds (defaults, metadata)."""
    import copy

    live = copy.deepcopy(obj)
    live["metadata"].update(
        uid="x", resourceVersion="9", generation=3, managedFields=[{"manager": "flaskops"}]
    )
    live.setdefault("status", {})["observedGeneration"] = 3
    spec = live.get("spec") or {}
    if "template" in spec:
        spec.setdefault("progressDeadlineSeconds", 600)
        pod = spec["template"]["spec"]
        pod.setdefault("dnsPolicy", "ClusterFirst")
        for container in pod["containers"]:
            container["terminationMessagePath"] = "/dev/termination-log"
            container["imagePullPolicy"] = container.get("imagePullPolicy", "IfNotPresent")
            res = container.get("resources") or {}
            if (res.get("requests") or {}).get("cpu") == "0.5":
                res["requests"]["cpu"] = "500m"
    return live

"""Rotating the generated SECRET_KEY (fast, on FakeKube): a new value of spec.secretKey.rotation makes a new
key, keeps the old ones as SECRET_KEY_FALLBACKS (the two most recent) and rolls the pods."""

from __future__ import annotations

import pytest

from flaskops import names
from flaskops.steps.secretkey import MAX_FALLBACKS
from tests.operator.behaviour_support import APP, NS, edit_spec, new_app, reconcile, settle
from tests.operator.fake_kube import FakeKube

SECRET = names.secret_key_secret_name(APP)


@pytest.fixture
def kube() -> FakeKube:
    kube = FakeKube(namespaces=[NS])
    new_app(kube)
    settle(kube)
    return kube


def _keys(kube: FakeKube) -> tuple[str, list[str]]:
    data = kube.read_secret_data(NS, SECRET)
    assert data is not None
    return data[names.SECRET_KEY], [k for k in data[names.SECRET_KEY_FALLBACKS].split(",") if k]


def _checksum(kube: FakeKube) -> str:
    dep = kube.get("Deployment", NS, APP)
    assert dep is not None
    return str(dep["spec"]["template"]["metadata"]["annotations"][names.ANNOTATION_SECRETS_CHECKSUM])


def _rotate(kube: FakeKube, value: str) -> list[str]:
    edit_spec(kube, {"secretKey": {"rotation": value}})
    return [e.reason for e in reconcile(kube).events]


def test_a_rotation_makes_a_new_key_keeps_the_old_one_and_rolls_the_pods(kube: FakeKube) -> None:
    first, fallbacks = _keys(kube)
    assert fallbacks == []
    checksum = _checksum(kube)
    assert "SecretKeyRotated" in _rotate(kube, "2026-01-01")
    key, fallbacks = _keys(kube)
    assert key != first and fallbacks == [first]
    assert _checksum(kube) != checksum  # the pod template changed: the pods roll to the new key


def test_at_most_two_old_keys_are_kept_newest_first(kube: FakeKube) -> None:
    seen = [_keys(kube)[0]]
    for value in ("r1", "r2", "r3"):
        _rotate(kube, value)
        seen.append(_keys(kube)[0])
    key, fallbacks = _keys(kube)
    assert MAX_FALLBACKS == 2
    assert key == seen[-1] and fallbacks == [seen[-2], seen[-3]]  # seen[0] is gone


def test_the_same_rotation_value_or_removing_it_does_not_rotate(kube: FakeKube) -> None:
    _rotate(kube, "r1")
    after = _keys(kube)
    assert "SecretKeyRotated" not in [e.reason for e in reconcile(kube).events]
    assert _keys(kube) == after
    edit_spec(kube, {"secretKey": {"rotation": None}})
    reconcile(kube)
    assert _keys(kube) == after
    # ...and setting the value it had before the removal again is no new rotation either.
    assert "SecretKeyRotated" not in _rotate(kube, "r1")
    assert _keys(kube) == after


def test_an_app_created_with_a_rotation_value_starts_without_fallbacks() -> None:
    kube = FakeKube(namespaces=[NS])
    new_app(kube, secretKey={"rotation": "from-the-start"})
    result = settle(kube)
    assert _keys(kube)[1] == []
    assert "SecretKeyRotated" not in [e["reason"] for e in kube.list("Event", NS)]
    assert result.ready

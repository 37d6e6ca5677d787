"""The server-side apply body: JSON the API server's YAML parser reads back to exactly the same object."""

import json

from hypothesis import given
from hypothesis import strategies as st

from flaskops.kube import apply_payload

# What a user may put in spec.env values or annotations, from ASCII to emoji and control characters.
values = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)


@given(values)
def test_apply_payload_is_the_same_json_without_surrogate_escapes_or_raw_controls(value):
    body = {"kind": "Deployment", "metadata": {"annotations": {"a": value}}, "env": [{"value": value}]}
    payload = apply_payload(body)
    assert json.loads(payload) == body
    text = payload.decode()
    # The API server's YAML parser refuses UTF-16 surrogate escapes ("invalid Unicode character escape code").
    assert "\\ud8" not in text.lower() and "\\udc" not in text.lower()
    assert not any(0x7F <= ord(ch) <= 0x9F or ch in "\u2028\u2029\ufffe\uffff" for ch in text)


def test_emoji_is_written_as_utf8():
    assert apply_payload({"v": "deploy \U0001f680"}) == '{"v": "deploy \U0001f680"}'.encode()


def test_merge_patch_diff_removes_what_the_new_status_lacks() -> None:
    from flaskops.kube import merge_patch_diff

    old = {"migration": {"jobName": "a", "completedAt": "t1", "outcome": "Succeeded"}, "replicas": 2, "x": 1}
    new = {
        "migration": {"jobName": "b", "outcome": "Running"},
        "replicas": 2,
        "conditions": [{"type": "Ready"}],
    }
    patch = merge_patch_diff(old, new)
    assert patch == {
        "x": None,
        "migration": {"completedAt": None, "jobName": "b", "outcome": "Running"},
        "conditions": [{"type": "Ready"}],
    }
    assert merge_patch_diff(new, new) == {}

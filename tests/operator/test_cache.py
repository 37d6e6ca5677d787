"""The operator's cache: compact views, its own writes over the watch's, and which children are verified."""

from flaskops import names
from flaskops.cache import CONTENT, CachedClient, ObjectCache, content_digest, view
from flaskops.migrations import view as job_view
from flaskops.rollout import view as rollout_view


def deployment(rv: str, image: str = "shop:1", replicas: int = 2, **extra_meta):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "shop",
            "namespace": "team",
            "uid": "u1",
            "resourceVersion": rv,
            "generation": 3,
            "labels": {names.LABEL_APP: "shop"},
            "annotations": {
                "flaskops.dev/applied-hash": "abc",
                "deployment.kubernetes.io/revision": "7",
                "kubectl.kubernetes.io/last-applied-configuration": "x" * 5000,
            },
            "managedFields": [{"manager": "flaskops", "fieldsV1": {"f:spec": {"x": "y" * 5000}}}],
            **extra_meta,
        },
        "spec": {
            "replicas": replicas,
            "template": {
                "spec": {"containers": [{"image": image, "env": [{"name": "A", "value": "b" * 3000}]}]}
            },
        },
        "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2},
    }


def index(*views):
    """A kopf index as the cache reads it: key -> store of views."""
    out: dict = {}
    for v in views:
        out.setdefault((v["metadata"]["namespace"], v["metadata"]["name"]), []).append(v)
    return out


def test_a_view_is_small_and_reads_like_the_object():
    full = deployment("10")
    small = view("Deployment", full)
    assert len(repr(small)) < len(repr(full)) / 5
    assert rollout_view(small) == rollout_view(full)
    # Only the operator's own annotations are kept (the controller's revision is not content).
    assert small["metadata"]["annotations"] == {"flaskops.dev/applied-hash": "abc"}


def test_the_content_digest_ignores_status_and_other_writers_annotations_but_not_spec_or_labels():
    base = content_digest(deployment("1"))
    moved = deployment("2")
    moved["status"]["replicas"] = 1
    moved["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "8"
    assert content_digest(moved) == base
    assert content_digest(deployment("3", image="shop:2")) != base
    relabelled = deployment("4")
    relabelled["metadata"]["labels"] = {}
    assert content_digest(relabelled) != base


def test_own_write_is_served_until_the_watch_catches_up():
    store = index(view("Deployment", deployment("10")))
    cache = ObjectCache()
    cache.attach("Deployment", store)
    cache.wrote(deployment("12", image="shop:2"))
    assert rollout_view(cache.get("Deployment", "team", "shop")).image == "shop:2"
    # The watch delivers an older version (its echo is still in flight): the write stays.
    store[("team", "shop")] = [view("Deployment", deployment("11"))]
    assert rollout_view(cache.get("Deployment", "team", "shop")).image == "shop:2"
    # The watch passes it (someone edited after us): the watch's wins and the overlay is gone.
    store[("team", "shop")] = [view("Deployment", deployment("13", image="shop:3"))]
    assert rollout_view(cache.get("Deployment", "team", "shop")).image == "shop:3"
    assert cache.sizes()["overlay"] == 0


def test_own_deletion_hides_the_object_until_the_watch_removes_it():
    store = index(view("Deployment", deployment("10")))
    cache = ObjectCache()
    cache.attach("Deployment", store)
    cache.deleted("Deployment", "team", "shop", cache.get("Deployment", "team", "shop"))
    assert cache.get("Deployment", "team", "shop") is None
    store.clear()
    assert cache.get("Deployment", "team", "shop") is None


def test_a_watched_deletion_retires_what_the_operator_wrote_of_the_object():
    store = index(view("Deployment", deployment("10")))
    cache = ObjectCache()
    cache.attach("Deployment", store)
    # Its own deletion: a tombstone until the watch's DELETED event (a final, newer version) arrives.
    cache.deleted("Deployment", "team", "shop", cache.get("Deployment", "team", "shop"))
    store.clear()
    cache.watched_deletion("Deployment", "team", "shop", deployment("11"))
    # A write, then someone else deletes the object.
    cache.wrote(deployment("20", name="web"))
    cache.verify(deployment("20", name="web"), "want")
    cache.watched_deletion("Deployment", "team", "web", deployment("21", name="web"))
    assert cache.sizes() == {"overlay": 0, "verified": 0}
    # A re-creation written after the deletion the watch reports late is kept.
    cache.wrote(deployment("31", name="again"))
    cache.watched_deletion("Deployment", "team", "again", deployment("30", name="again"))
    assert rollout_view(cache.get("Deployment", "team", "again")).image == "shop:1"
    assert cache.sizes()["overlay"] == 1


def test_verified_only_while_the_content_is_unchanged():
    store = index(view("Deployment", deployment("10")))
    cache = ObjectCache()
    cache.attach("Deployment", store)
    current = cache.get("Deployment", "team", "shop")
    assert not cache.verified(current, "want")
    cache.verify(deployment("10"), "want")
    assert cache.verified(cache.get("Deployment", "team", "shop"), "want")
    assert not cache.verified(cache.get("Deployment", "team", "shop"), "other")
    # Someone scales the Deployment by hand: its content changed, so it is compared again.
    store[("team", "shop")] = [view("Deployment", deployment("11", replicas=5))]
    assert not cache.verified(cache.get("Deployment", "team", "shop"), "want")


def test_jobs_of_an_app_from_the_index_and_own_creations():
    def job(name, rv, app="shop", complete=False):
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": "team",
                "resourceVersion": rv,
                "labels": {names.LABEL_APP: app},
            },
            "spec": {"template": {"spec": {"containers": [{"image": "shop:1"}]}}},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]} if complete else {},
        }

    store = {("team", "shop"): [view("Job", job("shop-migrate-a", "5", complete=True))]}
    cache = ObjectCache()
    cache.attach("Job", store)
    cache.wrote(job("shop-migrate-b", "9"))
    cache.wrote(job("other-migrate-c", "9", app="other"))
    jobs = cache.jobs("team", "shop")
    assert [j["metadata"]["name"] for j in jobs] == ["shop-migrate-a", "shop-migrate-b"]
    assert job_view(jobs[0]).outcome == "Succeeded"
    cache.forget_app("team", "shop")
    assert [j["metadata"]["name"] for j in cache.jobs("team", "shop")] == ["shop-migrate-a"]


class Recorder:
    """The API side of CachedClient: answers writes as the API server would, counts reads."""

    def __init__(self) -> None:
        self.reads = 0

    def get(self, kind, namespace, name):
        self.reads += 1
        return None

    def apply(self, body):
        return {**body, "metadata": {**body["metadata"], "resourceVersion": "20"}}

    def read_secret_data(self, namespace, name):
        self.reads += 1
        return {"password": "admin"}


def test_cached_client_reads_from_memory_writes_through_and_reads_unowned_secrets_from_the_api():
    api = Recorder()
    cache = ObjectCache()
    cache.attach("Deployment", {})
    cache.attach("Secret", {})
    client = CachedClient(api, cache)
    assert client.get("Deployment", "team", "shop") is None and api.reads == 0
    client.apply(deployment("0"))
    assert client.get("Deployment", "team", "shop")["metadata"]["resourceVersion"] == "20"
    assert api.reads == 0
    # An admin Secret is not the operator's: the label-selected watch never sees it.
    assert client.read_secret_data("flaskops-system", "pg-admin") == {"password": "admin"}
    assert api.reads == 1
    assert CONTENT in client.get("Deployment", "team", "shop")


def test_event_lists_are_shared_between_reconciles_for_a_few_seconds():
    """Every stuck app reads its namespace's Warning Events; hundreds of them share one request."""

    class Lister:
        calls = 0

        def list(self, kind, namespace=None, selector=None, fields=None):
            Lister.calls += 1
            return [{"reason": "FailedScheduling"}]

    client = CachedClient(Lister(), ObjectCache())
    for _ in range(100):
        assert client.list("Event", "team", fields="type=Warning") == [{"reason": "FailedScheduling"}]
    assert Lister.calls == 1
    client.list("Event", "other", fields="type=Warning")
    assert Lister.calls == 2


def test_packed_views_read_back_the_same_and_the_watch_retires_own_writes():
    from flaskops.cache import pack

    full = deployment("10")
    assert len(pack("Deployment", full)) < len(repr(view("Deployment", full)))
    store = {("team", "shop"): [pack("Deployment", full)]}
    cache = ObjectCache()
    cache.attach("Deployment", store)
    assert cache.get("Deployment", "team", "shop") == view("Deployment", full)
    cache.wrote(deployment("12", image="shop:2"))
    assert cache.sizes()["overlay"] == 1
    cache.seen("Deployment", "team", "shop", "11")  # an older version: the write is still newer
    assert cache.sizes()["overlay"] == 1
    cache.seen("Deployment", "team", "shop", "12")  # its own echo
    assert cache.sizes()["overlay"] == 0


def test_a_packed_view_is_compressed_and_reads_back_whole():
    import json

    from flaskops.cache import pack, unpack

    full = deployment("10")
    packed = pack("Deployment", full)
    assert unpack(packed) == view("Deployment", full)
    # The index holds each child of 1000 apps: the preset dictionary's labels, owner reference and field
    # names must make the view a fraction of its JSON text.
    assert len(packed) * 2 < len(json.dumps(view("Deployment", full), separators=(",", ":")))


def test_shared_event_lists_keep_what_the_blockers_read_and_little_else():
    from flaskops import blockers
    from flaskops.cache import event_view

    def whole(name: str, reason: str, message: str, at: str, series: str | None = None) -> dict:
        ev = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{name}.1",
                "namespace": "team",
                "uid": "u",
                "resourceVersion": "9",
                "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {"f:count": {}}}],
            },
            "involvedObject": {
                "kind": "Pod",
                "namespace": "team",
                "name": name,
                "uid": "p",
                "fieldPath": "x",
            },
            "reason": reason,
            "message": message,
            "type": "Warning",
            "source": {"component": "kubelet"},
            "count": 3,
            "firstTimestamp": "2026-01-01T00:00:01Z",
            "lastTimestamp": at,
            "reportingComponent": "kubelet",
        }
        if series:
            ev["series"] = {"count": 4, "lastObservedTime": series}
        return ev

    events = [
        whole("shop-5d8f7c9b6-abcde", "Failed", "ErrImagePull", "2026-01-01T00:00:05Z"),
        whole(
            "shop-5d8f7c9b6-zzzzz",
            "BackOff",
            "Back-off pulling",
            "2026-01-01T00:00:02Z",
            "2026-01-01T00:00:09Z",
        ),
    ]
    views = [event_view(ev) for ev in events]
    since = "2026-01-01T00:00:00Z"
    assert blockers.for_replica_set(views, "shop-5d8f7c9b6", since) == blockers.for_replica_set(
        events, "shop-5d8f7c9b6", since
    )
    assert blockers.for_replica_set(views, "shop-5d8f7c9b6", since).reason == "BackOff"  # the series' time
    assert set(views[0]) == {"type", "reason", "message", "firstTimestamp", "lastTimestamp", "involvedObject"}
    assert views[0]["involvedObject"] == {"kind": "Pod", "name": "shop-5d8f7c9b6-abcde"}

"""The work queue's contract (client-go's workqueue semantics), with a controlled clock."""

import threading

from flaskops.runtime import Runtime, WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_adds_coalesce_while_queued():
    q = WorkQueue()
    q.add("a")
    q.add("a")
    q.add("b")
    assert q.get(timeout=0) == "a"
    assert q.get(timeout=0) == "b"
    assert q.get(timeout=0) is None


def drain(q: WorkQueue) -> list:
    out = []
    while (key := q.get(timeout=0)) is not None:
        out.append(key)
        q.done(key)
    return out


def test_namespaces_take_turns_and_each_keeps_its_order():
    q = WorkQueue()
    for i in range(4):
        q.add(("busy", f"app{i}"))
    q.add(("quiet", "one"))
    q.add(("other", "x"))
    q.add(("quiet", "two"))
    # The quiet namespaces' apps come second and third, not after all of busy's.
    assert drain(q) == [
        ("busy", "app0"),
        ("quiet", "one"),
        ("other", "x"),
        ("busy", "app1"),
        ("quiet", "two"),
        ("busy", "app2"),
        ("busy", "app3"),
    ]
    assert q.pending() == {"queued": 0, "processing": 0, "delayed": 0}


def test_a_namespace_that_emptied_queues_behind_those_waiting():
    q = WorkQueue()
    q.add(("a", "1"))
    q.add(("b", "1"))
    q.add(("b", "2"))
    assert q.get(timeout=0) == ("a", "1")
    q.done(("a", "1"))
    q.add(("a", "2"))  # a's group had emptied: it joins after b, which still waits
    assert drain(q) == [("b", "1"), ("a", "2"), ("b", "2")]


def test_a_custom_group_function_decides_the_turns():
    q = WorkQueue(group=lambda key: key[1])
    q.add(("n1", "g"))
    q.add(("n2", "g"))
    q.add(("n3", "h"))
    assert drain(q) == [("n1", "g"), ("n3", "h"), ("n2", "g")]


def test_an_add_while_processing_runs_once_more_after_done_never_concurrently():
    q = WorkQueue()
    q.add("a")
    assert q.get(timeout=0) == "a"
    q.add("a")
    q.add("a")
    assert q.get(timeout=0) is None  # not handed to a second worker while the first runs
    q.done("a")
    assert q.get(timeout=0) == "a"
    q.done("a")
    assert q.get(timeout=0) is None


def test_delayed_add_waits_for_its_time_and_an_earlier_one_wins():
    clock = Clock()
    q = WorkQueue(clock=clock)
    q.add_after("a", 15)
    q.add_after("a", 5)  # earlier wins
    q.add_after("a", 30)  # later is ignored
    assert q.get(timeout=0) is None
    clock.now += 5
    assert q.get(timeout=0) == "a"
    q.done("a")
    clock.now += 100
    assert q.get(timeout=0) is None  # the superseded 15 s and 30 s entries do not fire again


def test_a_direct_add_overtakes_a_pending_delayed_one():
    clock = Clock()
    q = WorkQueue(clock=clock)
    q.add_after("a", 10)
    q.add("a")
    assert q.get(timeout=0) == "a"
    q.done("a")
    clock.now += 10
    assert q.get(timeout=0) is None
    assert q.pending() == {"queued": 0, "processing": 0, "delayed": 0}


def test_a_delayed_add_while_processing_still_fires():
    """The recheck a reconcile asks for while another event re-queued it is never lost (the old timer
    registry lost it when the timer's own run armed the next one)."""
    clock = Clock()
    q = WorkQueue(clock=clock)
    q.add("a")
    assert q.get(timeout=0) == "a"
    q.add_after("a", 15)
    q.done("a")
    clock.now += 15
    assert q.get(timeout=0) == "a"


def test_runtime_retries_a_failed_run_and_requeues_when_asked():
    runs: list[str] = []
    failed_once = threading.Event()
    finished = threading.Event()

    def process(key: str) -> float | None:
        runs.append(key)
        if not failed_once.is_set():
            failed_once.set()
            raise RuntimeError("boom")
        finished.set()
        return None

    rt = Runtime(process, workers=2, retry_seconds=0.01, gate_limit=1, gate_wait_seconds=0.01)
    rt.start()
    try:
        rt.queue.add("k")
        assert finished.wait(5)
        assert runs == ["k", "k"]
    finally:
        rt.stop()


def test_gate_refuses_after_waiting_its_bound():
    rt = Runtime(lambda key: None, workers=1, retry_seconds=1, gate_limit=1, gate_wait_seconds=0.01)
    with rt.gate("pg"):
        try:
            with rt.gate("pg"):
                raise AssertionError("a second slot was granted")
        except TimeoutError as exc:
            assert "pg" in str(exc)
    with rt.gate("pg"):  # released
        pass


def test_a_queue_that_runs_dry_after_a_burst_releases_memory_once(monkeypatch):
    from flaskops import runtime

    trims: list[int] = []
    trimmed = threading.Event()

    def trim(pad: int) -> int:
        trims.append(pad)
        trimmed.set()
        return 1

    monkeypatch.setattr(runtime, "_TRIM", trim)
    gate = threading.Event()
    last = threading.Event()

    def process(key: object) -> None:
        gate.wait(5)
        if key == "one more":
            last.set()

    rt = Runtime(process, workers=1, retry_seconds=1, gate_limit=1, gate_wait_seconds=1)
    for i in range(runtime.TRIM_AFTER_RECONCILES):
        rt.queue.add(i)
    rt.start()
    try:
        assert not trimmed.wait(0.05)  # still busy: no trim in the middle of a burst
        gate.set()
        assert trimmed.wait(5)
        assert trims == [0]
        rt.queue.add("one more")  # a single reconcile afterwards is no burst
        assert last.wait(5)
    finally:
        rt.stop()
    assert trims == [0]


def test_release_memory_calls_the_c_library_when_it_has_malloc_trim():
    from flaskops import runtime

    # glibc everywhere the operator runs (the image is Debian-based); elsewhere it is a no-op.
    assert runtime.release_memory() is (runtime._TRIM is not None)


def test_free_memory_is_released_on_a_timer_even_when_nothing_is_reconciled(monkeypatch):
    from flaskops import runtime

    trimmed = threading.Event()
    monkeypatch.setattr(runtime, "_TRIM", lambda pad: trimmed.set() or 1)
    monkeypatch.setattr(runtime, "TRIM_SECONDS", 0.01)
    rt = Runtime(lambda key: None, workers=1, retry_seconds=1, gate_limit=1, gate_wait_seconds=1)
    rt.start()
    try:
        assert trimmed.wait(5)
    finally:
        rt.stop()

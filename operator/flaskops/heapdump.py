"""Where the operator's memory is, on demand: a SIGUSR1 writes a report (investigation only, off by default).

FLASKOPS_HEAPDUMP=<dir> installs the handler. Each SIGUSR1 writes `<dir>/heap-<pid>-<k>.json`:
- rss_mib: VmRSS before anything else; malloc: glibc's mallinfo2 (arena = bytes from brk, hblkhd =
  mmapped, uordblks = in use, fordblks = free in the heap: fragmentation);
- retained: deep sizes (MiB, objects reachable and not already counted, in this order) of what kopf and
  the operator keep: kopf's per-object memories, its indexes, the watch streams, our cache and queue;
- types: the 40 largest Python types by shallow size (gc-tracked objects and the strings/bytes they hold);
- tracemalloc: the 40 largest allocation sites, when tracing (PYTHONTRACEMALLOC=N) — and a snapshot file
  `heap-<pid>-<k>.tracemalloc` beside it;
- with FLASKOPS_HEAPDUMP_TRIM=1: malloc_trim(0) first, and rss_after_trim_mib.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import json
import os
import signal
import sys
import tracemalloc
from collections import Counter
from pathlib import Path
from types import BuiltinFunctionType, CodeType, FrameType, FunctionType, ModuleType
from typing import Any

_count = itertools.count()
MIB = 1024 * 1024


def install_from_env() -> None:
    """Install the SIGUSR1 handler when FLASKOPS_HEAPDUMP names a directory."""
    folder = os.environ.get("FLASKOPS_HEAPDUMP")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        signal.signal(signal.SIGUSR1, lambda _s, _f: dump(Path(folder)))


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


_MALLINFO2 = (
    "arena",
    "ordblks",
    "smblks",
    "hblks",
    "hblkhd",
    "usmblks",
    "fsmblks",
    "uordblks",
    "fordblks",
    "keepcost",
)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2]


def _libc() -> Any:
    return ctypes.CDLL("libc.so.6")


def mallinfo() -> dict[str, float]:
    libc = _libc()
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return {name: round(getattr(info, name) / MIB, 2) for name in _MALLINFO2}


# A walk stops at code and the interpreter's own state: they belong to no one object.
_STOP = (type, ModuleType, FrameType, FunctionType, BuiltinFunctionType, CodeType)


def _deep(roots: list[Any], seen: set[int]) -> tuple[float, int]:
    """Bytes (shallow sizes summed) and count of objects reachable from `roots`, not in `seen`."""
    total = count = 0
    stack = list(roots)
    globals_ = {id(vars(m)) for m in list(sys.modules.values()) if m is not None}
    while stack:
        obj = stack.pop()
        if id(obj) in seen or id(obj) in globals_ or isinstance(obj, _STOP):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj, 0)
        count += 1
        stack.extend(gc.get_referents(obj))
    return total / MIB, count


def _instances(*type_names: str) -> list[Any]:
    return [o for o in gc.get_objects() if type(o).__name__ in type_names]


def retained() -> dict[str, Any]:
    """Deep sizes of the big holders, each object counted once (in this order: kopf's indexes one by one,
    the operator's own state, kopf's per-object memories, then the event loop and its tasks)."""
    from . import controller

    seen: set[int] = set()
    groups: dict[str, list[Any]] = {}
    for indexers in _instances("OperatorIndexers"):
        for handler_id, indexer in indexers.items():
            groups[f"kopf index {handler_id}"] = [indexer]
    groups["flaskops ObjectCache (overlay, verified, lists)"] = [controller.CACHE]
    groups["flaskops controller dicts"] = [
        controller._echo,
        controller._written_at,
        controller._app_budgets,
        controller._server_generations,
    ]
    groups["flaskops runtime (queue, locks)"] = [controller._runtime] if controller._runtime else []
    memories = [m for ms in _instances("ResourceMemories") for m in ms._items.values()]
    # Each memory's memo is a copy of the operator's (its values, the metrics server, are not per object).
    seen.update(id(v) for m in memories for v in m.memo.values())
    groups["kopf memories (per-object memory, memo copies)"] = [
        ms._items for ms in _instances("ResourceMemories")
    ]
    # Everything else the event loop holds: its tasks' locals (kopf's per-object workers keep their last raw
    # watch event), transports and their buffers, the metrics server.
    groups["asyncio: the event loop, its tasks and what they hold"] = [_loop(), *_all_tasks()]
    out: dict[str, Any] = {}
    for name, roots in groups.items():
        mib, n = _deep(roots, seen)
        out[name] = {"mib": round(mib, 2), "objects": n, "roots": len(roots)}
    if memories:
        out["sample memo keys"] = sorted(map(str, memories[0].memo.keys()))
    return out


def pymalloc() -> dict[str, float]:
    """CPython's small-object allocator (its own mmapped arenas, not in mallinfo): MiB in arenas, and the
    part of it in use by blocks, from sys._debugmallocstats()."""
    import tempfile

    with tempfile.TemporaryFile("w+") as tmp:
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read()
    out: dict[str, float] = {}
    for line in text.splitlines():
        label, _, value = line.partition("=")
        label = label.strip()
        if "unused pools" in label:
            label = "unused pools"
        if (
            label
            in (
                "# arenas allocated current",
                "# bytes in allocated blocks",
                "# bytes in available blocks",
                "unused pools",
                "Total",
            )
            and label not in out
        ):
            number = float(value.replace(",", "").strip() or 0)
            out[label] = number if label.startswith("# arenas") else round(number / MIB, 2)
    return out


def _loop() -> Any:
    import asyncio

    return next((o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)), None)


def _all_tasks() -> list[Any]:
    import asyncio

    try:
        return list(asyncio.all_tasks())
    except RuntimeError:
        return []


def types() -> list[tuple[str, int, float]]:
    """(type name, count, MiB shallow) of gc-tracked objects and their direct untracked referents."""
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    seen: set[int] = set()
    for obj in gc.get_objects():
        for o in (obj, *[r for r in gc.get_referents(obj) if not gc.is_tracked(r)]):
            if id(o) in seen:
                continue
            seen.add(id(o))
            name = type(o).__name__
            counts[name] += 1
            sizes[name] += sys.getsizeof(o, 0)
    return [(n, counts[n], round(s / MIB, 2)) for n, s in sizes.most_common(40)]


def dump(folder: Path) -> Path:
    """Write one report (and a tracemalloc snapshot when tracing) into `folder`; returns the report's path."""
    k = next(_count)
    stem = folder / f"heap-{os.getpid()}-{k}"
    report: dict[str, Any] = {"rss_mib": round(rss_mib(), 1)}
    if os.environ.get("FLASKOPS_HEAPDUMP_TRIM"):  # before this report's own allocations
        _libc().malloc_trim(0)
        report["rss_after_trim_mib"] = round(rss_mib(), 1)
    report.update(malloc=mallinfo(), pymalloc=pymalloc())
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot()
        snap.dump(f"{stem}.tracemalloc")
        traced, peak = tracemalloc.get_traced_memory()
        report["tracemalloc_mib"] = {"traced": round(traced / MIB, 2), "peak": round(peak / MIB, 2)}
        report["tracemalloc"] = [
            (str(s.traceback[0]), round(s.size / MIB, 3), s.count) for s in snap.statistics("lineno")[:40]
        ]
    report["gc_objects"] = len(gc.get_objects())
    report["retained"] = retained()
    report["types"] = types()
    path = stem.with_suffix(".json")
    path.write_text(json.dumps(report, indent=1))
    return path

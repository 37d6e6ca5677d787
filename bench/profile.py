"""Reading py-spy's raw (collapsed-stack) output: where the operator's CPU samples go."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _parse(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), ""
    return m.group("func"), m.group("file")


def _package(path: str) -> str:
    """The top-level package of a frame's file (site-packages/kopf/... -> kopf), or the stdlib module."""
    parts = path.replace("\\", "/").split("/")
    if "site-packages" in parts:
        rest = parts[parts.index("site-packages") + 1 :]
        return rest[0].removesuffix(".py") if rest else path
    if "flaskops" in parts:
        return "flaskops"
    name = parts[-1].removesuffix(".py") if parts else path
    if len(parts) >= 2 and parts[-2] not in ("python3.11", "lib") and not parts[-2].startswith("python"):
        return parts[-2]
    return name


def summarize(path: Path, top: int = 15) -> dict[str, Any]:
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    self_pkg: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [_parse(f) for f in stack.split(";") if f]
        if not frames:
            continue
        func, file = frames[-1]
        leaf = f"{func} ({Path(file).name})" if file else func
        self_fn[leaf] += count
        self_pkg[_package(file) if file else func] += count
        seen = set()
        for func, file in frames:
            key = f"{func} ({_short(file)})" if file else func
            if key not in seen:
                seen.add(key)
                incl_fn[key] += count

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, 100.0 * v / total) for k, v in c.most_common(top)] if total else []

    ours = Counter({k: v for k, v in incl_fn.items() if "flaskops/" in k})
    return {
        "samples": total,
        "self_by_package": pct(self_pkg),
        "self_by_function": pct(self_fn),
        "inclusive_flaskops": pct(ours),
        "inclusive_all": pct(incl_fn),
    }


def _short(file: str) -> str:
    parts = file.replace("\\", "/").split("/")
    if "site-packages" in parts:
        return "/".join(parts[parts.index("site-packages") + 1 :])
    if "flaskops" in parts:
        return "flaskops/" + "/".join(parts[parts.index("flaskops") + 1 :])
    return "/".join(parts[-2:])

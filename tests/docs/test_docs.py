"""The docs a user follows from the repository alone: every relative link in every tracked Markdown file
resolves (file and heading anchor) to something tracked, and docs/reference.md lists exactly the reasons,
Events, rules and tokens the operator uses."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import unicodedata
from functools import cache
from pathlib import Path, PurePosixPath

import pytest

from flaskops import ownership, safety

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference.md"
OPERATOR = ROOT / "operator" / "flaskops"

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


@cache
def tracked() -> frozenset[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return frozenset(p for p in out.decode().split("\0") if p)


def markdown_files() -> list[str]:
    return sorted(p for p in tracked() if p.endswith(".md"))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading).lower()
    text = "".join(
        ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN"
    )  # letters, numbers
    return text.replace(" ", "-")


@cache
def anchors(path: str) -> frozenset[str]:
    text = FENCE.sub("", (ROOT / path).read_text())
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(text):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return frozenset(out)


def links(text: str) -> list[str]:
    prose = CODE_SPAN.sub("", FENCE.sub("", text))
    return INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)


def resolve(source: str, target: str) -> str | None:
    """Why a relative link from tracked file `source` is broken, or None when it resolves."""
    path, _, fragment = target.partition("#")
    if path:
        joined = PurePosixPath(source).parent / path
        parts: list[str] = []
        for part in joined.parts:
            if part == "..":
                if not parts:
                    return "points outside the repository"
                parts.pop()
            elif part != ".":
                parts.append(part)
        rel = "/".join(parts).rstrip("/")
        is_dir = any(p.startswith(rel + "/") for p in tracked())
        if rel not in tracked() and not is_dir:
            return f"{rel} is not a tracked file or directory"
    else:
        rel = source
    if fragment and rel.endswith(".md") and fragment not in anchors(rel):
        return f"{rel} has no heading #{fragment}"
    return None


@pytest.mark.parametrize("source", markdown_files())
def test_relative_links_resolve(source: str) -> None:
    text = (ROOT / source).read_text()
    broken = [
        f"{target}: {why}"
        for target in links(text)
        if not SCHEME.match(target) and (why := resolve(source, target)) is not None
    ]
    # Paths written as code (`../x/y`) are read as links too: they must not lead outside the repository.
    for span in CODE_SPAN.findall(FENCE.sub("", text)):
        target = span[1].strip()
        if target.startswith("../") and " " not in target and (why := resolve(source, target)):
            broken.append(f"`{target}`: {why}")
    assert not broken, f"{source}: {broken}"


def test_link_checker_finds_broken_links() -> None:
    assert resolve("docs/README.md", "reference.md#every-reason") is None
    assert resolve("docs/README.md", "../README.md#upgrade") is None
    assert resolve("docs/README.md", "missing.md") is not None
    assert resolve("docs/README.md", "reference.md#no-such-heading") is not None
    assert resolve("testbed/README.md", "../../shared/design/TESTBED.md") == "points outside the repository"
    text = 'see [a](x.md), ![img](y.png "t") and `[not](z.md)`\n```\n[no](w.md)\n```\n[ref]: r.md\n'
    assert links(text) == ["x.md", "y.png", "r.md"]
    assert slug("API stability (`v1alpha1`)") == "api-stability-v1alpha1"
    assert slug("The pairing rules S1\u2013S6") == "the-pairing-rules-s1s6"


# --- docs/reference.md against the operator's code --------------------------------------------------------


def section_names(heading: str) -> set[str]:
    """The backticked names in the first column of the table under `## heading` in the reference."""
    text = REFERENCE.read_text()
    body = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Za-z]+)` \|", body, re.MULTILINE))


Constants = dict[tuple[str, str], str]


def module_constants() -> Constants:
    """(module, NAME) -> value of every module-level `NAME = "text"` in the operator."""
    found: Constants = {}
    for path in OPERATOR.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                        found[(path.stem, target.id)] = node.value.value
    return found


def literals(expr: ast.expr, module: str, constants: Constants) -> set[str]:
    """The strings an expression can be, when it is written as a literal or a module constant:
    "A", "A" if x else "B", NAME, other_module.NAME."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return {expr.value}
    if isinstance(expr, ast.IfExp):
        return literals(expr.body, module, constants) | literals(expr.orelse, module, constants)
    if isinstance(expr, ast.Name) and (module, expr.id) in constants:
        return {constants[(module, expr.id)]}
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
        value = constants.get((expr.value.id, expr.attr))
        return {value} if value is not None else set()
    return set()


def operator_names() -> tuple[set[str], set[str]]:
    """(condition reasons, Event reasons) the operator can write, found in its source."""
    constants = module_constants()
    # Refusals pick their reason at run time from this tuple (ownership.refusal()).
    reasons: set[str] = set(ownership.REFUSAL_REASONS)
    events: set[str] = set()
    for path in OPERATOR.rglob("*.py"):
        module = path.stem
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and len(node.args) >= 2:
                name = (
                    node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                )
                if name in ("true", "false", "unknown"):  # conditions.true(type, reason, message)
                    reasons |= literals(node.args[1], module, constants)
                elif name == "Event":  # Event(type, reason, message)
                    events |= literals(node.args[1], module, constants)
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "condition_reason" for t in node.targets
            ):
                reasons |= literals(node.value, module, constants)
            elif isinstance(node, ast.Dict):  # {"reason": "Pending", ...}: a summary's own reason
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "reason" and value is not None:
                        reasons |= literals(value, module, constants)
    return reasons, events


def test_every_condition_reason_is_in_the_reference() -> None:
    reasons, _ = operator_names()
    documented = section_names("Every reason")
    assert len(reasons) > 20, reasons  # the scan found the operator's reasons
    assert not reasons - documented, (
        f"reasons the operator sets that docs/reference.md lacks: {reasons - documented}"
    )
    assert not documented - reasons, (
        f"reasons docs/reference.md lists that nothing sets: {documented - reasons}"
    )


def test_every_event_is_in_the_reference() -> None:
    _, events = operator_names()
    documented = section_names("Events")
    assert events, "the scan found no Event"
    assert events == documented, f"operator only: {events - documented}; docs only: {documented - events}"


def test_rules_and_tokens_match_the_safety_module() -> None:
    text = REFERENCE.read_text()
    body = text.split("\n## The pairing rules S1\u2013S6\n", 1)[1].split("\n## ", 1)[0]
    rules = set(re.findall(r"^\| \*\*(S\d)\*\* \|", body, re.MULTILINE))
    assert rules == set(inspect.signature(safety.check_pairing).parameters["rules"].default)
    tables = {
        kind: set(re.findall(r"`([a-z]+)`", row))
        for kind, row in re.findall(r"^\| (test|non-production|production) \| (.*) \|$", body, re.MULTILINE)
    }
    assert tables == {
        "test": set(safety.TEST_TOKENS),
        "non-production": set(safety.NON_PRODUCTION_TOKENS),
        "production": set(safety.PRODUCTION_TOKENS),
    }

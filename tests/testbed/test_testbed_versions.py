"""The testbed's versions are stated once (testbed/versions.env); the go.mod files must agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flaskops_testbed import paths


def _required(module_dir: Path) -> dict[str, str]:
    """module path -> version for every `require` line of a go.mod (single-line and block form)."""
    text = (module_dir / "go.mod").read_text()
    found = {}
    for match in re.finditer(r"^\s*(?:require\s+)?([\w./-]+)\s+(v[\w.+-]+)(?:\s*//.*)?$", text, re.M):
        found[match.group(1)] = match.group(2)
    return found


def _replaced(module_dir: Path) -> dict[str, str]:
    text = (module_dir / "go.mod").read_text()
    return dict(re.findall(r"^replace\s+(\S+)\s+=>\s+\S+\s+(v\S+)", text, re.M))


V = paths.versions()
TESTBED = paths.TESTBED_SRC


@pytest.mark.parametrize(
    ("module", "dependency", "key"),
    [
        ("kube", "k8s.io/kubernetes", "KUBERNETES_VERSION"),
        ("etcd", "go.etcd.io/etcd/server/v3", "ETCD_VERSION"),
        ("kwok", "sigs.k8s.io/kwok", "KWOK_VERSION"),
        ("helm", V["HELM_MODULE"], "HELM_VERSION"),
        ("helm-docs", V["HELM_DOCS_MODULE"], "HELM_DOCS_VERSION"),
        ("promrules", V["PROMETHEUS_MODULE"], "PROMETHEUS_VERSION"),
    ],
)
def test_go_mod_pins_the_version_in_versions_env(module: str, dependency: str, key: str) -> None:
    required = _required(TESTBED / module)
    assert required.get(dependency) == V[key], (
        f"testbed/{module}/go.mod requires {dependency} {required.get(dependency)} but versions.env "
        f"says {key}={V[key]}: run testbed/update-modules.sh and commit the result"
    )


def test_kubernetes_staging_modules_match_the_kubernetes_version() -> None:
    # k8s.io/kubernetes v1.X.Y needs every staging module at v0.X.Y (the `replace` trick).
    staging = "v0." + V["KUBERNETES_VERSION"].removeprefix("v1.")
    replaced = _replaced(TESTBED / "kube")
    assert len(replaced) >= 30, "expected a replace for every k8s.io staging module"
    wrong = {m: v for m, v in replaced.items() if m.startswith("k8s.io/") and v != staging}
    assert not wrong, f"staging replaces not at {staging}: {wrong}; run testbed/update-modules.sh"


def test_tools_go_pins_what_build_sh_builds() -> None:
    build = (TESTBED / "build.sh").read_text()
    # build.sh builds "$HELM_MODULE/cmd/helm": switching helm v3 <-> v4 must change tools.go too.
    assert f'_ "{V["HELM_MODULE"]}/cmd/helm"' in (TESTBED / "helm" / "tools.go").read_text()
    for module in ("kube", "kwok"):
        for package in re.findall(r'_ "([^"]+)"', (TESTBED / module / "tools.go").read_text()):
            assert package in build, f"{package} is pinned in testbed/{module} but build.sh never builds it"
    # The binaries the harness expects are exactly those build.sh checks for.
    listed = re.search(r"^binaries=\(([^)]*)\)", build, re.M)
    assert listed is not None
    assert tuple(listed.group(1).split()) == paths.BINARIES


def test_versions_env_is_plain_key_value(tmp_path: Path) -> None:
    # build.sh sources it and Python parses it: only plain KEY=VALUE lines keep both readings equal.
    assert set(V) >= {"KUBERNETES_VERSION", "ETCD_VERSION", "KWOK_VERSION", "HELM_MODULE", "HELM_VERSION"}
    bad = tmp_path / "bad.env"
    bad.write_text("KUBERNETES_VERSION v1\n")
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        paths.parse_env_file(bad)

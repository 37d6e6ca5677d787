"""Where the testbed's pinned versions, built binaries and cluster state live."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

# testbed/ in the repository: versions.env and build.sh sit next to this package.
TESTBED_SRC = Path(__file__).resolve().parent.parent
VERSIONS_FILE = TESTBED_SRC / "versions.env"
BUILD_SCRIPT = TESTBED_SRC / "build.sh"

# What build.sh produces; a directory missing any of them is not a usable build.
BINARIES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "etcd",
    "kwok",
    "kwokctl",
    "helm",
)


class TestbedNotBuiltError(RuntimeError):
    """The binaries for the pinned versions are not in the cache yet."""

    # pytest would otherwise try to collect this class as a test (its name starts with "Test").
    __test__ = False


def parse_env_file(path: Path) -> dict[str, str]:
    """Parse the plain KEY=VALUE lines of a shell env file (comments and blanks skipped)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        values[key] = value
    return values


@functools.cache
def versions() -> dict[str, str]:
    """The pinned versions from testbed/versions.env, the one source of truth."""
    return parse_env_file(VERSIONS_FILE)


def cache_dir() -> Path:
    """$FLASKOPS_CACHE, default ~/.cache/flaskops (the same default as the Makefile and build.sh)."""
    configured = os.environ.get("FLASKOPS_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "flaskops"


@functools.cache
def _go_version() -> str | None:
    go = os.environ.get("GO") or shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        return None
    result = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    return result.stdout.strip() or None


def _key_prefix() -> str:
    v = versions()
    return (
        f"k8s-{v['KUBERNETES_VERSION']}_etcd-{v['ETCD_VERSION']}"
        f"_kwok-{v['KWOK_VERSION']}_helm-{v['HELM_VERSION']}"
    )


def _complete(directory: Path) -> bool:
    return (
        all(os.access(directory / "bin" / name, os.X_OK) for name in BINARIES)
        and (directory / "stages.yaml").is_file()
    )


def testbed_dir() -> Path:
    """The cache directory build.sh fills for the pinned versions (same key as build.sh computes)."""
    root = cache_dir() / "testbed"
    go_version = _go_version()
    if go_version is not None:
        return root / f"{_key_prefix()}_{go_version}"
    # Without a Go toolchain (say, a user with kind and a prebuilt cache), take any complete build of
    # these versions: the Go version only affects how the binaries were compiled, not what they are.
    candidates = sorted(root.glob(f"{_key_prefix()}_go*"), reverse=True)
    complete = [c for c in candidates if _complete(c)]
    return complete[0] if complete else root / f"{_key_prefix()}_go-unknown"


def bin_dir() -> Path:
    """Directory holding the built binaries."""
    return testbed_dir() / "bin"


# The real node's binaries: build.sh puts them beside the control plane's, in node_<same key>/bin.
NODE_BINARIES = ("kubelet",)


def node_bin_dir() -> Path:
    """Directory holding the kubelet build.sh built for the pinned Kubernetes version."""
    control_plane = testbed_dir()
    return control_plane.parent / f"node_{control_plane.name}" / "bin"


def node_binary(name: str) -> Path:
    """Absolute path of one of the real node's binaries; raises with the command to run when missing."""
    if name not in NODE_BINARIES:
        raise ValueError(f"unknown node binary {name!r}; known: {', '.join(NODE_BINARIES)}")
    path = node_bin_dir() / name
    if not os.access(path, os.X_OK):
        raise TestbedNotBuiltError(
            f"{path} does not exist: build it with `make testbed` (about 3 minutes after the control plane)"
        )
    return path


def stages_file() -> Path:
    """The KWOK stages extracted from the pinned module at build time (one multi-document YAML)."""
    return testbed_dir() / "stages.yaml"


def is_built() -> bool:
    """True when every binary and the stages exist for the pinned versions."""
    return _complete(testbed_dir())


def binary(name: str) -> Path:
    """Absolute path of one built binary; raises with the command to run when it is missing."""
    if name not in BINARIES:
        raise ValueError(f"unknown testbed binary {name!r}; known: {', '.join(BINARIES)}")
    path = bin_dir() / name
    if not os.access(path, os.X_OK):
        raise TestbedNotBuiltError(
            f"{path} does not exist: build the testbed first with `make testbed` "
            f"(or `bash {BUILD_SCRIPT}`); a cold build takes 10-25 minutes"
        )
    return path


def tool(name: str) -> Path:
    """A built kubectl/helm, else the one on PATH (a user with kind may not have built the testbed)."""
    try:
        return binary(name)
    except TestbedNotBuiltError:
        found = shutil.which(name)
        if found is None:
            raise
        return Path(found)


def state_dir(cluster_name: str) -> Path:
    """Where one local cluster keeps its kubeconfig, KWOK work directory and logs."""
    return cache_dir() / "state" / cluster_name

"""`python -m flaskops`: run the operator (kopf) against the cluster in KUBECONFIG or in-cluster."""

from __future__ import annotations

import sys

import kopf.cli

from . import heapdump


def argv(args: list[str]) -> list[str]:
    """The kopf command line: this package's handlers, standalone (one replica, no peering objects)."""
    scope = (
        []
        if any(
            a in ("--namespace", "-n", "--all-namespaces", "-A") or a.startswith("--namespace=") for a in args
        )
        else ["--all-namespaces"]
    )
    # JSON log lines: the operator's logs are read by machines first.
    fmt = [] if any(a.startswith("--log-format") for a in args) else ["--log-format=json"]
    return ["run", "--module", "flaskops.handlers", "--standalone", *fmt, *scope, *args]


def main() -> None:
    heapdump.install_from_env()
    kopf.cli.main(argv(sys.argv[1:]))


if __name__ == "__main__":
    main()

"""`python -m flaskops_testbed up|down|status|env`: the local control plane and PostgreSQL from a shell.

Adding a subcommand is one function: decorate it with `@command("name", "help")`, take the parsed
`argparse.Namespace`, return an exit code. Arguments of its own go in `arguments=`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from flaskops_testbed import cluster as kwok
from flaskops_testbed import paths
from flaskops_testbed.postgres import LocalPostgres, default_base_dir

Handler = Callable[[argparse.Namespace], int]
# name -> (help, handler, argument adders)
COMMANDS: dict[str, tuple[str, Handler, Sequence[Callable[[argparse.ArgumentParser], None]]]] = {}


def command(
    name: str, help: str, arguments: Sequence[Callable[[argparse.ArgumentParser], None]] = ()
) -> Callable[[Handler], Handler]:
    """Register a subcommand."""

    def register(handler: Handler) -> Handler:
        COMMANDS[name] = (help, handler, arguments)
        return handler

    return register


def _cluster_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name", default=kwok.DEFAULT_NAME, help=f"cluster name (default {kwok.DEFAULT_NAME})"
    )


def _print_env(cluster: kwok.KwokCluster, pg: LocalPostgres | None) -> None:
    for line in kwok.exported_env(cluster):
        print(line)
    if pg is not None and pg.is_running():
        # A comment, not an export: which variable a consumer reads is the consumer's business.
        print(f"# PostgreSQL superuser URL: {pg.admin_url}")


@command("up", "start (or reuse) the local cluster and PostgreSQL; print the exports", [_cluster_name])
def up(args: argparse.Namespace) -> int:
    if not paths.is_built():
        print(f"testbed binaries missing in {paths.bin_dir()}: run `make testbed` first", file=sys.stderr)
        return 2
    pg = LocalPostgres(default_base_dir())
    kwok.log(f"starting PostgreSQL in {pg.base_dir}")
    pg.start()
    kwok.log(f"PostgreSQL on {pg.host}:{pg.port}")
    cluster = kwok.start(args.name)
    print(f"# KUBECONFIG: {cluster.kubeconfig}")
    _print_env(cluster, pg)
    return 0


@command(
    "down",
    "stop the demo operator, the local cluster and PostgreSQL (no process is left behind)",
    [_cluster_name],
)
def down(args: argparse.Namespace) -> int:
    from flaskops_testbed import demo

    given = os.environ.get("KUBECONFIG")
    if given and not demo.is_testbed_kubeconfig(given):
        # Someone else's cluster: remove only what the demo created there, and leave the local one be.
        demo.down_kubeconfig_cluster(given)
    else:
        demo.stop_operator()
        kwok.stop(args.name)
    others = kwok.live_clusters()
    if others:
        # The PostgreSQL server is shared by every local cluster (demo, test sessions): keep it for them.
        done = (
            "stopped the demo"
            if given and not demo.is_testbed_kubeconfig(given)
            else f"stopped cluster {args.name!r}"
        )
        kwok.log(f"{done}; PostgreSQL stays up for running clusters {others}")
        return 0
    LocalPostgres(default_base_dir()).stop()
    kwok.log("stopped")
    return 0


def _consent(parser: argparse.ArgumentParser) -> None:
    from flaskops_testbed.demo import CONSENT_FLAG, NAMESPACE

    parser.add_argument(
        CONSENT_FLAG,
        action="store_true",
        help=f"allow the demo on the cluster KUBECONFIG names (not the local testbed): it creates namespace "
        f"{NAMESPACE} and objects of its own there, labelled, and changes nothing it did not create",
    )


@command(
    "demo",
    "the main job: PostgreSQL, cluster, operator, the example FlaskApp until Ready",
    [_cluster_name, _consent],
)
def demo(args: argparse.Namespace) -> int:
    from flaskops_testbed import demo as demo_module

    return demo_module.run(args.name, use_kubeconfig_cluster=args.use_kubeconfig_cluster)


@command("status", "say what is running", [_cluster_name])
def status(args: argparse.Namespace) -> int:
    print(f"binaries: {paths.bin_dir()} ({'built' if paths.is_built() else 'NOT built: make testbed'})")
    cluster = kwok.KwokCluster(name=args.name)
    print(cluster.status())
    pg = LocalPostgres(default_base_dir())
    print(f"postgres: {'running on ' + pg.host + ':' + str(pg.port) if pg.is_running() else 'stopped'}")
    from flaskops_testbed import node

    owner = node.owner()
    print(f"real node: {'joined to cluster ' + repr(owner) if owner else 'not running'} ({node.node_home()})")
    return 0 if cluster.is_healthy() else 3


@command("env", 'print the exports for a running cluster (eval "$(... env)")', [_cluster_name])
def env(args: argparse.Namespace) -> int:
    cluster = kwok.KwokCluster(name=args.name)
    if not cluster.exists():
        print(f"cluster {args.name!r} is not running: `python -m flaskops_testbed up`", file=sys.stderr)
        return 3
    _print_env(cluster, LocalPostgres(default_base_dir()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flaskops_testbed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, handler, arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        for add in arguments:
            add(p)
        p.set_defaults(handler=handler)
    args = parser.parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

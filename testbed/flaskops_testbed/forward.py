"""A TCP forwarder: `python -m flaskops_testbed.forward LISTEN_HOST:PORT TARGET_HOST:PORT`.

The real node's pods live behind a bridge and see the host only at the bridge's gateway address, while
the API server and PostgreSQL listen on 127.0.0.1. Rather than open either to other interfaces or touch
the host firewall (no kube-proxy, no DNAT), the node runs one of these per address a pod must reach:
the `kubernetes` Service's ClusterIP -> the API server, the gateway -> PostgreSQL. Each connection is
copied both ways until either side closes. Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port); raises ValueError naming the bad text."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


async def _serve(listen: tuple[str, int], target: tuple[str, int]) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))
        for w in (client_writer, upstream_writer):
            w.close()

    server = await asyncio.start_server(handle, *listen, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Ready: whoever started us waits for this line.
    print(f"forwarding {listen[0]}:{listen[1]} -> {target[0]}:{target[1]}", flush=True)
    async with server:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flaskops_testbed.forward", description=__doc__)
    parser.add_argument("listen", type=parse_address, help="HOST:PORT to listen on")
    parser.add_argument("target", type=parse_address, help="HOST:PORT to connect each client to")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.listen, args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())

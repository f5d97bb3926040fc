"""What does serving a request cost at all on this machine? The floor under any ASGI proxy.

The sidecar must stay a pure ASGI app served by uvicorn, so uvicorn's own
per-request cost is a floor no change to ``sidecar/`` can go below. This
measures it next to the baselines the proxy targets are stated against, with
the same wrk load and CPU accounting as ``proxy_overhead``:

- ``direct``: wrk talks to the nginx upstream itself;
- ``nginx``: an nginx keep-alive reverse proxy in front of it;
- ``asgi``: uvicorn + uvloop + httptools, configured as the sidecar configures
  it, serving a raw ASGI app that reads the request body and answers a fixed
  body. No proxying at all: what uvicorn and ASGI cost;
- ``asgi+aiohttp``: the same app forwarding each request through one shared
  aiohttp ``ClientSession`` (the sidecar's session options) and answering the
  upstream's body, with no header rewriting, metrics or streaming logic: the
  floor of any proxy built on uvicorn and aiohttp. ``proxy_overhead`` measures
  this same app, as its ``naive`` target, next to the sidecar.

The sidecar's CPU target is a ratio to the naive proxy's CPU per request
(``proxy_overhead.MAX_CPU_RATIO_TO_NAIVE``). The floor's own ratio to the
naive proxy, from this run, says whether an ASGI-on-uvicorn design can meet
it on this machine at all: the script prints that verdict.

Usage::

    python -m benchmarks.asgi_floor --duration 10

Everything runs on 127.0.0.1 on free ports and every process started here is
stopped before exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.proxy_overhead import (
    _PROXY_SERVER,
    _UPSTREAM_SERVER,
    HOST,
    MAX_CPU_RATIO_TO_NAIVE,
    RESPONSE_BODY,
    THROUGHPUT_CONNECTIONS,
    RunResult,
    _free_port,
    _measure,
    _nginx,
    _serve_process,
    _tail,
    _write_wrk_script,
)

__all__ = ["floor_verdict", "main"]

APPS = ("asgi", "asgi+aiohttp")

_FIXED_BODY = RESPONSE_BODY.encode()
_FIXED_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_FIXED_BODY)).encode())]


# --- the servers under test (run in a child process: ``--serve APP PORT [UPSTREAM_PORT]``) ---------


async def _drain(receive: Any) -> None:
    # Read the request body to its end, as any proxy must.
    while (await receive()).get("more_body", False):
        pass


async def _trivial(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await _drain(receive)
    await send({"type": "http.response.start", "status": 200, "headers": _FIXED_HEADERS})
    await send({"type": "http.response.body", "body": _FIXED_BODY})


def _forwarder(upstream: str) -> Any:
    import aiohttp

    session: aiohttp.ClientSession | None = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal session
        if scope["type"] != "http":
            return
        if session is None:
            # The sidecar's own session options (sidecar/upstream/client.py), created on the loop that uses it.
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, limit_per_host=0),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        message = await receive()
        body = message.get("body", b"")
        async with session.request(scope["method"], upstream + scope["path"], data=body) as response:
            data = await response.read()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            await send({"type": "http.response.body", "body": data})

    return app


def _serve(app_name: str, port: int, upstream_port: int) -> None:
    import uvicorn
    import uvloop

    app = _trivial if app_name == "asgi" else _forwarder(f"http://{HOST}:{upstream_port}")
    # As sidecar/server.py binds: IPPROTO_TCP so that accepted sockets get TCP_NODELAY.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(2048)
    sock.setblocking(False)
    config = uvicorn.Config(
        app,
        http="httptools",
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        timeout_keep_alive=75,
    )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(uvicorn.Server(config).serve(sockets=[sock]))


# --- driving --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _asgi(tmp: Path, app_name: str, port: int, upstream_port: int) -> Iterator[int]:
    log = tmp / f"{app_name}.log"
    cmd = [sys.executable, "-m", "benchmarks.asgi_floor", "--serve", app_name, str(port), str(upstream_port)]
    with _serve_process(cmd, port, log) as pid:
        try:
            yield pid
        except Exception:
            print(_tail(log), file=sys.stderr)
            raise


def run(duration: float, warmup: float) -> list[RunResult]:
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found on PATH; `make apt-bench` installs it")
    upstream_port, nginx_port = _free_port(), _free_port()
    ports = {name: _free_port() for name in APPS}
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="sidecar-floor-") as name, contextlib.ExitStack() as stack:
        tmp = Path(name)
        script = _write_wrk_script(tmp)
        upstream_block = _UPSTREAM_SERVER.format(host=HOST, port=upstream_port, response=RESPONSE_BODY)
        proxy_block = _PROXY_SERVER.format(host=HOST, port=nginx_port, upstream_port=upstream_port)
        upstream_pid = stack.enter_context(_nginx(tmp, "upstream", upstream_block, upstream_port))
        nginx_pid = stack.enter_context(_nginx(tmp, "proxy", proxy_block, nginx_port))
        targets = [("direct", upstream_port, upstream_pid), ("nginx", nginx_port, nginx_pid)]
        for app_name in APPS:
            pid = stack.enter_context(_asgi(tmp, app_name, ports[app_name], upstream_port))
            targets.append((app_name, ports[app_name], pid))
        ours = tuple(pid for _, _, pid in targets)
        for target, port, pid in targets:
            results += _measure(target, port, pid, ours, script, duration, warmup)
    return results


def _report(results: Sequence[RunResult]) -> str:
    lines = [
        f"{'target':<13} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'CPU us/req':>10} {'errors':>6} {'other CPU':>9}"
    ]
    for r in results:
        lines.append(
            f"{r.target:<13} {r.connections:>5} {r.requests_per_second:>9.0f} {r.p50_ms:>8.3f}"
            f" {r.cpu_us_per_request:>10.1f} {r.errors:>6} {r.other_cpu_cores:>9.2f}"
        )
    lines += ["", *floor_verdict(results)]
    if any(r.other_cpu_cores > 0.2 for r in results):
        lines.append("WARNING: other processes used over 0.2 cores in some runs; rerun when quiet.")
    return "\n".join(lines)


def floor_verdict(results: Sequence[RunResult]) -> list[str]:
    """The floor and the naive forwarder as ratios to nginx and to each other, at 32 connections.

    The verdict: the sidecar's CPU target, at most ``MAX_CPU_RATIO_TO_NAIVE``
    of the naive proxy's CPU per request, is reachable for an ASGI-on-uvicorn
    design only if uvicorn with a raw ASGI app alone stays below it.
    """
    by = {r.target: r for r in results if r.connections == THROUGHPUT_CONNECTIONS}
    asgi, naive, nginx = by["asgi"], by["asgi+aiohttp"], by["nginx"]
    floor = asgi.cpu_us_per_request / naive.cpu_us_per_request
    verdict = "reachable" if floor <= MAX_CPU_RATIO_TO_NAIVE else "UNREACHABLE"
    return [
        f"uvicorn + raw ASGI alone, {THROUGHPUT_CONNECTIONS} connections: {asgi.cpu_us_per_request:.1f} us/req,"
        f" {asgi.cpu_us_per_request / nginx.cpu_us_per_request:.2f}x nginx's CPU per request,"
        f" {asgi.requests_per_second / nginx.requests_per_second:.3f}x nginx's req/s",
        f"uvicorn + aiohttp forwarder (proxy_overhead's naive): {naive.cpu_us_per_request:.1f} us/req,"
        f" {naive.cpu_us_per_request / nginx.cpu_us_per_request:.2f}x nginx's CPU per request,"
        f" {naive.requests_per_second / nginx.requests_per_second:.3f}x nginx's req/s",
        f"floor/naive CPU per request: {floor:.3f}; the sidecar's target (<= {MAX_CPU_RATIO_TO_NAIVE:.2f} of the"
        f" naive proxy's) is {verdict} for an ASGI-on-uvicorn design here"
        " (a proxy also pays for an upstream client on top of the floor)",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.asgi_floor", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per target (default 2; 0: none)")
    parser.add_argument("--serve", nargs=3, metavar=("APP", "PORT", "UPSTREAM_PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        app_name, port, upstream_port = args.serve
        if app_name not in APPS:
            parser.error(f"--serve: APP must be one of {', '.join(APPS)}")
        _serve(app_name, int(port), int(upstream_port))
        return 0
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")
    print(_report(run(args.duration, args.warmup)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What does one request cost the serving process, counted rather than timed? Without and with a split experiment.

wrk's CPU figures move with whatever else the machine runs; counts do not.
This starts the sidecar as ``proxy_overhead`` and ``experiment_overhead`` do
(capture off by default, the same nginx upstream, in ``split`` mode a 50/50
experiment by ``header:x-user-id`` with a second nginx as the treatment,
``experiment_overhead.definition``), warms it up, then sends ``--requests``
identical POSTs through real keep-alive sockets from a plain client in this
process, ``X-User-Id`` taking 1,000 values in turn as wrk's does, and reports
for each mode:

- the Python function calls the serving process made per request (cProfile,
  switched on for the measured requests only): the same on any machine, up to
  the few timers that fire during the run, so a difference between two
  versions or two modes is work added or removed, not noise;
- the functions whose calls per request differ between the modes;
- with ``--callgrind``, the machine instructions the serving process ran per
  request in user space (valgrind's callgrind, instrumentation on for the
  measured requests only; the kernel's side of the sockets is not in it).

Only the serving process is measured: with capture off the monitoring
process does no work per request.

Usage::

    python -m benchmarks.calls_per_request                       # none and split, 5,000 requests each
    python -m benchmarks.calls_per_request --callgrind --requests 3000
    python -m benchmarks.calls_per_request --modes none --sidecar-env SIDECAR_SAMPLE_RATE=1

Needs ``nginx`` (and ``valgrind`` for ``--callgrind``). Everything runs on
127.0.0.1 on free ports and every process started here is stopped before exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import logging
import os
import pstats
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import cast

from benchmarks.experiment_overhead import USER_HEADER, USERS, definition
from benchmarks.proxy_overhead import (
    _UPSTREAM_SERVER,
    HOST,
    PROXY_ONLY,
    REQUEST_BODY,
    RESPONSE_BODY,
    _free_port,
    _nginx,
    _stop,
    _tail,
    sidecar_environment,
    sidecar_settings,
)

__all__ = ["MODES", "calls_per_request", "drive", "main"]

MODES = ("none", "split")
CONNECTIONS = 32  # as the benchmarks' throughput load
WARMUP_REQUESTS = 2000  # fills both pools, and lets CPython's caches settle
_STARTUP_SECONDS = 15.0
_ANSWER_SECONDS = 30.0
_PROFILE_SECONDS = 60.0
# Under valgrind the sidecar starts in tens of seconds and serves a request in milliseconds.
_VALGRIND_STARTUP_SECONDS = 300.0
_VALGRIND_WARMUP_REQUESTS = 300


def _requests(port: int) -> list[bytes]:
    """One request per user, built once: the client's work per request is a table lookup and a send."""
    body = REQUEST_BODY.encode()
    head = f"POST /v1/models/iris:predict HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
    return [
        f"{head}{USER_HEADER}: u-{user}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        for user in range(1, USERS + 1)
    ]


def drive(port: int, requests: int, connections: int = CONNECTIONS) -> None:
    """Send ``requests`` POSTs over ``connections`` keep-alive connections, one at a time on each, all answered 200."""
    table = _requests(port)
    sent = done = 0
    with selectors.DefaultSelector() as selector, contextlib.ExitStack() as stack:
        buffers: dict[socket.socket, bytes] = {}
        for _ in range(min(connections, requests)):
            sock = stack.enter_context(socket.create_connection((HOST, port)))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            selector.register(sock, selectors.EVENT_READ)
            buffers[sock] = b""
            sock.sendall(table[sent % USERS])
            sent += 1
        while done < requests:
            events = selector.select(timeout=_ANSWER_SECONDS)
            if not events:
                raise RuntimeError(f"no answer from the sidecar within {_ANSWER_SECONDS:g}s")
            for key, _ in events:
                sock = cast(socket.socket, key.fileobj)
                data = sock.recv(65536)
                if not data:
                    raise RuntimeError("the sidecar closed a connection")
                buffer = buffers[sock] + data
                while (end := buffer.find(b"\r\n\r\n")) >= 0:
                    head = buffer[:end].lower()
                    if not head.startswith(b"http/1.1 200 "):
                        raise RuntimeError(f"unexpected answer: {head.decode(errors='replace')}")
                    start = head.index(b"content-length:") + len(b"content-length:")
                    length = int(head[start:].split(b"\r\n", 1)[0])
                    if len(buffer) < end + 4 + length:
                        break
                    buffer = buffer[end + 4 + length :]
                    done += 1
                    if sent < requests:
                        sock.sendall(table[sent % USERS])
                        sent += 1
                buffers[sock] = buffer


# --- the sidecar under measurement -------------------------------------------------------------


def _serve_profiled(out: Path) -> None:
    """Run the sidecar as ``ml-sidecar serve`` does; profile its loop from SIGUSR1 to SIGUSR2, then write ``out``."""
    from sidecar.config import Settings
    from sidecar.server import Sidecar

    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr)

    async def serve() -> None:
        sidecar = Sidecar(settings)
        await sidecar.start()
        loop = asyncio.get_running_loop()
        profile = cProfile.Profile()

        def stop() -> None:
            profile.disable()
            part = out.with_suffix(".part")
            profile.dump_stats(part)
            part.replace(out)  # whole, or not there: the parent waits for it

        loop.add_signal_handler(signal.SIGUSR1, profile.enable)
        loop.add_signal_handler(signal.SIGUSR2, stop)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, sidecar.request_shutdown)
        await sidecar.wait_stopped()

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve())


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    # uvloop, as ml-sidecar serve runs (uvicorn[standard] brings it).
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return None
    return uvloop.new_event_loop


@contextlib.contextmanager
def _running(cmd: Sequence[str], env: Mapping[str, str], port: int, log: Path, startup: float) -> Iterator[int]:
    """Start the sidecar; yield its pid once it listens on ``port``; stop it after."""
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + startup
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{cmd!r} exited with {process.returncode}:\n{_tail(log)}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd!r} did not listen on {HOST}:{port} within {startup:g}s:\n{_tail(log)}")
            time.sleep(0.1)
        yield process.pid
    finally:
        _stop(process)


# pstats keeps its table in an attribute typeshed does not declare: (file, line, name) -> (primitive calls,
# calls, own time, cumulative time, callers).
_Table = dict[tuple[str, int, str], tuple[int, int, float, float, object]]


def calls_per_request(stats: pstats.Stats, requests: int) -> dict[str, float]:
    """Calls per request by function (``path:line(name)``, paths from the repository or site-packages)."""
    table: _Table = vars(stats)["stats"]
    out: dict[str, float] = {}
    for (filename, line, name), (_, calls, *_rest) in table.items():
        where = filename.split("/site-packages/")[-1].removeprefix(str(Path.cwd()) + "/")
        out[f"{where}:{line}({name})"] = calls / requests
    return out


def _profile(env: Mapping[str, str], tmp: Path, mode: str, port: int, requests: int, connections: int) -> pstats.Stats:
    """The serving process's profile over ``requests`` requests, after a warm-up."""
    out = tmp / f"{mode}.prof"
    cmd = [sys.executable, "-m", "benchmarks.calls_per_request", "--serve-profiled", str(out)]
    with _running(cmd, env, port, tmp / f"{mode}.log", _STARTUP_SECONDS) as pid:
        drive(port, WARMUP_REQUESTS, connections)
        os.kill(pid, signal.SIGUSR1)
        time.sleep(0.2)  # the idle loop takes the signal at once; the requests come after
        drive(port, requests, connections)
        os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + _PROFILE_SECONDS
        while not out.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no profile from the sidecar:\n{_tail(tmp / f'{mode}.log')}")
            time.sleep(0.05)
    return pstats.Stats(str(out))


def _instructions(env: Mapping[str, str], tmp: Path, mode: str, port: int, requests: int, connections: int) -> float:
    """User-space instructions per request of the serving process, from callgrind."""
    out = tmp / f"{mode}.callgrind"
    cmd = ["valgrind", "--tool=callgrind", "--trace-children=no", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    cmd += [sys.executable, "-m", "sidecar", "serve"]
    with _running(cmd, env, port, tmp / f"{mode}.log", _VALGRIND_STARTUP_SECONDS) as pid:
        drive(port, _VALGRIND_WARMUP_REQUESTS, connections)
        control = ["callgrind_control"]
        subprocess.run([*control, "--instr=on", str(pid)], check=True, capture_output=True)
        drive(port, requests, connections)
        subprocess.run([*control, "--instr=off", str(pid)], check=True, capture_output=True)
        subprocess.run([*control, "--dump", str(pid)], check=True, capture_output=True)
    dump = next(tmp.glob(f"{mode}.callgrind.1"))
    # The dump's "totals:" line (its "summary:" line reads 0 when instrumentation starts off).
    totals = next(line for line in dump.read_text().splitlines() if line.startswith("totals:"))
    return int(totals.split()[1]) / requests


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.calls_per_request", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="measured requests per mode (default 5000)")
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help=f"(default {CONNECTIONS})")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions per request (valgrind)")
    parser.add_argument("--top", type=int, default=25, help="functions listed whose calls differ (default 25)")
    parser.add_argument("--sidecar-env", action="append", default=[], metavar="SIDECAR_NAME=VALUE")
    parser.add_argument("--serve-profiled", type=Path, help=argparse.SUPPRESS)  # the sidecar side of a run
    args = parser.parse_args(argv)
    if args.serve_profiled is not None:
        _serve_profiled(args.serve_profiled)
        return 0
    modes = args.modes.split(",")
    if not set(modes) <= set(MODES) or args.requests < 1:
        parser.error(f"--modes takes {', '.join(MODES)}; --requests at least 1")
    for tool in ("nginx", *(("valgrind", "callgrind_control") if args.callgrind else ())):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found on PATH")
    settings = sidecar_settings(parser, args.sidecar_env, PROXY_ONLY)
    calls: dict[str, dict[str, float]] = {}
    lines = [f"sidecar settings: {' '.join(f'{k}={v}' for k, v in sorted(settings.items()))}"]
    with tempfile.TemporaryDirectory(prefix="sidecar-calls-") as name, contextlib.ExitStack() as stack:
        tmp = Path(name)
        upstream, challenger = _free_port(), _free_port()
        for which, port in (("upstream", upstream), ("challenger", challenger)):
            block = _UPSTREAM_SERVER.format(host=HOST, port=port, response=RESPONSE_BODY)
            stack.enter_context(_nginx(tmp, which, block, port))
        for mode in modes:
            port = _free_port()
            env = sidecar_environment(settings, upstream_port=upstream, port=port, state_dir=tmp / f"state-{mode}")
            if mode == "split":
                path = tmp / "experiment-split.yaml"
                path.write_text(definition("split", f"http://{HOST}:{challenger}"))
                env["SIDECAR_EXPERIMENT_PATH"] = str(path)
            stats = _profile(env, tmp, mode, port, args.requests, args.connections)
            calls[mode] = calls_per_request(stats, args.requests)
            line = f"{mode:<6} {sum(calls[mode].values()):8.2f} Python calls per request"
            if args.callgrind:
                port = _free_port()
                env["SIDECAR_LISTEN_PORT"] = str(port)
                instructions = _instructions(env, tmp, mode, port, args.requests, args.connections)
                line += f", {instructions:,.0f} instructions per request"
            lines.append(line)
    lines.append(f"({args.requests} requests per mode over {args.connections} connections, after a warm-up)")
    if len(modes) == 2:
        first, second = (calls[m] for m in modes)
        changed = sorted(
            ((second.get(k, 0.0) - first.get(k, 0.0), k) for k in first.keys() | second.keys()),
            key=lambda item: -abs(item[0]),
        )
        lines.append(f"calls per request, {modes[1]} - {modes[0]}, by function:")
        lines += [f"  {delta:+6.2f}  {where}" for delta, where in changed[: args.top] if abs(delta) >= 0.05]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

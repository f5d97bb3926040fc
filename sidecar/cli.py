"""The ``ml-sidecar`` command line: ``serve``, ``check-config`` and ``profile build|show|check``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from sidecar import __version__
from sidecar.config import Settings
from sidecar.exceptions import ConfigError, ProblemsError, SidecarError
from sidecar.profiling.command import add_profile_commands

__all__ = ["main"]

logger = logging.getLogger("sidecar")

EXIT_CONFIG = 2


def _load_settings() -> Settings:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print("ml-sidecar: invalid configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    for var in Settings.unknown_variables():
        closest = Settings.closest_variable(var)
        hint = f"; did you mean {closest}?" if closest else ""
        print(f"ml-sidecar: warning: {var} is not a known setting and is ignored{hint}", file=sys.stderr)
    return settings


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return None
    return uvloop.new_event_loop


async def _serve(settings: Settings) -> None:
    from sidecar.server import Sidecar  # imported late so check-config stays light

    sidecar = Sidecar(settings)
    await sidecar.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sidecar.request_shutdown)
    await sidecar.wait_stopped()
    logger.info("stopped")


def _run(main: Coroutine[Any, Any, None]) -> int:
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        try:
            runner.run(main)
        except ProblemsError as exc:
            # A file named by a setting (the alert rules, the quality rules, the experiment) that cannot
            # be used is a configuration error like a bad variable: the same status, one line per problem.
            print("ml-sidecar: invalid configuration:", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
            return EXIT_CONFIG
        except SidecarError as exc:
            print(f"ml-sidecar: {exc}", file=sys.stderr)
            return 1
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return _run(_serve(settings))


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _load_settings()
    # VAR=value lines that can be pasted back into an environment file; secrets show as ***.
    for var, value in settings.describe().items():
        print(f"{var}={value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-sidecar", description="ML-monitoring sidecar for model servers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("serve", help="run the proxy and admin apps (configured by SIDECAR_* variables)").set_defaults(
        func=cmd_serve
    )
    commands.add_parser(
        "check-config", help="validate SIDECAR_* variables and print the effective configuration"
    ).set_defaults(func=cmd_check_config)
    add_profile_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)

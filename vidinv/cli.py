"""The ``vidinv`` command line: flags -> a config object -> the pipeline.

Each sub-command lives in ``vidinv/commands/<name>.py`` and exposes
``add_parser(subparsers)`` (registers its flags, sets ``func``) and is otherwise
independent. Errors are one clear line and a non-zero exit; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

# Sub-command modules, in the order ``--help`` lists them.
COMMANDS = ("edit", "invert", "faces", "eval", "directions", "weights", "doctor", "bench", "train")

EPILOG = """examples:
  vidinv edit clip.mp4 --attr smile --strength 2
  vidinv edit clip.mp4 --attr smile=1.5 --attr age=-1 --out edited.mp4
  vidinv faces clip.mp4
  vidinv eval ravdess /data/RAVDESS --num-videos 120 --seed 0
  vidinv weights list
  vidinv doctor
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidinv",
        description="Edit faces in real videos through StyleGAN2 and the Feature-Style encoder.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, only errors")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"vidinv.commands.{name}")
        except ModuleNotFoundError as exc:  # a command not built yet
            if exc.name == f"vidinv.commands.{name}":
                continue
            raise
        mod.add_parser(sub)
    for command in sub.choices.values():
        plain_help(command)
    return parser


def plain_help(parser: argparse.ArgumentParser) -> None:
    """Drop reST literal markup (````name````) from a parser's description, epilog and flag help:
    the commands reuse their docstrings, which are written for the API docs."""
    parser.description = _plain(parser.description)
    parser.epilog = _plain(parser.epilog)
    for action in parser._actions:
        action.help = _plain(action.help)


def _plain(text: str | None) -> str | None:
    return text.replace("``", "") if isinstance(text, str) else text


def unwrap_error(exc: BaseException) -> BaseException:
    """The original exception behind remote wrappers (Ray's ``RayTaskError`` keeps it as ``cause``), so an
    error raised in a worker reaches the user as the same one line it would be in-process."""
    seen = set()
    while isinstance(getattr(exc, "cause", None), BaseException) and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.cause
    return exc


def close_bars() -> None:
    """Close the pipeline's open progress bars, so that the error line printed next stands alone on the
    last line of stderr (nothing is imported when no pipeline ran)."""
    cache = sys.modules.get("pipelines.cache")
    if cache is not None:
        cache.close_progress()
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # global flags may be given after the sub-command too
    debug = "--debug" in argv
    quiet = "--quiet" in argv
    argv = [a for a in argv if a not in ("--debug", "--quiet")]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.debug, args.quiet = debug, quiet
    logging.basicConfig(
        level=logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO),
        format="%(message)s" if not debug else "%(levelname)s %(name)s: %(message)s",
    )
    if args.version:
        from vidinv import __version__

        print(f"vidinv {__version__}")
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    from vidinv.allocator import tune_allocator
    from vidinv.errors import VidinvError

    tune_allocator()  # large tensor buffers reused, not faulted in again for every layer (vidinv/allocator.py)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        close_bars()
        print("vidinv: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (`vidinv weights list | head -1`): as SIGPIPE
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush into the pipe
        except (OSError, ValueError, AttributeError):
            pass
        return 141
    except Exception as raised:  # one line unless --debug
        if debug:
            raise
        close_bars()
        exc = unwrap_error(raised)
        if isinstance(exc, VidinvError):
            print(f"vidinv: error: {exc}", file=sys.stderr)
            return exc.exit_code
        print(f"vidinv: error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", file=sys.stderr)
        return 1


def entry() -> None:
    """The ``vidinv`` command: :func:`main`, then :func:`quick_exit`."""
    quick_exit(main())


def quick_exit(rc: int) -> None:
    """Exit with ``rc`` without the interpreter's module teardown (about a second after a run with models
    loaded, on a 2-core machine): the exit handlers still run (temporary files removed, Ray's local
    instance stopped, logs flushed) and the streams are flushed, so nothing is left to write by then.
    ``VIDINV_SLOW_EXIT=1``: the ordinary exit."""
    import atexit

    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)  # CPython's; elsewhere the ordinary exit
    if run_exitfuncs is None or os.environ.get("VIDINV_SLOW_EXIT"):
        sys.exit(rc)
    run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`vidinv weights list | head -1`) or a closed stream
            pass
    os._exit(rc)


if __name__ == "__main__":  # pragma: no cover
    entry()

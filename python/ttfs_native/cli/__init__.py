"""The ``ttfs-native`` command line: one module per subcommand, each with
``add_parser(subparsers)`` (which sets ``func``). The only part of the package
that knows argparse, exit codes and file arguments; no library module imports it."""
from __future__ import annotations

import argparse
import sys
import warnings

from . import calibrate, convert, demo, info, simulate
from .common import CliError

SUBCOMMANDS = (simulate, convert, calibrate, demo, info)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ttfs-native",
        description="Simulate converted spiking neural networks with time-to-first-spike coding and a "
                    "dynamic threshold (SNN Toolbox's ttfs_dyn_thresh semantics) on CPU or GPU.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"ttfs-native: warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `ttfs-native demo | head` (before OSError: it is one)
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CliError, ValueError, TypeError, OSError, RuntimeError, ImportError, MemoryError) as e:
        # OSError: a file the user named cannot be read or written (permissions, disk full, ...)
        print(f"ttfs-native {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

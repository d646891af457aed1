"""The ``faceverify`` command: the parser, logging and turning errors into exit codes.

Data goes to stdout, everything else (logs, progress bars, errors) to stderr. Errors are
one line; exit codes: 0 success, 1 error, 2 bad usage, 3 done but some inputs skipped.
Each area's subcommands live in their own module, which registers them here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from faceverify import __version__
from faceverify.cli import (
    doctor,
    embed,
    evaluate,
    faces,
    gallery,
    library,
    models,
    prepare,
    serve,
    train,
    video,
)
from faceverify.cli.common import EXIT_ERROR, EXIT_OK, PROG, Parser, print_error, shared_options
from faceverify.errors import FaceVerifyError

#: The command modules, in the order their subcommands appear in ``--help``.
AREAS = (models, embed, faces, evaluate, gallery, library, video, prepare, train, serve, doctor)


def build_parser() -> argparse.ArgumentParser:
    common, model_opts = shared_options()
    parser = Parser(prog=PROG, description="Face embeddings and verification with modern CNNs.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for area in AREAS:
        area.register(sub, common, model_opts)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    _configure_logging(verbose=args.verbose, quiet=args.quiet)
    try:
        code: int = args.handler(args)
        return code
    except FaceVerifyError as exc:
        print_error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
    except BrokenPipeError:  # e.g. `faceverify embed ... | head`: the reader left, not an error
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:  # a bug: still one line unless asked for the traceback
        if args.verbose:
            raise
        print_error(f"unexpected {type(exc).__name__}: {exc} (rerun with -v for the traceback)")
        return EXIT_ERROR


def _configure_logging(*, verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    root = logging.getLogger("faceverify")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


if __name__ == "__main__":
    sys.exit(main())

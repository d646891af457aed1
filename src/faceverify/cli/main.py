"""The ``faceverify`` command: argument parsing, logging and error handling.

Data goes to stdout, everything else (logs, progress bars, errors) to stderr. Errors are
one line; exit codes: 0 success, 1 error, 2 bad usage, 3 done but some inputs skipped.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from faceverify import __version__
from faceverify.errors import FaceVerifyError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
PROG = "faceverify"


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line on stderr too."""

    def error(self, message: str) -> NoReturn:
        _print_error(f"{message} (see '{self.prog} --help')")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    from faceverify.cli import commands, evaluate, gallery, train

    common = _Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log details (and tracebacks)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
    common.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")

    model_opts = _Parser(add_help=False)
    group = model_opts.add_argument_group("model")
    group.add_argument(
        "--model", help="timm model name or a trained checkpoint (default: convnext_atto.d2_in1k)"
    )
    group.add_argument("--weights", help="local .safetensors file or folder; default: Hugging Face hub")
    group.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda, cuda:N, mps")
    group.add_argument("--batch-size", type=_positive_int, default=32, help="images per batch (32)")
    group.add_argument(
        "--input-size", type=_positive_int, help="network input side, e.g. 112 for small crops"
    )
    group.add_argument(
        "--crop-pct", type=float, help="centre-crop fraction; 1.0 keeps tight face crops whole"
    )

    parser = _Parser(prog=PROG, description="Face embeddings and verification with modern CNNs.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("models", parents=[common], help="list curated models and their embedding dims")
    p.set_defaults(handler=commands.models)

    p = sub.add_parser("embed", parents=[common, model_opts], help="embed images and folders of images")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files or folders (recursive)")
    p.add_argument(
        "--out", help="write FILE.npy (with FILE.meta.json) or FILE.jsonl; default: JSONL on stdout"
    )
    p.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    p.set_defaults(handler=commands.embed)

    p = sub.add_parser("verify", parents=[common, model_opts], help="are two face images the same person?")
    p.add_argument("image_a", metavar="IMAGE_A")
    p.add_argument("image_b", metavar="IMAGE_B")
    p.add_argument("--threshold", type=float, help="cosine threshold (default: the model's, else 0.5)")
    p.set_defaults(handler=commands.verify)

    p = sub.add_parser(
        "evaluate", parents=[common, model_opts], help="verification metrics, identification, reports"
    )
    evaluate.add_pairs_options(p)
    group = p.add_argument_group("identification")
    group.add_argument("--gallery", help="folder of enrolled people: <gallery>/<person>/*.jpg")
    group.add_argument("--probes", help="folder of probe people: <probes>/<person>/*.jpg")
    p.add_argument("--report", metavar="DIR", help="write report.json and PNG plots into DIR")
    p.add_argument("--threshold", type=float, help="operating threshold (default: the model's, else 0.5)")
    p.set_defaults(handler=evaluate.evaluate)

    p = sub.add_parser("calibrate", parents=[common, model_opts], help="choose and store a threshold")
    evaluate.add_pairs_options(p)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--far", type=float, help="target false accept rate, e.g. 1e-3")
    target.add_argument("--at", choices=("eer",), help="the equal error rate point")
    p.add_argument("--dry-run", action="store_true", help="print the threshold without storing it")
    p.set_defaults(handler=evaluate.calibrate)

    gallery.register(sub, common, model_opts)
    train.register(sub, common, model_opts)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    _configure_logging(verbose=args.verbose, quiet=args.quiet)
    try:
        code: int = args.handler(args)
        return code
    except FaceVerifyError as exc:
        _print_error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        _print_error("interrupted")
        return 130
    except BrokenPipeError:  # e.g. `faceverify embed ... | head`: the reader left, not an error
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:  # a bug: still one line unless asked for the traceback
        if args.verbose:
            raise
        _print_error(f"unexpected {type(exc).__name__}: {exc} (rerun with -v for the traceback)")
        return EXIT_ERROR


def _configure_logging(*, verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    root = logging.getLogger("faceverify")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _print_error(message: str) -> None:
    one_line = " ".join(message.split())
    print(f"{PROG}: error: {one_line}", file=sys.stderr)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


if __name__ == "__main__":
    sys.exit(main())

"""`python -m models describe NAME|SPEC.yaml` (and `export`, when available)."""

from __future__ import annotations

import argparse
import sys

from ._describe import describe, spec_from_name_or_file


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _describe_command(args: argparse.Namespace) -> None:
    spec = spec_from_name_or_file(args.spec)
    print(describe(spec, args.image_size))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = _Parser(prog="python -m models", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    describe_parser = commands.add_parser("describe", help="print an architecture as a table")
    describe_parser.add_argument("spec", help="a preset name or a spec YAML/JSON file")
    describe_parser.add_argument("--image-size", type=int, default=None,
                                 help="input side in pixels (default: the stem's natural size)")
    describe_parser.set_defaults(run=_describe_command)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

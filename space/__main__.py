"""`python -m space schema|reference`: print the study file's JSON Schema or its reference page.

Both are generated from the study schema (space/_schema.py) and the registries;
the checkout keeps them as files, which a test compares with a fresh copy:

    python -m space schema > space/study.schema.json
    python -m space reference > docs/STUDY_REFERENCE.md
"""

from __future__ import annotations

import sys

from models.cli import OneLineParser

from ._reference import reference_markdown, schema_text

OUTPUTS = {
    "schema": (schema_text, "the JSON Schema (draft 2020-12) of a study file, as space/study.schema.json"),
    "reference": (reference_markdown, "every field of a study file, as docs/STUDY_REFERENCE.md"),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = OneLineParser(prog="python -m space", description=__doc__.splitlines()[0])
    parser.add_argument("output", choices=list(OUTPUTS),
                        help="; ".join(f"{name}: {what}" for name, (_, what) in OUTPUTS.items()))
    args = parser.parse_args(argv)
    sys.stdout.write(OUTPUTS[args.output][0]())
    return 0


if __name__ == "__main__":
    sys.exit(main())

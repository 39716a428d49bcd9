"""Regenerates the README's model table from the registry.

The table (name, family, default input, classes, parameters, MACs and FLOPs at the default
input, paper) is ``keras_apps.analysis.model_table_markdown()``; this script replaces only
the lines between ``<!-- model-table:start -->`` and ``<!-- model-table:end -->``.

    python tools/gen_model_table.py            # rewrite the block in README.md
    python tools/gen_model_table.py --check    # exit 1 if the block is stale

Exit status: 0 up to date (or rewritten), 1 stale (``--check``), 2 README or markers missing.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
START = "<!-- model-table:start -->"
END = "<!-- model-table:end -->"


def _import_analysis():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from keras_apps import analysis

    return analysis


def replace_block(text: str, table: str, *, path="README.md") -> str:
    """``text`` with the lines between the markers replaced by ``table``.

    Raises:
        ValueError: a marker is missing, repeated, or the end comes before the start.
    """
    for marker in (START, END):
        count = text.count(marker)
        if count != 1:
            raise ValueError(f"{path} must contain the marker {marker!r} exactly once, found {count}.")
    start = text.index(START) + len(START)
    end = text.index(END)
    if end < start:
        raise ValueError(f"In {path} the marker {END!r} comes before {START!r}.")
    return text[:start] + "\n" + table + text[end:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", default=str(REPO / "README.md"), help="README to update")
    parser.add_argument("--check", action="store_true", help="exit 1 if the table is stale")
    parser.add_argument("--pattern", default=None, help="only models matching this fnmatch pattern")
    args = parser.parse_args(argv)

    readme = pathlib.Path(args.readme)
    if not readme.is_file():
        print(
            f"error: {readme} does not exist. This script only rewrites the block between "
            f"{START} and {END} of an existing README.",
            file=sys.stderr,
        )
        return 2
    text = readme.read_text()
    try:
        replace_block(text, "", path=str(readme))  # markers first: building every model is slow
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = _import_analysis().model_table_markdown(args.pattern)
    updated = replace_block(text, table, path=str(readme))
    if updated == text:
        print(f"{readme}: model table is up to date.")
        return 0
    if args.check:
        print(
            f"{readme}: model table is stale; run `python tools/gen_model_table.py` to "
            "regenerate it.",
            file=sys.stderr,
        )
        return 1
    readme.write_text(updated)
    print(f"{readme}: model table regenerated.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Regenerate the option reference in README.md from the Config declarations.

Run: ``python docs/update_readme.py``. ``tests/test_readme.py`` fails when the README
and the code disagree, and names this script.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

START = "<!-- options-table:start -->"
END = "<!-- options-table:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"


def with_table(text: str, table: str) -> str:
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {START} ... {END} section")
    return pattern.sub(lambda _: f"{START}\n{table.strip()}\n{END}", text)


def main() -> int:
    sys.path.insert(0, str(README.parent))
    from aiogate.cli import usage_table_markdown

    text = README.read_text()
    updated = with_table(text, usage_table_markdown())
    if updated != text:
        README.write_text(updated)
        print("README.md option table updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

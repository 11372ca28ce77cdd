"""Regenerate the option reference in README.md from the Config declarations, and
the "Coming from gunicorn or uvicorn" table from aiogate/peer_flags.py.

Run: ``python docs/update_readme.py``. ``tests/test_readme.py`` fails when the README
and the code disagree, and names this script.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

START = "<!-- options-table:start -->"
END = "<!-- options-table:end -->"
PEER_START = "<!-- peer-flags-table:start -->"
PEER_END = "<!-- peer-flags-table:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"


def with_table(text: str, table: str, start: str = START, end: str = END) -> str:
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {start} ... {end} section")
    return pattern.sub(lambda _: f"{start}\n{table.strip()}\n{end}", text)


def main() -> int:
    sys.path.insert(0, str(README.parent))
    from aiogate.cli import usage_table_markdown
    from aiogate.peer_flags import peer_table_markdown

    text = README.read_text()
    updated = with_table(text, usage_table_markdown())
    updated = with_table(updated, peer_table_markdown(), PEER_START, PEER_END)
    if updated != text:
        README.write_text(updated)
        print("README.md option tables updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

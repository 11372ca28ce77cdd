"""``python -m aiogate``: the same command as the ``aiogate`` console script.

Owns nothing but the hand-off to ``aiogate.cli.main``; runs in the main thread.
"""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

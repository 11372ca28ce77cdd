"""Benchmarks comparing aiogate with waitress and gunicorn; see ``README.md`` here."""

from __future__ import annotations

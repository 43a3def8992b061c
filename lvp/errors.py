"""Errors every `lvp` command reports the same way: one line on stderr, no traceback."""

from __future__ import annotations


class Unavailable(RuntimeError):
    """A service the command needs (Kafka, DynamoDB) did not answer or refused the request; the
    message names it and the setting that points at it."""

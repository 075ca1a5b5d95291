"""The lab's exceptions: each carries one line that says what went wrong and what to do.

Callers (the CLI, notebooks) print ``str(error)`` and stop; they never need the traceback.
"""

from __future__ import annotations


class LabError(Exception):
    """Base class of every error the lab raises on purpose."""


class NoRedisServerError(LabError):
    """No server was given, no Docker engine answers and no ``redis-server`` binary was found."""


class ServerStartError(LabError):
    """A throwaway server was found but would not start."""


class LabConnectionError(LabError):
    """The server could not be reached, or refused the credentials."""


class RefusedToFlushError(LabError):
    """The lab was asked to empty a database holding data it did not create."""


class MissingFeatureError(LabError):
    """The running server lacks a command or module a lesson needs."""

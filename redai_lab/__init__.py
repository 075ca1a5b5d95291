"""redai_lab: the helper package behind the RedAI Redis handbook's notebooks.

Notebooks teach; this package does. Start here::

    from redai_lab import start_lesson
    lesson = start_lesson("03_hashes")   # database 3 of the lab's server, emptied
    r = lesson.client                    # a redis-py client (decode_responses=True)
    ...
    lesson.finish()                      # leave nothing behind
"""

from .errors import (
    LabConnectionError,
    LabError,
    MissingFeatureError,
    NoRedisServerError,
    RefusedToFlushError,
    ServerStartError,
)
from .lab.connection import connect, connect_cluster
from .lab.lesson import Lesson, start_lesson
from .lab.server import RedisServer, find_or_start, lab_server

__all__ = [
    "LabConnectionError",
    "LabError",
    "Lesson",
    "MissingFeatureError",
    "NoRedisServerError",
    "RedisServer",
    "RefusedToFlushError",
    "ServerStartError",
    "connect",
    "connect_cluster",
    "find_or_start",
    "lab_server",
    "start_lesson",
]

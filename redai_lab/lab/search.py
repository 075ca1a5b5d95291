"""Where a lesson's query-engine indexes live: database 0, under names that start with the lesson's.

The query engine (RediSearch) indexes database 0 only: ``FT.CREATE`` in any other database
answers "Cannot create index on db != 0". And index names are server-wide: ``FT.DROPINDEX``
drops any index of any client. So a lesson that teaches the query engine cannot keep its
documents in its own database; instead it writes them to database 0 under a prefix of the lab's
own (``redai-lab:<lesson>:``), names its indexes with the same prefix, and drops exactly those,
and deletes exactly those keys, when it starts (leftovers of a run stopped half-way) and when it
finishes::

    space = search_space(lesson)                  # lesson.finish() clears it too
    r0 = space.client                             # redis-py on database 0
    r0.hset(space.key("question:1"), mapping=...)
    r0.ft(space.index("questions")).create_index(..., definition=IndexDefinition(prefix=[space.key("question:")]))

The lab deletes keys it did not write nowhere: ``redai-lab:`` is the lab's own prefix (see
``redai_lab.lab.lesson``), and only the lesson's part of it is touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from .connection import connect, database_url
from .lesson import LAB_KEY_PREFIX, Lesson, redis_cli

INDEXED_DB = 0  # the only database the query engine indexes


@dataclass
class SearchSpace:
    """A lesson's keys and index names in database 0, and a client there."""

    client: redis.Redis
    prefix: str  # "redai-lab:30_query_engine:"
    url: str  # of database 0

    def cli(self, command: str) -> None:
        """``command`` through redis-cli in database 0, printed as ``Lesson.cli`` prints it.

        Not the lesson's database: ``FT.SEARCH`` finds the index from any database, but reads
        the fields it returns from the keys of the database it runs in.
        """
        print(f"redis> {command}\n{redis_cli(self.url, command)}")

    def key(self, name: str) -> str:
        """The key ``name`` inside the space (``question:1`` -> ``redai-lab:30_query_engine:question:1``)."""
        return self.prefix + name

    def index(self, name: str) -> str:
        """The server-wide name of the lesson's index ``name``."""
        return self.prefix + "idx:" + name

    def clear(self) -> int:
        """Drop the space's indexes (never another's) and delete its keys; how many keys there were."""
        for name in self.client.execute_command("FT._LIST") if _has_search(self.client) else []:
            if str(name).startswith(self.prefix):
                self.client.ft(str(name)).dropindex(delete_documents=False)
        keys = list(self.client.scan_iter(match=f"{self.prefix}*", count=1000))
        return sum(int(self.client.unlink(*keys[i:i + 1000])) for i in range(0, len(keys), 1000))  # type: ignore[misc]


def search_space(lesson: Lesson) -> SearchSpace:
    """Lesson ``lesson``'s space in database 0, emptied now and again by ``lesson.finish()``."""
    space = SearchSpace(connect(lesson.server.url, db=INDEXED_DB), f"{LAB_KEY_PREFIX}{lesson.name}:",
                        database_url(lesson.server.url, INDEXED_DB))
    space.clear()
    lesson.on_finish(space.clear)
    return space


def _has_search(r: redis.Redis) -> bool:
    return bool(r.command_list(pattern="ft._list"))

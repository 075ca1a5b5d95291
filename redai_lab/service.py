"""The exam platform in miniature: a FastAPI service on ``redis.asyncio``, for lesson 27.

    app = create_app(redis_url, ExamDatabase("sqlite:///exams.db"), limit=5, period=60)
    async with serve(app) as http:            # lifespan run, an httpx client on the app itself
        (await http.get("/exams/1")).json()

| endpoint | what it does |
| --- | --- |
| ``POST /login`` ``{"user": "ann"}`` | a new session (``redai_lab.patterns.sessions``), its id in an HttpOnly cookie |
| ``POST /logout`` | ends the session, deletes the cookie |
| ``GET /me`` | the session's user; 401 without a live session |
| ``GET /exams/{id}`` | the exam from SQLite, through ``AsyncCache`` (single flight); rate-limited |
| ``PUT /exams/{id}`` ``{"title": ...}`` | updates SQLite, then invalidates the cached exam |
| ``POST /exams/{id}/scores`` ``{"score": 87}`` | the session's user's best score (``redai_lab.patterns.leaderboard``) |
| ``GET /exams/{id}/leaderboard?page=1&size=10`` | a page of the board, ties sharing a rank |

Every route but ``/login`` depends on ``rate_limited``: ``limit`` requests per ``period`` seconds
per caller (the session's user, else the client's address), one ``AsyncRateLimiter`` (GCRA)
round trip; over the limit it answers 429 with ``Retry-After`` (whole seconds, rounded up).

One ``redis.asyncio`` client (its pool) lives as long as the app: opened in the lifespan,
closed at shutdown. Sessions and the leaderboard have no async API: their calls run in a worker
thread (``asyncio.to_thread``) on a sync client, so they never block the event loop; so do the
SQLAlchemy queries (SQLite's driver is blocking). Authentication is out of scope: ``/login``
trusts the user name it is given.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import redis
import redis.asyncio
import sqlalchemy as sa
from fastapi import Cookie, Depends, FastAPI, HTTPException, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .errors import LabError
from .patterns.cache import AsyncCache
from .patterns.leaderboard import Leaderboard
from .patterns.ratelimit import GCRA, AsyncRateLimiter
from .patterns.sessions import SessionNotFound, SessionStore

SESSION_COOKIE = "session"
CLIENT_NAME = "exam-service"  # CLIENT LIST shows the service's connections under this name
OUTAGE_RETRY_AFTER = 5  # seconds a client is asked to wait when Redis cannot be reached
MAX_EXAM_ID = 2**63 - 1  # SQLite's largest INTEGER: a larger id is a 422, not an overflow

log = logging.getLogger(__name__)


class ExamDatabase:
    """The source of truth: a SQL table of exams (SQLAlchemy Core), counting the queries it runs."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)
        metadata = sa.MetaData()
        self.exams = sa.Table(
            "exams", metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("title", sa.String, nullable=False),
            sa.Column("questions", sa.Integer, nullable=False),
        )
        metadata.create_all(self.engine)
        self.queries = 0
        self._count = threading.Lock()

    def add(self, exam_id: int, title: str, questions: int) -> None:
        with self.engine.begin() as db:
            db.execute(sa.insert(self.exams).values(id=exam_id, title=title, questions=questions))

    def exam(self, exam_id: int) -> dict[str, Any] | None:
        """One exam as a dict, None when there is none (a blocking query)."""
        with self._count:
            self.queries += 1
        with self.engine.connect() as db:
            row = db.execute(sa.select(self.exams).where(self.exams.c.id == exam_id)).mappings().first()
        return None if row is None else dict(row)

    def rename(self, exam_id: int, title: str) -> bool:
        """Set an exam's title; False when there is no such exam."""
        with self.engine.begin() as db:
            changed = db.execute(sa.update(self.exams).where(self.exams.c.id == exam_id).values(title=title))
        return changed.rowcount == 1

    def close(self) -> None:
        self.engine.dispose()


@dataclass
class Services:
    """What the routes use, opened by the lifespan and closed at shutdown."""

    redis: redis.asyncio.Redis
    sync_redis: redis.Redis
    cache: AsyncCache
    limiter: AsyncRateLimiter
    sessions: SessionStore


class Login(BaseModel):
    user: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")


class Rename(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class Score(BaseModel):
    score: int = Field(ge=0, le=1000, strict=True)  # strict: true, "87" and 87.0 are no scores


def services(request: Request) -> Services:
    """The app's open services (a FastAPI dependency)."""
    return request.app.state.services  # type: ignore[no-any-return]


Deps = Annotated[Services, Depends(services)]
ExamId = Annotated[int, Path(ge=1, le=MAX_EXAM_ID)]


async def current_user(deps: Deps, session: Annotated[str | None, Cookie()] = None) -> str | None:
    """The session's user, None without a live session (a bad or ended id is no session)."""
    if session is None:
        return None
    try:
        found = await asyncio.to_thread(deps.sessions.get, session)
    except SessionNotFound:
        return None
    return found.user_id


User = Annotated[str | None, Depends(current_user)]


async def rate_limited(request: Request, deps: Deps, user: User) -> None:
    """429 with Retry-After once the caller has used up its ``limit`` per ``period``."""
    caller = f"user:{user}" if user else f"ip:{request.client.host if request.client else 'unknown'}"
    result = await deps.limiter.hit(caller)
    if not result.allowed:
        raise HTTPException(
            429, "Too many requests: retry later.", headers={"Retry-After": str(math.ceil(result.retry_after))}
        )


def logged_in(user: User) -> str:
    if user is None:
        raise HTTPException(401, "Log in first: POST /login.")
    return user


def create_app(
    redis_url: str, database: ExamDatabase, *, limit: int = 5, period: float = 60.0, cache_ttl: float = 60.0,
    max_connections: int = 20, secure_cookies: bool = True,
) -> FastAPI:
    """The service on the Redis at ``redis_url`` (its database: the service owns its keys)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One pool for the app's life; a bounded one waits for a free connection rather than
        # opening hundreds under a burst (BlockingConnectionPool; timeout: fail after 5 s).
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            redis_url, decode_responses=True, max_connections=max_connections, timeout=5, client_name=CLIENT_NAME
        )
        client = redis.asyncio.Redis.from_pool(pool)  # closing the client closes the pool
        sync_client = redis.Redis.from_url(redis_url, decode_responses=True, client_name=CLIENT_NAME)
        app.state.services = Services(
            redis=client,
            sync_redis=sync_client,
            cache=AsyncCache(client, "cache", ttl=cache_ttl, negative_ttl=5),
            limiter=AsyncRateLimiter(GCRA, client, "api", limit=limit, period=period),
            sessions=SessionStore(sync_client, idle_ttl=1800, max_lifetime=86400),
        )
        try:
            yield
        finally:
            await client.aclose()
            sync_client.close()

    app = FastAPI(title="exam platform (redai-lab lesson 27)", lifespan=lifespan)
    app.state.database = database

    limited = [Depends(rate_limited)]

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    async def redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # One line in the log, never the exception's text: nothing of the request (its cookie) in it.
        log.warning("%s %s: Redis unavailable (%s)", request.method, request.url.path, type(exc).__name__)
        return JSONResponse({"detail": "Service temporarily unavailable: retry later."}, status_code=503,
                            headers={"Retry-After": str(OUTAGE_RETRY_AFTER)})

    @app.exception_handler(LabError)
    async def damaged_data(request: Request, exc: LabError) -> JSONResponse:
        # The lab's errors are one line naming the key (a session id only by its first characters);
        # the client learns nothing of the keys.
        log.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": "Internal error: see the service's log."}, status_code=500)

    @app.post("/login")
    async def login(
        body: Login, response: Response, deps: Deps, session: Annotated[str | None, Cookie()] = None
    ) -> dict[str, str]:
        # Always a new id, and the one the browser had ends: an id planted before login (session
        # fixation) or a previous user's never carries the new login.
        if session is not None:
            await asyncio.to_thread(_end, deps.sessions, session)
        session_id = await asyncio.to_thread(deps.sessions.create, user_id=body.user)
        response.set_cookie(SESSION_COOKIE, session_id, httponly=True, secure=secure_cookies, samesite="lax")
        return {"user": body.user}

    @app.post("/logout", dependencies=limited)
    async def logout(response: Response, deps: Deps, session: Annotated[str | None, Cookie()] = None) -> dict[str, bool]:
        ended = session is not None and await asyncio.to_thread(_end, deps.sessions, session)
        response.delete_cookie(SESSION_COOKIE, httponly=True, secure=secure_cookies, samesite="lax")
        return {"ended": ended}

    @app.get("/me", dependencies=limited)
    async def me(user: Annotated[str, Depends(logged_in)]) -> dict[str, str]:
        return {"user": user}

    @app.get("/exams/{exam_id}", dependencies=limited)
    async def exam(exam_id: ExamId, deps: Deps) -> dict[str, Any]:
        found = await deps.cache.get_or_load(f"exam:{exam_id}", _in_thread(database.exam, exam_id))
        if found is None:
            raise HTTPException(404, f"No exam {exam_id}.")
        return found  # type: ignore[no-any-return]

    @app.put("/exams/{exam_id}", dependencies=limited)
    async def rename(exam_id: ExamId, body: Rename, deps: Deps) -> dict[str, Any]:
        if not await asyncio.to_thread(database.rename, exam_id, body.title):
            raise HTTPException(404, f"No exam {exam_id}.")
        await deps.cache.invalidate(f"exam:{exam_id}")  # after the database changed
        return {"id": exam_id, "title": body.title}

    @app.post("/exams/{exam_id}/scores", dependencies=limited)
    async def submit(exam_id: ExamId, body: Score, deps: Deps, user: Annotated[str, Depends(logged_in)]) -> dict[str, Any]:
        board = Leaderboard(deps.sync_redis, f"board:exam:{exam_id}")
        await asyncio.to_thread(board.add, {user: body.score}, keep_best=True)
        entry = await asyncio.to_thread(board.rank, user)
        assert entry is not None  # just added
        return {"user": user, "best": entry.score, "rank": entry.rank}

    @app.get("/exams/{exam_id}/leaderboard", dependencies=limited)
    async def leaderboard(exam_id: ExamId, deps: Deps, page: int = 1, size: int = 10) -> dict[str, Any]:
        if page < 1 or not 1 <= size <= 100:
            raise HTTPException(422, "page >= 1 and 1 <= size <= 100.")
        board = Leaderboard(deps.sync_redis, f"board:exam:{exam_id}")
        found = await asyncio.to_thread(board.page, page, size)
        return {
            "page": found.number, "pages": found.pages, "total": found.total,
            "entries": [{"rank": e.rank, "user": e.member, "score": e.score} for e in found.entries],
        }

    return app


def _end(sessions: SessionStore, session_id: str) -> bool:
    """End a session; False when the id is unknown, malformed or already ended."""
    try:
        return sessions.logout(session_id)
    except SessionNotFound:
        return False


def _in_thread(query: Callable[[int], Any], exam_id: int) -> Callable[[], Awaitable[Any]]:
    """An async loader running a blocking query in a worker thread."""
    return lambda: asyncio.to_thread(query, exam_id)


@asynccontextmanager
async def serve(app: FastAPI, base_url: str = "https://exam.test") -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan, and an ``httpx.AsyncClient`` that calls it in-process (no socket).

    httpx's ``ASGITransport`` sends no lifespan events: this runs them around the client. The
    base URL is https so that the Secure session cookie is sent back.
    """
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client

"""The lesson-27 FastAPI service against a real Redis and a real SQLite file, called with
``httpx.AsyncClient`` in-process: exact rate limiting under 100 concurrent requests, one query
for a burst of misses, sessions, invalidation, the leaderboard."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from redai_lab.lab.server import start_local
from redai_lab.patterns.sessions import SessionStore
from redai_lab.service import ExamDatabase, create_app, serve


@pytest.fixture
def database(tmp_path: Path) -> ExamDatabase:
    db = ExamDatabase(f"sqlite:///{tmp_path / 'exams.db'}")
    db.add(1, "Redis basics", 20)
    db.add(2, "Production Redis", 30)
    yield db
    db.close()


def call(redis_url: str, database: ExamDatabase, scenario: Callable[[httpx.AsyncClient], Awaitable[Any]],
         **options: Any) -> Any:
    async def main() -> Any:
        async with serve(create_app(redis_url, database, **options)) as http:
            return await scenario(http)

    return asyncio.run(main())


def test_100_concurrent_requests_on_a_limit_of_5_get_exactly_5_answers(redis_url, database, r) -> None:
    async def burst(http: httpx.AsyncClient) -> list[httpx.Response]:
        return list(await asyncio.gather(*(http.get("/exams/1") for _ in range(100))))

    responses = call(redis_url, database, burst, limit=5, period=60)
    assert sorted(response.status_code for response in responses) == [200] * 5 + [429] * 95
    # GCRA: the next request is admitted 12 s (period / limit) after the burst's first; rounded up.
    waits = {int(response.headers["Retry-After"]) for response in responses if response.status_code == 429}
    assert waits and all(1 <= wait <= 12 for wait in waits), waits
    assert all(response.json() == {"id": 1, "title": "Redis basics", "questions": 20}
               for response in responses if response.status_code == 200)
    assert database.queries == 1  # five concurrent misses, one query (single flight)


def test_a_burst_of_misses_queries_the_database_once_and_hits_after(redis_url, database) -> None:
    async def scenario(http: httpx.AsyncClient) -> list[int]:
        first = await asyncio.gather(*(http.get("/exams/2") for _ in range(50)))
        again = await http.get("/exams/2")
        missing = await asyncio.gather(*(http.get("/exams/404") for _ in range(3)))
        return [r.status_code for r in [*first, again, *missing]]

    codes = call(redis_url, database, scenario, limit=1000)
    assert codes == [200] * 51 + [404] * 3
    assert database.queries == 2  # exam 2 once, the missing exam once (a cached "not found")


def test_login_me_logout_with_a_session_cookie(redis_url, database, r) -> None:
    async def scenario(http: httpx.AsyncClient) -> list[Any]:
        anonymous = await http.get("/me")
        login = await http.post("/login", json={"user": "ann"})
        cookie = login.headers["set-cookie"]
        me = await http.get("/me")
        logout = await http.post("/logout")
        after = await http.get("/me")
        bad = await http.post("/login", json={"user": "ann smith"})
        return [anonymous.status_code, cookie, me.json(), logout.json(), after.status_code, bad.status_code]

    anonymous, cookie, me, logout, after, bad = call(redis_url, database, scenario, limit=1000)
    assert anonymous == 401
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=lax" in cookie
    assert me == {"user": "ann"}
    assert logout == {"ended": True}
    assert after == 401
    assert bad == 422
    # The session is gone; the user's index keeps its dead id until the session's deadline.
    assert list(r.scan_iter("session:*")) == [SessionStore(r).index_key("ann")]


def test_the_limit_counts_per_user_once_logged_in(redis_url, database) -> None:
    async def scenario(http: httpx.AsyncClient) -> list[int]:
        anonymous = [(await http.get("/exams/1")).status_code for _ in range(3)]
        await http.post("/login", json={"user": "bob"})
        bob = [(await http.get("/exams/1")).status_code for _ in range(3)]
        return anonymous + bob

    assert call(redis_url, database, scenario, limit=2) == [200, 200, 429, 200, 200, 429]


def test_an_update_invalidates_the_cached_exam(redis_url, database) -> None:
    async def scenario(http: httpx.AsyncClient) -> list[Any]:
        before = (await http.get("/exams/1")).json()["title"]
        renamed = await http.put("/exams/1", json={"title": "Redis, the basics"})
        after = (await http.get("/exams/1")).json()["title"]
        unknown = await http.put("/exams/9", json={"title": "x"})
        return [before, renamed.status_code, after, unknown.status_code]

    assert call(redis_url, database, scenario, limit=1000) == ["Redis basics", 200, "Redis, the basics", 404]
    assert database.queries == 2


def test_scores_keep_each_users_best_and_the_board_ranks_ties_alike(redis_url, database) -> None:
    async def scenario(http: httpx.AsyncClient) -> list[Any]:
        refused = (await http.post("/exams/1/scores", json={"score": 50})).status_code
        answers = [refused]
        for user, score in [("ann", 80), ("bob", 95), ("cat", 80), ("ann", 70)]:
            await http.post("/login", json={"user": user})
            answers.append((await http.post("/exams/1/scores", json={"score": score})).json())
        answers.append((await http.get("/exams/1/leaderboard", params={"size": 2})).json())
        answers.append((await http.get("/exams/1/leaderboard", params={"page": 2, "size": 2})).json())
        return answers

    refused, *submitted, first, second = call(redis_url, database, scenario, limit=1000)
    assert refused == 401
    assert submitted[-1] == {"user": "ann", "best": 80.0, "rank": 2}  # 70 does not replace 80
    assert first == {"page": 1, "pages": 2, "total": 3, "entries": [
        {"rank": 1, "user": "bob", "score": 95.0}, {"rank": 2, "user": "cat", "score": 80.0}]}
    assert second["entries"] == [{"rank": 2, "user": "ann", "score": 80.0}]


def test_the_apps_connections_live_as_long_as_the_app(redis_url, database, r) -> None:
    def service_connections() -> int:
        return sum(client["name"] == "exam-service" for client in r.client_list())

    async def main() -> tuple[int, int]:
        async with serve(create_app(redis_url, database, max_connections=4)) as http:
            await asyncio.gather(*(http.get("/exams/1") for _ in range(20)))
            during = service_connections()
        return during, service_connections()

    during, after = asyncio.run(main())
    assert 1 <= during <= 4 + 1  # the bounded async pool, plus the sync client of the worker threads
    assert after == 0


def test_login_ends_the_session_the_browser_had_and_issues_a_new_id(redis_url, database) -> None:
    async def scenario(http: httpx.AsyncClient) -> list[Any]:
        await http.post("/login", json={"user": "eve"})
        planted = http.cookies["session"]  # an attacker's id, or the previous user's
        await http.post("/login", json={"user": "ann"})
        issued = http.cookies["session"]
        as_ann = (await http.get("/me")).json()
        http.cookies.clear()
        http.cookies.set("session", planted, domain="exam.test")
        return [planted != issued, as_ann, (await http.get("/me")).status_code]

    assert call(redis_url, database, scenario, limit=1000) == [True, {"user": "ann"}, 401]


def test_logout_deletes_the_cookie_with_its_flags_and_a_garbage_cookie_is_no_session(redis_url, database) -> None:
    async def scenario(http: httpx.AsyncClient) -> list[Any]:
        http.cookies.set("session", "not a session id!", domain="exam.test")
        me = (await http.get("/me")).status_code
        logout = await http.post("/logout")
        login = (await http.post("/login", json={"user": "ann"})).status_code
        return [me, logout.status_code, logout.json(), logout.headers["set-cookie"], login]

    me, status, body, cookie, login = call(redis_url, database, scenario, limit=1000)
    assert [me, status, body, login] == [401, 200, {"ended": False}, 200]
    assert "Max-Age=0" in cookie and "HttpOnly" in cookie and "Secure" in cookie and "SameSite=lax" in cookie


def test_bad_ids_and_scores_are_422_never_a_server_error(redis_url, database) -> None:
    async def scenario(http: httpx.AsyncClient) -> list[int]:
        await http.post("/login", json={"user": "ann"})
        codes = [(await http.get(f"/exams/{exam_id}")).status_code for exam_id in ["9" * 30, "0", "-1", "x"]]
        for score in [True, "87", 87.5, -1, 1001, None]:
            codes.append((await http.post("/exams/1/scores", json={"score": score})).status_code)
        codes.append((await http.post("/exams/1/scores", json={"score": 87})).status_code)
        return codes

    assert call(redis_url, database, scenario, limit=1000) == [422] * 10 + [200]


def test_a_redis_outage_is_a_503_with_retry_after_and_one_log_line_without_the_session(
        database, caplog: pytest.LogCaptureFixture) -> None:
    server = start_local()

    async def main() -> list[httpx.Response]:
        async with serve(create_app(server.url, database, limit=1000)) as http:
            await http.post("/login", json={"user": "ann"})
            session_id = http.cookies["session"]
            server.stop()  # a real outage: the process is gone
            answers = [await http.get("/exams/1"), await http.get("/me"), await http.post("/login", json={"user": "ann"})]
            return answers, session_id

    with caplog.at_level(logging.WARNING, logger="redai_lab.service"):
        answers, session_id = asyncio.run(main())
    assert [answer.status_code for answer in answers] == [503, 503, 503]
    assert all(answer.headers["Retry-After"] == "5" for answer in answers)
    assert answers[0].json() == {"detail": "Service temporarily unavailable: retry later."}
    assert [record.getMessage() for record in caplog.records] == [
        "GET /exams/1: Redis unavailable (ConnectionError)", "GET /me: Redis unavailable (ConnectionError)",
        "POST /login: Redis unavailable (ConnectionError)"]
    assert session_id not in caplog.text


def test_damaged_data_in_redis_is_a_500_whose_detail_names_no_key(redis_url, database, r,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    r.set("board:exam:1", "not a sorted set")

    async def scenario(http: httpx.AsyncClient) -> httpx.Response:
        return await http.get("/exams/1/leaderboard")

    with caplog.at_level(logging.ERROR, logger="redai_lab.service"):
        answer = call(redis_url, database, scenario, limit=1000)
    assert answer.status_code == 500 and answer.json() == {"detail": "Internal error: see the service's log."}
    assert len(caplog.records) == 1 and "board:exam:1" in caplog.records[0].getMessage()


def test_waiting_the_retry_after_seconds_is_enough(redis_url, database) -> None:
    async def scenario(http: httpx.AsyncClient) -> list[Any]:
        first = (await http.get("/exams/1")).status_code
        refused = await http.get("/exams/1")
        await asyncio.sleep(int(refused.headers["Retry-After"]))  # what a polite client does
        return [first, refused.status_code, refused.headers["Retry-After"], (await http.get("/exams/1")).status_code]

    # GCRA, 1 per 1.5 s: the next request is admitted 1.5 s after the first; rounded down, 1 s would be too early.
    assert call(redis_url, database, scenario, limit=1, period=1.5) == [200, 429, "2", 200]


def test_every_route_but_login_is_limited_and_the_page_size_is_1_to_100(redis_url, database) -> None:
    async def me(http: httpx.AsyncClient) -> list[int]:
        await http.post("/login", json={"user": "ann"})
        return [(await http.get("/me")).status_code for _ in range(3)]

    async def sizes(http: httpx.AsyncClient) -> list[int]:
        return [(await http.get("/exams/1/leaderboard", params=params)).status_code
                for params in ({"size": 100}, {"size": 101}, {"size": 0}, {"page": 0})]

    assert call(redis_url, database, me, limit=2) == [200, 200, 429]
    assert call(redis_url, database, sizes, limit=1000) == [200, 422, 422, 422]

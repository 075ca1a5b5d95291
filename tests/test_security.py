"""ACL users per service on a real throwaway server (redai_lab.lab.acl): each may run what its service
needs and is refused the rest with NOPERM; passwords are stored hashed; a disabled default user
lets nobody in unauthenticated; a real Celery worker runs a task as the Celery user."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redai_lab.errors import redact
from redai_lab.lab.acl import SERVICE_RULES, acl_hash, create_user, new_password, permissions
from redai_lab.lab.lesson import redis_cli
from redai_lab.lab.server import RedisServer, find_server_binary, start_local


@pytest.fixture(scope="module")
def acl_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("acl") / "users.acl"
    path.write_text("user default on nopass ~* &* +@all\n")  # the server's own default, to start with
    return path


@pytest.fixture(scope="module")
def server(acl_file: Path) -> Iterator[RedisServer]:
    with start_local(modules=[], config=["--aclfile", str(acl_file)]) as throwaway:
        yield throwaway


@pytest.fixture(scope="module")
def passwords(server: RedisServer) -> dict[str, str]:
    admin = redis.Redis.from_url(server.url)
    words = {name: new_password() for name in SERVICE_RULES}
    for name, rules in SERVICE_RULES.items():
        create_user(admin, name, words[name], rules)
    admin.close()
    return words


def _as(server: RedisServer, user: str, password: str) -> redis.Redis:
    host_and_rest = server.url.removeprefix("redis://")
    return redis.Redis.from_url(f"redis://{user}:{password}@{host_and_rest}", decode_responses=True,
                                socket_timeout=5)


def _refused(client: redis.Redis, *command: str) -> str:
    with pytest.raises(redis.exceptions.NoPermissionError) as error:
        client.execute_command(*command)
    return str(error.value)


def test_the_cache_user_works_on_its_keys_and_nothing_else(server: RedisServer, passwords: dict[str, str]) -> None:
    cache = _as(server, "cache", passwords["cache"])
    assert cache.set("cache:exam:1", "{}", ex=60) and cache.get("cache:exam:1") == "{}"
    assert cache.ttl("cache:exam:1") > 0 and cache.delete("cache:exam:1") == 1
    assert "key" in _refused(cache, "GET", "user:1000").lower()
    assert "'flushall' command" in _refused(cache, "FLUSHALL")
    assert "'keys' command" in _refused(cache, "KEYS", "*")
    assert "'hset' command" in _refused(cache, "HSET", "cache:h", "f", "v")
    assert "'config|get' command" in _refused(cache, "CONFIG", "GET", "*")
    cache.close()


def test_the_analytics_user_reads_everything_and_writes_nothing(server: RedisServer, passwords: dict[str, str]) -> None:
    admin = redis.Redis.from_url(server.url, decode_responses=True)
    admin.set("exam:1:title", "Redis basics")
    analytics = _as(server, "analytics", passwords["analytics"])
    assert analytics.get("exam:1:title") == "Redis basics"
    assert analytics.scan(0)[1] == ["exam:1:title"]
    assert "'set' command" in _refused(analytics, "SET", "exam:1:title", "x")
    assert "'del' command" in _refused(analytics, "DEL", "exam:1:title")
    assert "'keys' command" in _refused(analytics, "KEYS", "*")
    assert admin.get("exam:1:title") == "Redis basics"
    admin.delete("exam:1:title")
    analytics.close()
    admin.close()


def test_dry_runs_agree_with_what_the_users_can_do(server: RedisServer, passwords: dict[str, str]) -> None:
    admin = redis.Redis.from_url(server.url)
    verdicts = permissions(admin, "cache", [["GET", "cache:x"], ["GET", "user:1"], ["FLUSHALL"]])
    assert verdicts["GET cache:x"] == "allowed"
    assert verdicts["GET user:1"].startswith("denied: ") and "'user:1' key" in verdicts["GET user:1"]
    assert verdicts["FLUSHALL"].startswith("denied: ") and "'flushall' command" in verdicts["FLUSHALL"]
    admin.close()


def test_the_acl_log_records_denials(server: RedisServer, passwords: dict[str, str]) -> None:
    admin = redis.Redis.from_url(server.url, decode_responses=True)
    admin.acl_log_reset()
    cache = _as(server, "cache", passwords["cache"])
    _refused(cache, "FLUSHDB")
    _refused(cache, "GET", "session:1")
    entries = [(e["username"], e["reason"], e["object"]) for e in admin.acl_log()]
    assert entries == [("cache", "key", "session:1"), ("cache", "command", "flushdb")]  # newest first
    cache.close()
    admin.close()


def test_acl_save_writes_hashes_never_the_passwords(server: RedisServer, passwords: dict[str, str],
                                                    acl_file: Path) -> None:
    admin = redis.Redis.from_url(server.url)
    admin.acl_save()
    saved = acl_file.read_text()
    for name, password in passwords.items():
        assert password not in saved
        assert acl_hash(password) in saved, f"{name}'s hash is not in the file"
    admin.acl_load()  # the file the server wrote loads back
    assert _as(server, "cache", passwords["cache"]).ping()
    admin.close()


class RecordingRedis(redis.Redis):
    """A client that keeps every command it sends (what a network capture would see)."""

    sent: list[tuple[str, ...]]

    def execute_command(self, *args, **options):
        self.sent.append(tuple(str(arg) for arg in args))
        return super().execute_command(*args, **options)


def test_create_user_sends_the_hash_never_the_password(server: RedisServer) -> None:
    admin = RecordingRedis.from_url(server.url, decode_responses=True)
    admin.sent = []
    password = new_password()
    create_user(admin, "reports", password, ["~results:*", "-@all", "+@read"])
    setuser = [args for args in admin.sent if args[:2] == ("ACL", "SETUSER")]
    assert len(setuser) == 1 and acl_hash(password) in setuser[0]
    assert not any(password in arg for args in admin.sent for arg in args)
    assert _as(server, "reports", password).get("results:none") is None  # and the password works
    admin.acl_deluser("reports")
    admin.close()


def test_redis_cli_authenticates_without_the_password_on_its_command_line(
        server: RedisServer, passwords: dict[str, str]) -> None:
    url = f"redis://cache:{passwords['cache']}@{server.url.removeprefix('redis://')}"
    assert redis_cli(url, "SET cache:x 1 EX 10") == "OK"
    assert redis_cli(url, "FLUSHALL").startswith("(error) NOPERM")
    assert passwords["cache"] not in redact(url)


def test_a_disabled_default_user_lets_nobody_in_without_a_password(passwords: dict[str, str]) -> None:
    with start_local(modules=[]) as fresh:
        admin_password = new_password()
        admin = redis.Redis.from_url(fresh.url)
        create_user(admin, "admin", admin_password, ["~*", "&*", "+@all"])
        admin.acl_setuser("default", enabled=False)
        admin.close()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(fresh.url).ping()
        assert redis_cli(fresh.url, "PING").startswith("NOAUTH") or "NOAUTH" in redis_cli(fresh.url, "PING")
        assert _as(fresh, "admin", admin_password).acl_whoami() == "admin"
        with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
            _as(fresh, "admin", "not-the-password").ping()


def test_a_real_celery_worker_runs_a_task_as_the_celery_user(server: RedisServer, passwords: dict[str, str]) -> None:
    from redai_lab.celery_demo import demo_app, start_worker

    url = f"redis://celery:{passwords['celery']}@{server.url.removeprefix('redis://')}"
    admin = redis.Redis.from_url(server.url, decode_responses=True)
    admin.acl_log_reset()
    worker = start_worker(url)
    try:
        app = demo_app(url)
        assert app.send_task("demo.add", args=(2, 3)).get(timeout=30) == 5
    finally:
        worker.stop()
    assert [entry for entry in admin.acl_log() if entry["username"] == "celery"] == []
    celery = _as(server, "celery", passwords["celery"])
    assert "key" in _refused(celery, "GET", "cache:exam:1").lower()
    assert "'flushdb' command" in _refused(celery, "FLUSHDB")
    admin.close()


def _outward_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: the kernel only picks a route
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_protected_mode_refuses_other_hosts_when_the_default_user_has_no_password() -> None:
    address = _outward_address()
    if address is None:
        pytest.skip("no network address besides loopback")
    with start_local(modules=[], config=["--bind", "127.0.0.1", address, "--protected-mode", "yes"]) as exposed:
        port = exposed.url.rsplit(":", 1)[1].split("/")[0]
        with pytest.raises(redis.ResponseError, match=r"^DENIED (Redis is r|R)unning in protected mode"):
            redis.Redis(host=address, port=int(port), socket_timeout=5).ping()
        assert redis.Redis.from_url(exposed.url).ping()  # loopback is always let in


def test_rename_command_hides_a_command_from_everyone() -> None:
    if find_server_binary() is None:
        pytest.skip("no local server binary")
    with start_local(modules=[], config=["--rename-command", "FLUSHALL", ""]) as renamed:
        client = redis.Redis.from_url(renamed.url)
        with pytest.raises(redis.ResponseError, match="unknown command 'FLUSHALL'"):
            client.execute_command("FLUSHALL")
        client.close()


def test_debug_module_load_and_protected_configs_are_refused_even_to_an_administrator(server: RedisServer) -> None:
    admin = redis.Redis.from_url(server.url, decode_responses=True)
    assert admin.config_get("enable-*") == {
        "enable-debug-command": "no", "enable-module-command": "no", "enable-protected-configs": "no"}
    with pytest.raises(redis.ResponseError, match="can't set protected config"):
        admin.config_set("dir", "/tmp")
    with pytest.raises(redis.ResponseError, match="DEBUG command not allowed"):
        admin.execute_command("DEBUG", "SLEEP", "0")
    with pytest.raises(redis.ResponseError, match="MODULE command not allowed"):
        admin.execute_command("MODULE", "LOAD", "/nonexistent.so")
    admin.close()

"""Lesson 25's exercises: security (a URL's password hidden before it is printed, the ACL rules of a
cache's user, the ACL rules of a read-only reporting job).

The ACL exercises never touch the lab's server: the check applies the rules a learner returns to
a user of a throwaway server of its own, and asks it with ``ACL DRYRUN`` what that user may run.
"""

from __future__ import annotations

from typing import Any

import redis

from redai_lab.lab.acl import permissions
from redai_lab.lab.exercises import Case, Spec, unless_none
from redai_lab.lab.server import RedisServer, start_local

# Exercise 1 ------------------------------------------------------------------------------------


def hide_password(r: redis.Redis, url: str) -> str:
    """Return the Redis URL `url` with its password replaced by `***`, everything else as it is,
    so that it can be printed or logged: the password of the user part
    (`redis://user:PASSWORD@host...` or `redis://:PASSWORD@host...`; it may hold an `@`) and the
    value of a `password` query parameter (`...?password=PASSWORD`). A URL without a password comes
    back unchanged. (`r` is not needed here.)"""
    scheme, _, rest = url.partition("://")
    userinfo, at, rest = rest.rpartition("@")  # the last @: a password may hold one
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    address, question, query = rest.partition("?")
    if question:
        pairs = (pair.partition("=") for pair in query.split("&"))
        query = "&".join(f"{name}=***" if name == "password" else f"{name}{equals}{value}"
                         for name, equals, value in pairs)
    return f"{scheme}://{userinfo}{at}{address}{question}{query}"


def hide_password_user_part_only(r, url):
    scheme, _, rest = url.partition("://")
    userinfo, at, rest = rest.rpartition("@")
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}://{userinfo}{at}{rest}"  # ?password= still shows


def hide_password_first_at(r, url):
    scheme, _, rest = url.partition("://")
    userinfo, at, rest = rest.partition("@")  # a password holding @ leaks its end
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    address, question, query = rest.partition("?")
    if question:
        query = "&".join("password=***" if pair.startswith("password=") else pair for pair in query.split("&"))
    return f"{scheme}://{userinfo}{at}{address}{question}{query}"


def hide_password_and_user(r, url):
    scheme, _, rest = url.partition("://")
    _, at, rest = rest.rpartition("@")
    address, question, query = rest.partition("?")
    if question:
        query = "&".join("password=***" if pair.startswith("password=") else pair for pair in query.split("&"))
    return f"{scheme}://{'***@' if at else ''}{address}{question}{query}"  # the user name was not secret


def _url(url: str):
    def setup(r: redis.Redis, prefix: str) -> tuple[str]:
        return (url,)

    return setup


# Exercises 2 and 3 -----------------------------------------------------------------------------

EXERCISE_USER = "exercise-user"
_acl_server: RedisServer | None = None


def _acl_admin() -> redis.Redis:
    """A client of the exercises' own throwaway server (started on first use, stopped at exit)."""
    global _acl_server
    if _acl_server is None:
        _acl_server = start_local(modules=[])
    return redis.Redis.from_url(_acl_server.url, decode_responses=True, socket_timeout=10)


def _service(prefix_of_keys: str):
    """The case's key prefix, handed to the learner's function and kept for the outcome."""

    def setup(r: redis.Redis, prefix: str) -> tuple[str]:
        r.set(f"{prefix}keys-of-the-service", prefix_of_keys)
        return (prefix_of_keys,)

    return setup


def _dry_runs(probes: tuple[str, ...]):
    """Which probes (``{p}``: the case's key prefix) the user the rules describe may run, in order,
    as ACL DRYRUN answers: the rest it may not."""

    def outcome(r: redis.Redis, prefix: str, rules: Any) -> list[str]:
        keys = r.get(f"{prefix}keys-of-the-service")
        commands = [probe.format(p=keys).split() for probe in probes]
        admin = _acl_admin()
        try:
            admin.execute_command("ACL", "SETUSER", EXERCISE_USER, "reset", "on", "nopass", *rules)
            verdicts = permissions(admin, EXERCISE_USER, commands)
            admin.execute_command("ACL", "DELUSER", EXERCISE_USER)
        finally:
            admin.close()
        return [command for command, verdict in verdicts.items() if verdict == "allowed"]

    return unless_none(outcome)


CACHE_PROBES = (
    "GET {p}exam:42", "SET {p}exam:42 {{}} EX 300", "EXPIRE {p}exam:42 60", "TTL {p}exam:42", "DEL {p}exam:42",
    "GET session:abc", "SET user:1000 x", "DEL session:abc", "HSET {p}exam:42 title x", "INCR {p}hits",
    "FLUSHDB", "KEYS *", "CONFIG GET maxmemory", "EVAL return 0",
)


def cache_user_rules(r: redis.Redis, prefix: str) -> list[str]:
    """The exam API's cache keeps its entries as strings under `prefix` (`cache:`, for example): it
    reads them with GET, writes them with SET ... EX, and also uses EXPIRE, TTL and DEL on them.
    Return the ACL rules (a list of strings, as ACL SETUSER takes them after the user's name and
    password) of the cache's user: exactly those five commands, on keys under `prefix` only.
    (`r` is not needed: the check applies your rules to a user of a throwaway server.)"""
    return ["resetkeys", f"~{prefix}*", "resetchannels", "-@all", "+get", "+set", "+expire", "+ttl", "+del"]


def cache_user_rules_all_commands(r, prefix):
    return [f"~{prefix}*", "+@all"]  # FLUSHDB and CONFIG name no key


def cache_user_rules_all_keys(r, prefix):
    return ["~*", "-@all", "+get", "+set", "+expire", "+ttl", "+del"]


def cache_user_rules_string_category(r, prefix):
    return [f"~{prefix}*", "-@all", "+@string", "+@keyspace"]  # INCR, KEYS, FLUSHDB too


def cache_user_rules_no_glob(r, prefix):
    return [f"~{prefix}", "-@all", "+get", "+set", "+expire", "+ttl", "+del"]  # the key named `cache:` only


REPORT_PROBES = (
    "HGETALL {p}result:7", "ZRANGE {p}board 0 9", "GET {p}count", "SCAN 0",
    "HSET {p}result:7 score 100", "DEL {p}board", "SET {p}count 0",
    "GET session:abc", "KEYS *", "FLUSHDB", "CONFIG GET requirepass", "PUBLISH {p}news hello",
)


def report_reader_rules(r: redis.Redis, prefix: str) -> list[str]:
    """A nightly reporting job reads the exam results under `prefix` (`results:`, for example):
    hashes, sorted sets and strings, with any command that only reads, and SCAN to find them. It
    must never write or delete, read keys outside `prefix`, publish, or run what can hurt the
    server (KEYS, FLUSHDB, CONFIG ...). Return the ACL rules (a list of strings, as ACL SETUSER
    takes them after the user's name and password) of its user.
    (`r` is not needed: the check applies your rules to a user of a throwaway server.)"""
    return ["resetkeys", f"%R~{prefix}*", "resetchannels", "-@all", "+@read", "-@dangerous"]


def report_reader_rules_all_keys(r, prefix):
    return ["~*", "-@all", "+@read", "-@dangerous"]


def report_reader_rules_keys_allowed(r, prefix):
    return [f"~{prefix}*", "-@all", "+@read"]  # KEYS is a read, and a dangerous one


def report_reader_rules_no_writes_category(r, prefix):
    return [f"~{prefix}*", "+@all", "-@write"]  # CONFIG, KEYS and PUBLISH are not writes


def report_reader_rules_read_only_keys(r, prefix):
    return [f"%R~{prefix}*", "+@all"]  # FLUSHDB names no key


EXERCISES: tuple[Spec, ...] = (
    Spec(
        number=1,
        title="a URL's password hidden before it is printed",
        reference=hide_password,
        cases=(
            Case("a user and a password", _url("redis://exam-api:s3cr3t-Pa55@redis.internal:6379/0")),
            Case("a password only (the default user)", _url("redis://:s3cr3t@10.0.0.5:6379/2")),
            Case("TLS with the password in the query",
                 _url("rediss://redis.internal:6380/0?ssl_cert_reqs=required&password=s3cr3t")),
            Case("no password", _url("redis://redis.internal:6379/0")),
            Case("a user without a password", _url("redis://reports@redis.internal:6379/0")),
            Case("a password holding an @", _url("redis://exam-api:p@ss-w0rd@redis.internal:6379/0")),
        ),
        hint="The host starts after the LAST @ (a password may hold one); the password is what follows "
             "the first : before it. Then look at the query, pair by pair.",
        wrong=(hide_password_user_part_only, hide_password_first_at, hide_password_and_user),
    ),
    Spec(
        number=2,
        title="the ACL rules of the cache's user",
        reference=cache_user_rules,
        cases=(
            Case("prefix cache:", _service("cache:")),
            Case("prefix exam-cache:", _service("exam-cache:")),
        ),
        outcome=_dry_runs(CACHE_PROBES),
        hint="Start from nothing (resetkeys, -@all), then allow each command (+get ...) and the keys "
             "(~pattern, with a *).",
        wrong=(cache_user_rules_all_commands, cache_user_rules_all_keys, cache_user_rules_string_category,
               cache_user_rules_no_glob),
        requires=("ACL|DRYRUN",),
    ),
    Spec(
        number=3,
        title="the ACL rules of a read-only reporting job",
        reference=report_reader_rules,
        cases=(
            Case("prefix results:", _service("results:")),
            Case("prefix exam:2026:", _service("exam:2026:")),
        ),
        outcome=_dry_runs(REPORT_PROBES),
        hint="Categories save listing commands: +@read, then take back what is @dangerous. %R~pattern "
             "makes keys read-only, ~pattern limits which keys.",
        wrong=(report_reader_rules_all_keys, report_reader_rules_keys_allowed, report_reader_rules_no_writes_category,
               report_reader_rules_read_only_keys),
        requires=("ACL|DRYRUN",),
    ),
)

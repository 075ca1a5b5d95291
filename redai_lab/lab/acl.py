"""ACL users per service, for lesson 25: least-privilege rules, hashed passwords, dry runs.

A service gets a user of its own that may run the commands it needs on its own keys, and nothing
else: ``SERVICE_RULES`` holds the lesson's three (a cache, a Celery app, a read-only analytics
job). ``create_user`` sends the password's SHA-256 (``#<hex>``), never the password itself, so
neither the command, ``MONITOR``, ``ACL LIST`` nor an ACL file ever shows it. ``permissions`` asks
the server, with ``ACL DRYRUN``, what a user may run, without running it.

Run these against a server you administer (the lesson's throwaway ones), never the lab's.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

import redis

from ..errors import InvalidArgument, InvalidArgumentType
from .features import has_command

# What every service user may run besides its own commands: PING; ACL WHOAMI, so that a service
# can tell which user it is; and the CLIENT SETINFO that redis-py sends on connecting (Redis 7.2+):
# refused, it would fill the ACL log.
CONNECTING = ("+ping", "+acl|whoami", "+client|setinfo")

SERVICE_RULES: dict[str, tuple[str, ...]] = {
    # The cache: read, write with a TTL and delete its own keys; nothing else.
    "cache": ("resetkeys", "~cache:*", "resetchannels", "-@all",
              "+get", "+set", "+del", "+unlink", "+expire", "+ttl"),
    # Celery and kombu on Redis (broker and result backend): the queues (`celery`, priority
    # queues `celery\x06\x16N`) and results (`celery-task-meta-<id>`), kombu's bindings and unacked
    # deliveries, results announced on channels named after the result key. Read from the commands a
    # real worker ran (INFO commandstats); the broadcast channels of remote control and events are left out.
    "celery": ("resetkeys", "~celery*", "~_kombu.*", "~unacked*", "resetchannels", "&celery-task-meta-*",
               "-@all", "+@list", "+@hash", "+@set", "+@sortedset", "+@string", "+@keyspace", "+@pubsub",
               "+@transaction", "+@scripting", "-@dangerous"),
    # Analytics: read any key (%R~*: read-only key access), no writes, nothing dangerous (KEYS, INFO).
    "analytics": ("resetkeys", "%R~*", "resetchannels", "-@all", "+@read", "-@dangerous"),
}


def acl_hash(password: str) -> str:
    """The ACL rule that sets ``password`` by its SHA-256 (``#<64 hex digits>``), as ACL files store it."""
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def new_password() -> str:
    """A random password for a service user: 256 bits, URL-safe (it goes into redis:// URLs)."""
    return secrets.token_urlsafe(32)


def create_user(admin: redis.Redis, name: str, password: str, rules: Sequence[str]) -> None:
    """Create (or reset) user ``name``, enabled, with ``password`` (sent hashed) and ``rules``.

    The rules of ``CONNECTING`` are added for the commands this server has. Rules that would set
    a password in clear or drop it (``>pw``, ``<pw``, ``nopass``, ``resetpass``), an empty password
    and rules the server rejects are ``InvalidArgument``, one line, and no user is created.
    """
    _check_words("name", name)
    if not isinstance(password, str):
        raise InvalidArgumentType(f"password is a str (new_password() makes one), not {type(password).__name__}.")
    if not password:
        raise InvalidArgument("password is never empty: anyone could log in with it (new_password() makes one).")
    _check_rules(rules)
    connecting = [rule for rule in CONNECTING if has_command(admin, rule.removeprefix("+"))]
    try:
        admin.execute_command("ACL", "SETUSER", name, "reset", "on", acl_hash(password), *rules, *connecting)
    except redis.ResponseError as exc:
        if "Error in ACL SETUSER modifier" not in str(exc):
            raise
        raise InvalidArgument(f"The server refused a rule for {name!r} ({exc}): fix the rule.") from None


def permissions(admin: redis.Redis, user: str, commands: Sequence[Sequence[str]]) -> dict[str, str]:
    """``ACL DRYRUN`` of each command as ``user``: ``"allowed"``, or ``"denied: <the server's reason>"``."""
    _check_words("user", user)
    if isinstance(commands, str) or not all(
            isinstance(command, Sequence) and not isinstance(command, str) and command
            and all(isinstance(word, str) for word in command) for command in commands):
        raise InvalidArgumentType(f"commands is a list of commands, each a list of str words "
                                  f"([['GET', 'cache:1']]), not {commands!r}.")
    verdicts = {}
    for command in commands:
        answer = admin.execute_command("ACL", "DRYRUN", user, *command)
        text = answer.decode() if isinstance(answer, bytes) else str(answer)
        verdicts[" ".join(command)] = "allowed" if text == "OK" else f"denied: {text}"
    return verdicts


def _check_words(label: str, value: object) -> None:
    if not isinstance(value, str):
        raise InvalidArgumentType(f"{label} is a user name, a str, not {type(value).__name__} {value!r}.")
    if not value or any(c.isspace() for c in value):
        raise InvalidArgument(f"{label} is a non-empty user name without spaces, not {value!r}.")


def _check_rules(rules: object) -> None:
    """Rules are a list of str; none may set a password in clear (``>pw``, ``<pw``) or drop it (``nopass``)."""
    if isinstance(rules, str) or not isinstance(rules, Sequence) or not all(isinstance(r, str) for r in rules):
        raise InvalidArgumentType(f"rules is a list of ACL rules, each a str (['~cache:*', '+get']), not {rules!r}.")
    for rule in rules:
        if rule.startswith((">", "<")) or rule.lower() in ("nopass", "resetpass"):
            # The rule itself is not echoed: it may hold a password.
            raise InvalidArgument("rules never set or drop a password (>..., <..., nopass, resetpass): "
                                  "create_user sets it, hashed.")

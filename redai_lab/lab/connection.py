"""``connect()``: a redis-py client with the settings a lesson (or a service) should have.

A connection pool, socket and connect timeouts, a first PING so that a wrong URL, a server that
is down or a wrong password fails *here*, at once, with one line that says what to do, and
retries after a lost connection that never apply a command twice.

What is repeated after a lost connection, and why:

- A command that never left the client (the pool could not connect) is retried with
  exponential backoff, whatever it is: the server never saw it.
- A command that was sent is repeated only when that is safe: a read (``REPEATABLE``: it
  changes nothing, and whatever it answers the second time is an answer the data had during the
  call), or a pipeline or transaction made of reads only.
- Anything else that was sent (a write, even an "idempotent" one, a script, a blocking pop, a
  pipeline or transaction holding one) is *not* repeated. The reply was lost, not necessarily
  the command: the server may have applied it. Repeated, an ``INCR`` counts twice, a ``BLMOVE``
  takes a second task, a ``SET NX`` that took a lock answers "not acquired", a ``SET`` lands
  again over a newer write. It raises ``OutcomeUnknownError``, a ``redis.ConnectionError`` (and
  ``OutcomeUnknownTimeoutError``, also a ``redis.TimeoutError``) whose one line says that the
  command may or may not have been applied; the caller, who knows what the write means, decides
  (read the data back, or repeat what it knows to be safe to repeat).
- A Pub/Sub subscription reconnects, subscribes again and reads on: messages published while
  it was away are lost either way (Pub/Sub delivers at most once).

redis-py's own retries are off on the pool's connections. (redis-py 8.1's
``redis.Redis(host=..., port=...)`` retries every command, writes included, 10 times by default;
``redis.Redis.from_url(...)`` retries nothing.)
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
from redis.backoff import AbstractBackoff, ExponentialBackoff, NoBackoff
from redis.client import Pipeline, PubSub
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    MaxConnectionsError,
    RedisClusterException,
)
from redis.retry import Retry

from ..errors import LabConnectionError, LabError, check_seconds, redact
from .server import default_url

URL_FORMS = "redis://[[user]:password@]host[:port][/db], rediss://... or unix:///path/to/socket"

# Commands that may be sent again after a lost reply: they change no data. Each one carries the
# server's `readonly` flag, or (server and connection introspection) no `write` flag; the tests
# check this list against `COMMAND INFO`. Blocking pops, scripts (EVAL may write) and every
# write are left out on purpose.
READS = frozenset({
    "EXISTS", "TYPE", "TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME", "KEYS", "SCAN", "DBSIZE", "RANDOMKEY",
    "DUMP", "SORT_RO", "OBJECT ENCODING", "OBJECT FREQ", "OBJECT IDLETIME", "OBJECT REFCOUNT",
    "MEMORY USAGE",
    "GET", "MGET", "STRLEN", "GETRANGE", "SUBSTR", "LCS", "GETBIT", "BITCOUNT", "BITPOS", "BITFIELD_RO",
    "HGET", "HMGET", "HGETALL", "HKEYS", "HVALS", "HLEN", "HEXISTS", "HSTRLEN", "HSCAN", "HRANDFIELD",
    "HTTL", "HPTTL", "HEXPIRETIME", "HPEXPIRETIME",
    "LRANGE", "LLEN", "LINDEX", "LPOS",
    "SMEMBERS", "SISMEMBER", "SMISMEMBER", "SCARD", "SSCAN", "SRANDMEMBER", "SINTER", "SUNION", "SDIFF",
    "SINTERCARD",
    "ZRANGE", "ZRANGEBYSCORE", "ZREVRANGE", "ZREVRANGEBYSCORE", "ZRANGEBYLEX", "ZREVRANGEBYLEX", "ZSCORE",
    "ZMSCORE", "ZRANK", "ZREVRANK", "ZCARD", "ZCOUNT", "ZLEXCOUNT", "ZSCAN", "ZRANDMEMBER", "ZINTER",
    "ZUNION", "ZDIFF", "ZINTERCARD",
    "XRANGE", "XREVRANGE", "XLEN", "XREAD", "XPENDING", "XINFO STREAM", "XINFO GROUPS", "XINFO CONSUMERS",
    "PFCOUNT", "GEOPOS", "GEODIST", "GEOHASH", "GEOSEARCH", "GEORADIUS_RO", "GEORADIUSBYMEMBER_RO",
    "EVAL_RO", "EVALSHA_RO", "FCALL_RO",
    "JSON.GET", "JSON.MGET", "JSON.TYPE", "JSON.STRLEN", "JSON.OBJLEN", "JSON.OBJKEYS", "JSON.ARRLEN",
    "JSON.ARRINDEX", "JSON.RESP",
    "BF.EXISTS", "BF.MEXISTS", "BF.INFO", "BF.CARD", "CF.EXISTS", "CF.MEXISTS", "CF.COUNT", "CF.INFO",
    "CMS.QUERY", "CMS.INFO",
    "TOPK.QUERY", "TOPK.LIST", "TOPK.INFO", "FT.SEARCH", "FT.INFO", "FT._LIST", "FT.EXPLAIN",
    "VCARD", "VDIM", "VEMB", "VGETATTR", "VINFO", "VLINKS", "VRANDMEMBER", "VSIM", "VISMEMBER",
})
INTROSPECTION = frozenset({
    "PING", "ECHO", "TIME", "INFO", "LASTSAVE", "ROLE", "CONFIG GET", "CLIENT LIST", "CLIENT INFO",
    "CLIENT GETNAME", "CLIENT ID", "COMMAND", "COMMAND COUNT", "COMMAND DOCS", "COMMAND INFO",
    "COMMAND LIST", "COMMAND GETKEYS", "SLOWLOG GET", "SLOWLOG LEN", "SCRIPT EXISTS", "SCRIPT LOAD",
    "FUNCTION LIST", "PUBSUB CHANNELS", "PUBSUB NUMSUB", "PUBSUB NUMPAT",
})
REPEATABLE = READS | INTROSPECTION
# Commands whose first argument names what they do (redis-py sends most as "CONFIG GET" already).
_CONTAINERS = frozenset({"OBJECT", "MEMORY", "XINFO", "CONFIG", "CLIENT", "COMMAND", "SLOWLOG", "SCRIPT",
                         "FUNCTION", "PUBSUB"})
# redis-py's ConnectionErrors that are not a lost connection: the server answered (or the pool is
# full), nothing was applied, and repeating at once cannot help.
_NOT_LOST = (AuthenticationError, AuthorizationError, BusyLoadingError, MaxConnectionsError)
_LOST = (redis.ConnectionError, redis.TimeoutError)
_NEVER_SENT = "_redai_lab_never_sent"


class OutcomeUnknownError(LabError, redis.ConnectionError):
    """A command that is not safe to repeat was sent, and its reply lost: it may have been applied."""


class OutcomeUnknownTimeoutError(OutcomeUnknownError, redis.TimeoutError):
    """``OutcomeUnknownError`` after a timeout (also a ``redis.TimeoutError``)."""


def command_name(args: Sequence[Any]) -> str:
    """The command's name as ``COMMAND INFO`` knows it, upper case: ``INCR``, ``CONFIG GET``."""
    name = " ".join(_text(args[0]).upper().split())
    if name in _CONTAINERS and len(args) > 1:
        name = f"{name} {_text(args[1]).upper()}"
    return name


def is_repeatable(args: Sequence[Any]) -> bool:
    """Whether a command may be sent again after its reply was lost (see ``REPEATABLE``)."""
    return command_name(args) in REPEATABLE


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _never_sent(error: BaseException) -> bool:
    return bool(getattr(error, _NEVER_SENT, False))


def _outcome_unknown(what: str, error: BaseException, *, all_or_nothing: bool = False) -> OutcomeUnknownError:
    timed_out = isinstance(error, redis.TimeoutError)
    kind = OutcomeUnknownTimeoutError if timed_out else OutcomeUnknownError
    lost = "its reply did not come in time" if timed_out else "the connection was lost before the reply"
    applied = "it was applied entirely or not at all" if all_or_nothing else "it may or may not have been applied"
    return kind(
        f"{what} was sent, then {lost} ({str(error).rstrip('.')}): {applied}. "
        f"Not retried, since repeating it could apply it twice: read the data to see whether it took effect "
        f"before you repeat it."
    )


class PoolTimeoutError(LabError, MaxConnectionsError):
    """Every connection of ``connect()``'s pool stayed busy for ``pool_timeout`` seconds."""


class LabConnectionPool(redis.BlockingConnectionPool):
    """A blocking pool: a caller waits up to ``timeout`` seconds for a free connection (a burst of
    threads queues instead of failing), then gets ``PoolTimeoutError``. It marks a failure to
    connect: the command it was for was never sent."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection(*args, **kwargs)
        except _NOT_LOST:
            raise
        except _LOST as error:
            if str(error) == "No connection available.":  # redis-py's words for a pool still empty
                raise PoolTimeoutError(
                    f"All {self.max_connections} connections of the pool stayed busy for {self.timeout:g} s: "
                    f"raise max_connections or pool_timeout in connect(), or hold connections for less time."
                ) from None
            setattr(error, _NEVER_SENT, True)
            raise


class LabRedis(redis.Redis):
    """redis-py's client, repeating a command after a lost connection only where that is safe.

    ``retries`` and ``backoff``: how often and when a command is sent again (module docstring).
    """

    retries: int = 2
    backoff: AbstractBackoff = ExponentialBackoff(cap=0.5, base=0.05)

    def execute_command(self, *args: Any, **options: Any) -> Any:
        failures = 0
        while True:
            try:
                return super().execute_command(*args, **options)
            except _NOT_LOST:
                raise
            except _LOST as error:
                if not (_never_sent(error) or is_repeatable(args)):
                    raise _outcome_unknown(command_name(args), error) from error
                failures += 1
                if failures > self.retries:
                    raise
                time.sleep(self.backoff.compute(failures))

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> LabPipeline:
        pipe = LabPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.retries, pipe.backoff = self.retries, self.backoff
        return pipe

    def pubsub(self, **kwargs: Any) -> LabPubSub:
        pubsub = LabPubSub(self.connection_pool, event_dispatcher=self._event_dispatcher, **kwargs)
        pubsub.retry = Retry(self.backoff, self.retries)
        return pubsub


class LabPubSub(PubSub):
    """Pub/Sub that reconnects, subscribes again and reads on after a lost connection: all safe
    to repeat (what was published meanwhile is lost either way: Pub/Sub delivers at most once)."""

    retry: Retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)

    def _execute(self, conn: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        conn.retry = self.retry  # the subscription's own connection, until reset() gives it back
        return super()._execute(conn, command, *args, **kwargs)

    def reset(self) -> None:
        if self.connection is not None:
            self.connection.retry = Retry(NoBackoff(), 0)  # back in the pool: LabRedis decides again
        super().reset()


class LabPipeline(Pipeline):
    """A pipeline (or MULTI/EXEC transaction) sent again after a lost connection only when it was
    never sent or holds reads only; otherwise ``OutcomeUnknownError``."""

    retries: int = 2
    backoff: AbstractBackoff = ExponentialBackoff(cap=0.5, base=0.05)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack, explicit = list(self.command_stack), self.explicit_transaction
        reads_only = all(is_repeatable(args) for args, _ in stack)
        # Pipeline's `transaction` attribute (a bool) shadows Redis.transaction(), for mypy too.
        transaction = cast(bool, self.transaction) or explicit
        failures = 0
        while True:
            try:
                return super().execute(raise_on_error)
            except _NOT_LOST:
                raise
            except redis.WatchError as error:
                # redis-py turns a connection lost while WATCHing into WatchError, and
                # Redis.transaction() then runs the caller's function again: after an EXEC
                # that may have been applied, that is the duplicate this module prevents.
                if isinstance(error.__context__, _LOST) and not reads_only:
                    raise _pipeline_unknown(stack, transaction, error.__context__) from error
                raise
            except _LOST as error:
                if not (_never_sent(error) or reads_only):
                    raise _pipeline_unknown(stack, transaction, error) from error
                failures += 1
                if failures > self.retries:
                    raise
                time.sleep(self.backoff.compute(failures))
                # execute() emptied the pipeline; queue the same commands again.
                self.command_stack, self.explicit_transaction = list(stack), explicit


def _pipeline_unknown(stack: list[Any], transaction: bool, error: BaseException) -> OutcomeUnknownError:
    names = [command_name(args) for args, _ in stack]
    listed = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    what = f"A {'MULTI/EXEC transaction' if transaction else 'pipeline'} of {len(names)} commands ({listed})"
    return _outcome_unknown(what, error, all_or_nothing=transaction)


def connect(
    url: str | None = None,
    *,
    db: int | None = None,
    decode_responses: bool = True,
    max_connections: int = 50,
    pool_timeout: float = 5.0,
    socket_timeout: float = 5.0,
    connect_timeout: float = 2.0,
    retries: int = 2,
    check: bool = True,
    **connection_kwargs: Any,
) -> LabRedis:
    """A client for ``url`` (default: the lab's server, see ``redai_lab.lab.server.default_url``).

    ``max_connections`` bounds the pool; a caller finding them all busy waits up to
    ``pool_timeout`` seconds for one, then gets ``PoolTimeoutError`` (a burst of threads queues
    rather than failing). ``db`` overrides the database in the URL. ``connection_kwargs`` go to the pool's
    connections (for example ``connection_class``, ``client_name``). ``retries``: how many times
    a command is sent again after a lost connection, when that is safe (module docstring); a
    write whose reply was lost raises ``OutcomeUnknownError`` instead. With ``check`` (the
    default) the server is pinged once, so configuration errors surface here as
    ``LabConnectionError``.
    """
    if url is None:
        url = default_url()
    options: dict[str, Any] = dict(
        decode_responses=decode_responses,
        max_connections=max_connections,
        timeout=check_seconds("pool_timeout", pool_timeout),
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        # No retries in redis-py's connections: LabRedis decides what may be repeated.
        retry=Retry(NoBackoff(), 0),
        **connection_kwargs,
    )
    if db is not None:  # redis-py lets the URL's /db win over a db= argument
        url = database_url(url, db)
    try:
        pool = LabConnectionPool.from_url(url, **options)
    except ValueError as exc:
        raise LabConnectionError(f"Not a Redis URL: {redact(url)!r} ({exc}). Expected {URL_FORMS}.") from None
    if check:
        # One PING without retries, bounded by the connect timeout: a server that accepts
        # connections but never answers fails here in seconds, not retries x socket_timeout.
        probe = redis.Redis.from_url(
            url, socket_timeout=connect_timeout, socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0), **connection_kwargs,
        )
        try:
            probe.ping()
        except redis.RedisError as exc:
            raise LabConnectionError(explain(exc, url, timeout=connect_timeout)) from None
        finally:
            probe.close()
    client = LabRedis(connection_pool=pool)
    client.retries = retries
    return client


def explain(exc: redis.RedisError, url: str, *, timeout: float = 1.0) -> str:
    """One line that says what a connection failure means and what to do about it."""
    where = redact(url)
    text = str(exc)
    if isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
        return (
            f"Redis at {where} refused the credentials ({text.strip()}). Put the right password "
            f"in the URL: redis://:PASSWORD@host:port/db (or redis://USER:PASSWORD@... with ACL users)."
        )
    # Reached, but the talk failed: TLS on one side only looks like a timeout or a reset.
    reached = isinstance(exc, (redis.TimeoutError, redis.ConnectionError)) and "refused" not in text.lower()
    scheme = urlsplit(url).scheme
    if reached and scheme == "rediss":
        return _tls_expected(where, text, speaks_plain_resp(url, timeout=timeout))
    # A TLS server closes a plain-text connection at once: never a timeout.
    if reached and scheme == "redis" and isinstance(exc, redis.ConnectionError) and speaks_tls(url, timeout=timeout):
        return (
            f"Redis at {where} speaks TLS: the URL asks for plain text (redis://), and the server closed the "
            f"connection ({text.rstrip('.')}). Use rediss://{where.removeprefix('redis://')} instead."
        )
    if isinstance(exc, redis.TimeoutError):
        return (
            f"Redis at {where} did not answer in time ({text}). Check the host and port, and that "
            f"no firewall drops the connection; start the lab's own server with `./lab`."
        )
    if isinstance(exc, redis.ConnectionError):
        return (
            f"Cannot reach Redis at {where} ({text.rstrip('.')}). Is the server running? Start the "
            f"lab's throwaway server with `./lab` (or `redai-lab server`), or fix REDIS_URL."
        )
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return (
            f"Redis at {where} refused a command: {text.strip()}. Connect as a user that may run it, or "
            f"grant it (ACL SETUSER <user> +<command>) on a server you administer."
        )
    if "DB index is out of range" in text:
        return f"Redis at {where} has fewer databases than the URL asks for ({text}). Use a lower /db."
    return f"Redis at {where} answered with an error: {text}"


def _tls_expected(where: str, text: str, plain: bool) -> str:
    plain_url = "redis://" + where.removeprefix("rediss://")
    if plain:
        return (
            f"Redis at {where} does not speak TLS: the URL asks for TLS (rediss://), but the server "
            f"answered in plain text. Use {plain_url}, or the server's TLS port."
        )
    return (
        f"Redis at {where} did not complete a TLS handshake ({text.rstrip('.')}): the URL asks for TLS "
        f"(rediss://) and the server may not speak it. Use {plain_url} for a plain server, or check the "
        f"host, the TLS port and that no firewall drops the connection."
    )


def speaks_plain_resp(url: str, *, timeout: float = 1.0) -> bool:
    """Whether the server at ``url``'s host and port answers a plain-text PING (no TLS)."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "localhost", parts.port or 6379), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    # +PONG, or an error such as -NOAUTH: either way the server parsed plain RESP.
    return reply[:1] in (b"+", b"-")


def speaks_tls(url: str, *, timeout: float = 1.0) -> bool:
    """Whether the server at ``url``'s host and port completes a TLS handshake (its certificate unchecked)."""
    parts = urlsplit(url)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # only asks: TLS or not?
    try:
        with (socket.create_connection((parts.hostname or "localhost", parts.port or 6379), timeout=timeout) as sock,
              context.wrap_socket(sock, server_hostname=parts.hostname)):
            return True
    except (OSError, ssl.SSLError):
        return False


def database_url(url: str, db: int) -> str:
    """``url`` with its database replaced by ``db``."""
    parts = urlsplit(url)
    # redis-py lets ?db= win over the path, and a unix:// path is the socket's own.
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key != "db"]
    if parts.scheme == "unix":
        return f"unix://{parts.path}?{urlencode([*query, ('db', str(db))])}"
    return parts._replace(path=f"/{db}", query=urlencode(query)).geturl()


def connect_cluster(
    url: str,
    *,
    decode_responses: bool = True,
    max_connections: int = 50,
    socket_timeout: float = 5.0,
    connect_timeout: float = 2.0,
    **cluster_kwargs: Any,
) -> redis.RedisCluster:
    """A ``redis.RedisCluster`` for the Cluster that the node at ``url`` belongs to.

    The client asks that node for the slot map (``CLUSTER SHARDS``) and follows ``MOVED`` and
    ``ASK`` redirects itself: those are answers, nothing was applied. It never sends a command
    again after a lost connection (redis-py's cluster retries are off): a write whose reply was
    lost raises ``redis.ConnectionError`` and the caller decides, as with ``connect()``. The next
    command asks the Cluster for its slot map again, so after a failover it finds the new primary.
    Configuration errors (unreachable node, wrong password, a server without cluster mode) are
    one-line ``LabConnectionError``.
    """
    options: dict[str, Any] = dict(
        decode_responses=decode_responses,
        max_connections=max_connections,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),  # never repeat a command after a lost connection
        **cluster_kwargs,
    )
    try:
        return redis.RedisCluster.from_url(url, **options)
    except ValueError as exc:
        raise LabConnectionError(f"Not a Redis URL: {redact(url)!r} ({exc}). Expected {URL_FORMS}.") from None
    except (redis.RedisError, RedisClusterException) as exc:
        text = str(exc)
        if "not enabled" in text or "cluster support disabled" in text:
            raise LabConnectionError(
                f"Redis at {redact(url)} is not in cluster mode: use connect() for a single server, or start "
                f"a local Cluster with `redai-lab cluster`."
            ) from None
        cause = exc if isinstance(exc, redis.RedisError) else redis.ConnectionError(text.rsplit(": ", 1)[-1])
        raise LabConnectionError(explain(cause, url, timeout=connect_timeout)) from None

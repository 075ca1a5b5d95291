"""``connect()``: a redis-py client with the settings a lesson (or a service) should have.

A connection pool, socket and connect timeouts, redis-py's own ``Retry`` with exponential
backoff on connection errors and timeouts, and a first PING so that a wrong URL, a server that
is down or a wrong password fails *here*, at once, with one line that says what to do.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from .errors import LabConnectionError
from .server import default_url, redact

URL_FORMS = "redis://[[user]:password@]host[:port][/db], rediss://... or unix:///path/to/socket"


def connect(
    url: str | None = None,
    *,
    db: int | None = None,
    decode_responses: bool = True,
    max_connections: int = 50,
    socket_timeout: float = 5.0,
    connect_timeout: float = 2.0,
    retries: int = 2,
    check: bool = True,
    **connection_kwargs: Any,
) -> redis.Redis:
    """A client for ``url`` (default: the lab's server, see ``redai_lab.server.default_url``).

    ``db`` overrides the database in the URL. ``connection_kwargs`` go to the pool's
    connections (for example ``connection_class``). With ``check`` (the default) the server is
    pinged once, so configuration errors surface here as ``LabConnectionError``.
    """
    if url is None:
        url = default_url()
    options: dict[str, Any] = dict(
        decode_responses=decode_responses,
        max_connections=max_connections,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        **connection_kwargs,
    )
    if db is not None:  # redis-py lets the URL's /db win over a db= argument
        url = database_url(url, db)
    try:
        pool = redis.ConnectionPool.from_url(url, **options)
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
            raise LabConnectionError(explain(exc, url)) from None
        finally:
            probe.close()
    return redis.Redis(connection_pool=pool)


def explain(exc: redis.RedisError, url: str) -> str:
    """One line that says what a connection failure means and what to do about it."""
    where = redact(url)
    text = str(exc)
    if isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
        return (
            f"Redis at {where} refused the credentials ({text.strip()}). Put the right password "
            f"in the URL: redis://:PASSWORD@host:port/db (or redis://USER:PASSWORD@... with ACL users)."
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


def database_url(url: str, db: int) -> str:
    """``url`` with its database replaced by ``db``."""
    parts = urlsplit(url)
    # redis-py lets ?db= win over the path, and a unix:// path is the socket's own.
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key != "db"]
    if parts.scheme == "unix":
        return f"unix://{parts.path}?{urlencode([*query, ('db', str(db))])}"
    return parts._replace(path=f"/{db}", query=urlencode(query)).geturl()

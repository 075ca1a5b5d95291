"""Network faults on demand, for tests and lessons: a lost reply, a refused connection, and a
killer that cuts chosen clients' connections in a loop.

``ReplyCutter`` is a TCP proxy on 127.0.0.1 in front of a Redis server. It forwards bytes both
ways until told to cut: ``cut_next_reply()`` lets the server execute the next command, then
closes the client's connection instead of passing the reply on (the lost reply of a network
cut, made deterministic); ``cut_next_request()`` closes it before the command reaches the
server; ``refuse_next_connections(n)`` closes new connections at once (a
server restarting). ``PartitionProxy`` is one in front of a server's peers: it turns into a
black hole on ``partition()`` and forwards again on ``heal()``. Both are a ``LoopbackProxy``.
``ConnectionKiller`` runs ``CLIENT KILL`` on every connection whose client name starts with a
prefix, every ``interval`` seconds (drawn anew each time), in a thread.
"""

from __future__ import annotations

import random
import socket
import threading
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import redis

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

# What a proxy does with a connection it just accepted: forward it, close it at once (a server
# restarting), or hold it unanswered (a partition).
Admission = Literal["forward", "refuse", "hold"]


class LoopbackProxy:
    """A TCP proxy on 127.0.0.1 to the server at ``target``: a listener, an acceptor thread, two
    pump threads per connection; ``name`` names the acceptor thread. Subclasses decide what
    happens to a new connection (``_admit``) and to each chunk of bytes (``_relay``). Use
    ``with``, or ``close()``.

    A subclass sets up its own state before calling ``__init__``: the acceptor starts there.
    """

    def __init__(self, target: tuple[str, int], *, name: str) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        """The proxy's port on 127.0.0.1: the address its clients (or peers) use."""
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self._acceptor = threading.Thread(target=self._accept, name=name, daemon=True)
        self._acceptor.start()

    def close(self) -> None:
        """Stop accepting and close every proxied connection."""
        with self._lock:
            self._closed = True
            stale = self._take_connections()
        for sock in (self._listener, *stale):
            _close(sock)
        self._acceptor.join(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _admit(self) -> Admission:
        """What to do with the connection just accepted; called with the lock held."""
        return "forward"

    def _relay(self, data: bytes, sink: socket.socket, reply: bool) -> bool:
        """Pass ``data`` (a reply from the server if ``reply``, else a request) on to ``sink``, or
        not; False closes the connection (both sides)."""
        sink.sendall(data)
        return True

    def _take_connections(self) -> set[socket.socket]:
        # Called with the lock held; the caller closes them.
        stale, self._sockets = self._sockets, set()
        return stale

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                if self._closed:
                    _close(client)
                    return
                admission = self._admit()
                if admission != "refuse":
                    self._sockets.add(client)
            if admission == "refuse":
                _close(client)
                continue
            if admission == "hold":
                continue  # it hangs until its connections are closed (heal(), close())
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay on small replies
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:  # the server is down: the client sees its connection closed
                self._forget(client)
                continue
            server.settimeout(None)
            server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                closed = self._closed
                if not closed:
                    self._sockets.add(server)
            if closed:
                self._forget(client, server)
                return
            for source, sink, reply in ((client, server, False), (server, client, True)):
                threading.Thread(target=self._pump, args=(source, sink, reply), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, reply: bool) -> None:
        try:
            while data := source.recv(65536):
                if not self._relay(data, sink, reply):
                    break
        except OSError:
            pass
        finally:
            self._forget(source, sink)

    def _forget(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._sockets.difference_update(sockets)
        for sock in sockets:
            _close(sock)


class ReplyCutter(LoopbackProxy):
    """A TCP proxy on 127.0.0.1 to the Redis server at ``url``; ``url`` of its own. Use ``with``."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ValueError(f"ReplyCutter proxies redis:// URLs (plain TCP), got {parts.scheme}://.")
        self.cuts = 0
        """Replies (or requests) the proxy dropped, cutting their connection."""
        self.refused = 0
        """Connections the proxy closed as soon as they came."""
        self._skip = 0
        self._to_cut = 0
        self._requests_to_cut = 0
        self._to_refuse = 0
        super().__init__((parts.hostname or "localhost", parts.port or 6379), name="reply-cutter")
        credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        self.url = parts._replace(netloc=f"{credentials}127.0.0.1:{self.port}").geturl()
        """``url`` with the proxy's address."""

    def cut_next_reply(self, *, skip: int = 0) -> None:
        """Pass ``skip`` replies on, then drop the next one and close its connection (both sides)."""
        with self._lock:
            self._skip, self._to_cut = skip, self._to_cut + 1

    def cut_next_request(self) -> None:
        """Drop the next command before it reaches the server and close its connection (both sides)."""
        with self._lock:
            self._requests_to_cut += 1

    def refuse_next_connections(self, count: int = 1) -> None:
        """Close the next ``count`` connections as soon as they are accepted."""
        with self._lock:
            self._to_refuse += count

    def _admit(self) -> Admission:
        if not self._to_refuse:
            return "forward"
        self._to_refuse -= 1
        self.refused += 1
        return "refuse"

    def _relay(self, data: bytes, sink: socket.socket, reply: bool) -> bool:
        if self._cut_this_one(reply):
            return False
        sink.sendall(data)
        return True

    def _cut_this_one(self, reply: bool) -> bool:
        with self._lock:
            if not reply:
                if not self._requests_to_cut:
                    return False
                self._requests_to_cut -= 1
                self.cuts += 1
                return True
            if not self._to_cut:
                return False
            if self._skip:
                self._skip -= 1
                return False
            self._to_cut -= 1
            self.cuts += 1
            return True


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class ConnectionKiller:
    """A thread that runs ``CLIENT KILL`` on every connection named ``prefix...``, every
    ``interval`` seconds (a (low, high) pair draws each pause anew). Use ``with``; ``kills``
    counts the connections killed."""

    def __init__(self, url: str, prefix: str, interval: float | tuple[float, float] = (0.05, 0.1)) -> None:
        if not prefix:
            raise ValueError("ConnectionKiller needs a client-name prefix: it never kills unnamed connections.")
        self.prefix = prefix
        self.low, self.high = interval if isinstance(interval, tuple) else (interval, interval)
        if not 0 < self.low <= self.high:
            raise ValueError(f"interval must be > 0 seconds (or a (low, high) pair), got {interval!r}.")
        self.kills = 0
        self.rounds = 0
        self._client = redis.Redis.from_url(url, client_name="redai-lab-killer", decode_responses=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="connection-killer", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.wait(random.uniform(self.low, self.high)):
            victims = [c["id"] for c in self._client.client_list() if c.get("name", "").startswith(self.prefix)]
            if victims:
                pipe = self._client.pipeline(transaction=False)
                for victim in victims:
                    pipe.execute_command("CLIENT", "KILL", "ID", victim)
                self.kills += sum(int(killed) for killed in pipe.execute(raise_on_error=False)
                                  if not isinstance(killed, Exception))
            self.rounds += 1


class PartitionProxy(LoopbackProxy):
    """A TCP proxy on 127.0.0.1 in front of one server, for the links a network partition cuts.

    Give its address to the peers that must lose the server (its replicas, the Sentinels) and
    let other clients connect to the server directly. ``partition()`` makes it a black hole, as
    a real partition is: bytes already in flight are dropped, new connections are accepted and
    then hang, and nobody gets a reset, so peers notice only through their own timeouts.
    ``heal()`` closes every connection that lived through the partition (their streams have
    gaps) and forwards again; peers reconnect. Use ``with``, or ``close()``.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self._connected = threading.Event()  # set: forwarding; clear: partitioned
        self._connected.set()
        super().__init__(target, name="partition-proxy")

    @property
    def partitioned(self) -> bool:
        return not self._connected.is_set()

    def partition(self) -> None:
        """Stop forwarding in both directions, silently."""
        self._connected.clear()

    def heal(self) -> None:
        """Close the connections that lived through the partition, then forward again."""
        with self._lock:  # one step: a peer reconnecting at once must not land in the partition
            stale = self._take_connections()
            self._connected.set()
        for sock in stale:
            _close(sock)

    def _admit(self) -> Admission:
        return "forward" if self._connected.is_set() else "hold"

    def _relay(self, data: bytes, sink: socket.socket, reply: bool) -> bool:
        if self._connected.is_set():
            sink.sendall(data)
        # else: lost in the partition
        return True

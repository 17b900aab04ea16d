"""Redis round trips: commands sent pipelined at once, their replies read later, so the
worker computes while Redis works on the other core; and the client they go through, to
one Redis or to a Redis Cluster (``redis.cluster``).

Every Redis reply that says the server is away or cannot work now becomes a
``RedisUnavailable``, which the worker waits out with backoff.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar, cast

import hiredis
import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from detector.config import RedisSettings
from detector.errors import RedisUnavailable

T = TypeVar("T")
REDIS_DOWN = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    # Raised by the cluster client when no node serves a slot or answers at all.
    redis.exceptions.ClusterError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.RedisClusterUnreachableError,
)
# Error replies that say the server cannot work now, not that a command was wrong: the batch
# waits for the server as in an outage, rather than being split to find a culprit record.
REDIS_UNWELL = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.MasterDownError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MaxClientsReachedError,
    redis.exceptions.NoPermissionError,
    redis.exceptions.AuthenticationError,
)
# Error replies that running the round trip again mends: a Redis that forgot the scripts
# (they are loaded first), a slot that moved to another master (redis-py follows it).
_RUN_AGAIN: Final = (redis.exceptions.NoScriptError, redis.exceptions.AskError)


def connect(settings: RedisSettings, binary: bool = False) -> redis.Redis:
    """A client of ``redis.url``: a ``RedisCluster`` when ``redis.cluster`` is true.

    Typed as ``redis.Redis`` for its callers: the cluster client offers the same commands,
    routed by key, and ``RoundTrip`` tells the two apart.
    """
    # redis-py would retry a round trip 3 times by default, re-running a script whose reply
    # was lost; the worker retries whole batches instead, where watermarks make it safe.
    options: dict[str, Any] = {
        "decode_responses": not binary,
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.socket_timeout_s,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), settings.retry_attempts),
    }
    if settings.url.startswith("rediss://"):
        options |= {
            "ssl_ca_certs": settings.ssl_ca_file or None,
            "ssl_certfile": settings.ssl_cert_file or None,
            "ssl_keyfile": settings.ssl_key_file or None,
        }
    if settings.cluster:
        return cast(redis.Redis, RedisCluster.from_url(settings.url, **options))
    return redis.Redis.from_url(settings.url, health_check_interval=30, **options)


class _Leg:
    """The share of a round trip that one connection carries: its commands, and their
    positions among the round trip's."""

    def __init__(self, pool: Any, positions: list[int], commands: list[tuple[Any, ...]]) -> None:
        self.pool = pool
        self.positions = positions
        self.commands = commands
        self.conn: Any = None


def _legs(client: redis.Redis | RedisCluster, commands: list[tuple[Any, ...]]) -> list[_Leg]:
    """Where the commands go: all to one connection on one Redis; on Redis Cluster, each to
    the master that serves its key's slot, a connection per master."""
    # Asked this way round: an instance of redis.Redis itself passes at once, while a
    # check against RedisCluster (a typing.Protocol underneath) costs every round trip.
    if isinstance(client, redis.Redis):
        return [_Leg(client.connection_pool, list(range(len(commands))), commands)]
    by_node: dict[str, _Leg] = {}
    for i, command in enumerate(commands):
        slot = client.determine_slot(*command)
        if slot is None:  # CLIENT TRACKING, the one command without a key or a slot
            raise redis.exceptions.RedisClusterException(f"{command[0]} cannot go in a round trip")
        node = client.nodes_manager.get_node_from_slot(slot)
        leg = by_node.get(node.name)
        if leg is None:
            pool = client.get_redis_connection(node).connection_pool
            leg = by_node[node.name] = _Leg(pool, [], [])
        leg.positions.append(i)
        leg.commands.append(command)
    return list(by_node.values())


class RoundTrip:
    """Commands sent in one pipelined round trip at once, their replies read later
    (``replies``), so the worker computes while Redis works on the other core.

    On Redis Cluster the commands go to the masters that serve their keys, each master's
    on a connection of its own, all written before any reply is read: one wait, as on one
    Redis, the masters working in parallel. Not through redis-py's cluster pipeline: its
    ``execute`` sends and reads in one call, so nothing could be computed in between.

    A round trip whose send or replies fail runs again as a whole (redis-py's retries,
    through its cluster pipeline on a cluster, which follows slots that moved), as does one
    that met a Redis that forgot ``scripts`` (restarted or flushed) once they are loaded, or
    a slot that moved: every command sent this way can run twice.
    """

    def __init__(
        self,
        client: redis.Redis,
        commands: list[tuple[Any, ...]],
        scripts: tuple[str, ...],
        observe: Callable[[float], None],
    ) -> None:
        self._client, self._commands, self._scripts = client, commands, scripts
        self._observe = observe
        self._legs: list[_Leg] = []
        self._sent = False
        if not commands:
            return
        started = time.perf_counter()
        try:
            self._legs = _legs(client, commands)
            for leg in self._legs:
                leg.conn = leg.pool.get_connection()
                leg.conn.send_packed_command(pack(leg.commands))
            self._sent = True
        except REDIS_DOWN:
            self._release(broken=True)  # replies() runs it again
        self._waited = time.perf_counter() - started

    def replies(self) -> list[Any]:
        """Replies in the order of the commands; an error reply raises (the first one)."""
        if not self._commands:
            return []
        started = time.perf_counter()
        try:
            replies = self._read() if self._sent else None
            if replies is None or any(isinstance(r, _RUN_AGAIN) for r in replies):
                replies = self._again()
        except REDIS_DOWN as exc:
            raise RedisUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        finally:
            self._observe(self._waited + time.perf_counter() - started)
        for reply in replies:
            if isinstance(reply, REDIS_UNWELL):
                raise RedisUnavailable(f"redis: {type(reply).__name__}: {reply}") from reply
            if isinstance(reply, redis.exceptions.ResponseError):
                raise reply
        return replies

    def _read(self) -> list[Any] | None:
        """The replies, each error reply in its place; None if a connection failed."""
        out: list[Any] = [None] * len(self._commands)
        try:
            for leg in self._legs:
                conn = leg.conn
                for i in leg.positions:
                    try:
                        out[i] = conn.read_response()
                    except redis.exceptions.ResponseError as exc:
                        out[i] = exc
        except REDIS_DOWN:
            self._release(broken=True)
            return None
        self._release()
        return out

    def _again(self) -> list[Any]:
        for script in self._scripts:
            self._client.script_load(script)
        pipe = self._client.pipeline(transaction=False)
        for command in self._commands:
            pipe.execute_command(*command)
        return pipe.execute(raise_on_error=False)

    def _release(self, broken: bool = False) -> None:
        self._sent = False
        for leg in self._legs:
            if leg.conn is not None:
                if broken:
                    leg.conn.disconnect()
                leg.pool.release(leg.conn)
                leg.conn = None

    def discard(self) -> None:
        """Give the connections up without reading (the batch failed before its replies)."""
        self._release(broken=True)


class Pending(Generic[T]):
    """A round trip in flight, and what its replies make."""

    def __init__(self, trip: RoundTrip, make: Callable[[list[Any]], T]) -> None:
        self._trip, self._make = trip, make

    def result(self) -> T:
        return self._make(self._trip.replies())

    def discard(self) -> None:
        self._trip.discard()


def pack(commands: list[tuple[Any, ...]]) -> list[bytes]:
    """The commands in Redis's protocol, a chunk each for ``Connection.send_packed_command``,
    by hiredis's packer. redis-py's ``pack_commands`` wraps the same packer in a Python pass
    over every argument, which took two thirds of the time for a batch's ~20 arguments per
    account.

    >>> pack([("SET", "k", 1.5), ("GET", b"k")])
    [b'*3\\r\\n$3\\r\\nSET\\r\\n$1\\r\\nk\\r\\n$3\\r\\n1.5\\r\\n', b'*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n']
    """
    try:
        return [hiredis.pack_command(command) for command in commands]
    except TypeError as exc:  # as redis-py reports an argument it cannot send
        raise redis.DataError(str(exc)) from exc


def sha1(script: str) -> str:
    """The name Redis gives a script, so EVALSHA needs no SCRIPT EXISTS round trip."""
    return hashlib.sha1(script.encode("utf-8")).hexdigest()

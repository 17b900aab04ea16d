"""Redis round trips: commands sent pipelined at once, their replies read later, so the
worker computes while Redis works on the other core; and the client they go through.

Every Redis reply that says the server is away or cannot work now becomes a
``RedisUnavailable``, which the worker waits out with backoff.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import hiredis
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from detector.config import RedisSettings
from detector.errors import RedisUnavailable

T = TypeVar("T")
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
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


def connect(settings: RedisSettings, binary: bool = False) -> redis.Redis:
    # redis-py would retry a round trip 3 times by default, re-running a script whose reply
    # was lost; the worker retries whole batches instead, where watermarks make it safe.
    tls: dict[str, Any] = {}
    if settings.url.startswith("rediss://"):
        tls = {
            "ssl_ca_certs": settings.ssl_ca_file or None,
            "ssl_certfile": settings.ssl_cert_file or None,
            "ssl_keyfile": settings.ssl_key_file or None,
        }
    return redis.Redis.from_url(
        settings.url,
        decode_responses=not binary,
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), settings.retry_attempts),
        **tls,
    )


class RoundTrip:
    """Commands sent in one pipelined round trip at once, their replies read later
    (``replies``), so the worker computes while Redis works on the other core.

    A round trip whose send or replies fail runs again as a whole (redis-py's retries), as
    does one that met a Redis that forgot ``scripts`` (restarted or flushed) once they are
    loaded: every command sent this way can run twice.
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
        self._conn: Any = None
        if not commands:
            return
        started = time.perf_counter()
        try:
            self._conn = client.connection_pool.get_connection()
            self._conn.send_packed_command(pack(commands))
        except REDIS_DOWN:
            if self._conn is not None:
                self._release(broken=True)  # replies() runs it again
        self._waited = time.perf_counter() - started

    def replies(self) -> list[Any]:
        """Replies in the order of the commands; an error reply raises (the first one)."""
        if not self._commands:
            return []
        started = time.perf_counter()
        try:
            replies = self._read() if self._conn is not None else None
            if replies is None or any(
                isinstance(r, redis.exceptions.NoScriptError) for r in replies
            ):
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
        """The replies, each error reply in its place; None if the connection failed."""
        out: list[Any] = []
        try:
            for _ in self._commands:
                try:
                    out.append(self._conn.read_response())
                except redis.exceptions.ResponseError as exc:
                    out.append(exc)
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
        if broken:
            self._conn.disconnect()
        self._client.connection_pool.release(self._conn)
        self._conn = None

    def discard(self) -> None:
        """Give the connection up without reading (the batch failed before its replies)."""
        if self._conn is not None:
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

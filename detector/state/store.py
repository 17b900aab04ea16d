"""Account state in Redis: one pipelined round trip writes the previous batch and loads the next.

Each account is one binary value under a key with the account as hash tag
(``acct:{<id>}``). Writing is a compare-and-set on the account's watermark, which makes
the write atomic per account and refuses it if another worker applied events meanwhile.
The write goes first in the round trip, so an account in both batches is loaded as just
written. Writing and loading are one script call each over the batch's keys (on Redis
Cluster, one per slot would be needed, as for MGET).

A worker keeps the states it loaded (``state.cache_accounts``, least recently used out). A
state is a pure function of the events applied to it, and its watermark names the last
one, so when Redis holds the watermark the cached state carries, it holds that very state:
the load then sends back a 1 instead of the value, and nothing is decoded. Any other
watermark (another worker's write, a refused or lost write, a batch retried after its
state was changed in memory, an expired key) sends the value, as without a cache.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

import hiredis
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from detector.config import RedisSettings, StateSettings
from detector.errors import RedisUnavailable
from detector.metrics import Metrics
from detector.state.account import AccountState

# Per key, write the value only if the stored watermark is the one that was loaded, or
# already the new one (this very write, retried after its reply was lost). One call for the
# batch's accounts: a script call per account cost ~25 us each, most of it in redis-py.
_SAVE_LUA = """
local ttl, out = ARGV[1], {}
for i, key in ipairs(KEYS) do
  local j = 3 * i - 1
  local cur = redis.call('GET', key)
  local mark = cur and string.match(cur, '^[^;]*;') or '-1,-1;'
  if mark == ARGV[j] or mark == ARGV[j + 1] then
    redis.call('SET', key, ARGV[j + 2], 'EX', ttl)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

# Each key's value, or 1 where it starts with the watermark the worker's cached state carries.
_LOAD_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  local mark = ARGV[i]
  if value and mark ~= '' and string.sub(value, 1, #mark) == mark then
    out[i] = 1
  else
    out[i] = value or false
  end
end
return out
"""

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


@dataclass
class LoadedBatch:
    """States of the batch's accounts as loaded, and what came back with them."""

    states: dict[str, AccountState]
    loaded_watermarks: dict[str, str]
    extra: list[Any] = field(default_factory=list)  # replies to the extra reads, in order
    conflicts: list[str] = field(default_factory=list)  # accounts of the write that was refused
    # The write of its changed states, once encoded (``AccountStore.encode``).
    write: tuple[list[tuple[Any, ...]], list[str]] | None = None


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


class AccountStore:
    """Needs a client without ``decode_responses``: the values are binary."""

    def __init__(
        self,
        client: redis.Redis,
        redis_settings: RedisSettings,
        state_settings: StateSettings,
        metrics: Metrics,
    ) -> None:
        self._client = client
        self._prefix = redis_settings.key_prefix
        self._state = state_settings
        self._metrics = metrics
        self._save_sha = sha1(_SAVE_LUA)
        self._load_sha = sha1(_LOAD_LUA)
        self._cached: OrderedDict[str, AccountState] = OrderedDict()

    def key(self, account_id: str) -> str:
        return f"{self._prefix}acct:{{{account_id}}}"

    def load(
        self,
        account_ids: Iterable[str],
        reads: list[tuple[Any, ...]] | None = None,
        write: LoadedBatch | None = None,
        write_extra: list[tuple[Any, ...]] | None = None,
    ) -> LoadedBatch:
        """One round trip: write ``write`` back (with ``write_extra``), then load the
        accounts (the batch's, repeats allowed) and run ``reads``."""
        return self.send_load(account_ids, reads, write, write_extra).result()

    def send_load(
        self,
        account_ids: Iterable[str],
        reads: list[tuple[Any, ...]] | None = None,
        write: LoadedBatch | None = None,
        write_extra: list[tuple[Any, ...]] | None = None,
    ) -> Pending[LoadedBatch]:
        """``load``, sent now; its result is read when asked for."""
        saves, written = self._saves(write) if write else ([], [])
        writes = saves + list(write_extra or ())
        accounts = list(dict.fromkeys(account_ids))
        loads: list[tuple[Any, ...]] = []
        held = [self._cached.get(a) for a in accounts]
        if accounts:
            marks = [s.watermark_text() if s else "" for s in held]
            keys = map(self.key, accounts)
            loads.append(("EVALSHA", self._load_sha, len(accounts), *keys, *marks))

        # A bound method in a partial, not a closure: compiled by mypyc, a closure and its
        # environment refer to each other, and each batch's write waited for a full collection.
        loaded = partial(self._loaded, accounts, held, written, len(writes))
        return Pending(self._send(writes + loads + list(reads or ()), "load"), loaded)

    def _loaded(
        self,
        accounts: list[str],
        held: list[AccountState | None],
        written: list[str],
        n_writes: int,
        replies: list[Any],
    ) -> LoadedBatch:
        """The load's replies as states; the accounts whose write (sent first) was refused."""
        conflicts = _refused(written, replies)
        rest = replies[n_writes:]
        values = rest.pop(0) if accounts else []
        states = {a: self._resolve(a, v, h) for a, v, h in zip(accounts, values, held, strict=True)}
        marks = {a: s.watermark_text() for a, s in states.items()}
        return LoadedBatch(states, marks, rest, conflicts)

    def _resolve(
        self, account: str, value: bytes | int | None, held: AccountState | None
    ) -> AccountState:
        """The account's state from the load's reply: ``held`` (1: Redis holds its watermark),
        or the value decoded; either is then the most recently used."""
        if value == 1 and held is not None:
            state = held
        else:
            state = AccountState.from_bytes(value, len(self._state.windows_s))  # type: ignore[arg-type]
        if self._state.cache_accounts:
            cached = self._cached
            cached[account] = state
            cached.move_to_end(account)
            if len(cached) > self._state.cache_accounts:
                cached.popitem(last=False)
        return state

    def save(self, batch: LoadedBatch, extra: list[tuple[Any, ...]] | None = None) -> list[str]:
        """Write changed states back, with ``extra`` commands in the same round trip.

        Returns the accounts whose write was refused.
        """
        saves, written = self._saves(batch)
        return _refused(written, self._send(saves + list(extra or ()), "save").replies())

    def encode(self, batch: LoadedBatch) -> None:
        """Encode the batch's write now, for the round trip that will carry it: its states
        must not change any more."""
        batch.write = self._saves(batch)

    def _saves(self, batch: LoadedBatch) -> tuple[list[tuple[Any, ...]], list[str]]:
        """The compare-and-set command (none or one) for the accounts that changed, and those
        accounts, in the order of its reply."""
        if batch.write is not None:
            return batch.write
        accounts: list[str] = []
        args: list[Any] = []
        for account, state in batch.states.items():
            before = batch.loaded_watermarks[account]
            after = state.watermark_text()
            if after == before:
                continue  # nothing applied (all redelivered): nothing to write
            accounts.append(account)
            args += (before, after, state.to_bytes())
        if not accounts:
            return [], []
        keys = map(self.key, accounts)
        command = ("EVALSHA", self._save_sha, len(accounts), *keys, self._state.ttl_s, *args)
        return [command], accounts

    def close(self) -> None:
        self._client.close()

    def _send(self, commands: list[tuple[Any, ...]], op: str) -> RoundTrip:
        observe = self._metrics.redis_seconds.labels(op).observe
        return RoundTrip(self._client, commands, (_SAVE_LUA, _LOAD_LUA), observe)


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


def _refused(written: list[str], replies: list[Any]) -> list[str]:
    """The accounts whose compare-and-set failed, from the save script's reply (first)."""
    return [a for a, ok in zip(written, replies[0], strict=True) if not ok] if written else []


def sha1(script: str) -> str:
    """The name Redis gives a script, so EVALSHA needs no SCRIPT EXISTS round trip."""
    return hashlib.sha1(script.encode("utf-8")).hexdigest()

"""Account state in Redis: one pipelined round trip to load a batch, one to save it.

Each account is one binary value under a key with the account as hash tag
(``acct:{<id>}``), so the code runs unchanged on Redis Cluster. Loading is one MGET.
Saving is a compare-and-set on the account's watermark, which makes the write atomic
per account and refuses it if another worker applied events meanwhile.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from detector.config import RedisSettings, StateSettings
from detector.errors import ServiceUnavailable
from detector.features import EventFeatures
from detector.metrics import Metrics
from detector.state.account import AccountState

# Write the value only if the stored watermark is the one that was loaded, or already the
# new one (this very write, retried after its reply was lost).
_SAVE_LUA = """
local cur = redis.call('GET', KEYS[1])
local mark = cur and string.match(cur, '^[^;]*;') or '-1,-1;'
if mark ~= ARGV[1] and mark ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
return 1
"""

REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


@dataclass
class LoadedBatch:
    """States of the batch's accounts as loaded, and what the extra read commands returned."""

    states: dict[str, AccountState]
    loaded_watermarks: dict[str, str]
    extra: list[Any] = field(default_factory=list)  # replies to the extra commands, in order


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

    def key(self, account_id: str) -> str:
        return f"{self._prefix}acct:{{{account_id}}}"

    def load(
        self, feats: list[EventFeatures], extra: list[tuple[Any, ...]] | None = None
    ) -> LoadedBatch:
        """Load the batch's accounts, with ``extra`` read commands in the same round trip."""
        accounts = list(dict.fromkeys(f.account_id for f in feats))
        commands: list[tuple[Any, ...]] = [("MGET", *map(self.key, accounts))] if accounts else []
        replies = self._execute([], "load", commands + list(extra or ()))[1]
        values = replies.pop(0) if accounts else []
        n_windows = len(self._state.windows_s)
        states = {
            a: AccountState.from_bytes(v, n_windows) for a, v in zip(accounts, values, strict=True)
        }
        marks = {a: s.watermark_text() for a, s in states.items()}
        return LoadedBatch(states, marks, replies)

    def save(self, batch: LoadedBatch, extra: list[tuple[Any, ...]] | None = None) -> list[str]:
        """Write changed states back, with ``extra`` commands in the same round trip.

        Returns the accounts whose write was refused.
        """
        calls = []
        accounts = []
        for account, state in batch.states.items():
            before = batch.loaded_watermarks[account]
            after = state.watermark_text()
            if after == before:
                continue  # nothing applied (all redelivered): nothing to write
            args = [before, after, state.to_bytes(), self._state.ttl_s]
            calls.append((self._save_sha, [self.key(account)], args))
            accounts.append(account)
        replies, _ = self._execute(calls, "save", extra)
        return [a for a, ok in zip(accounts, replies, strict=True) if not ok]

    def close(self) -> None:
        self._client.close()

    def _execute(
        self,
        calls: list[tuple[str, list[str], list[Any]]],
        op: str,
        extra: list[tuple[Any, ...]] | None = None,
    ) -> tuple[list[Any], list[Any]]:
        """Replies to ``calls`` and to ``extra``, from one pipelined round trip."""
        if not calls and not extra:
            return [], []
        started = time.perf_counter()
        try:
            try:
                return self._pipeline(calls, extra)
            except redis.exceptions.NoScriptError:
                # Redis restarted (or was flushed) and forgot the script: load it and retry.
                self._client.script_load(_SAVE_LUA)
                return self._pipeline(calls, extra)
        except REDIS_DOWN as exc:
            raise ServiceUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        finally:
            self._metrics.redis_seconds.labels(op).observe(time.perf_counter() - started)

    def _pipeline(
        self, calls: list[tuple[str, list[str], list[Any]]], extra: list[tuple[Any, ...]] | None
    ) -> tuple[list[Any], list[Any]]:
        pipe = self._client.pipeline(transaction=False)
        for sha, keys, args in calls:
            pipe.evalsha(sha, len(keys), *keys, *args)
        for command in extra or ():
            pipe.execute_command(*command)
        replies = pipe.execute()
        return replies[: len(calls)], replies[len(calls) :]


def sha1(script: str) -> str:
    """The name Redis gives a script, so EVALSHA needs no SCRIPT EXISTS round trip."""
    return hashlib.sha1(script.encode("utf-8")).hexdigest()

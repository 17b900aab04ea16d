"""Account state in Redis: one pipelined round trip to load a batch, one to save it.

Keys carry the account in a hash tag (``acct:{<id>}``) so every script touches a
single Redis Cluster slot. Loading adds the batch's values to scratch copies of the
account's HyperLogLogs, so each event sees the distinct counts as they were after it,
also when a batch is processed again after a crash. Saving is a compare-and-set on the
account's watermark, which makes the write atomic per account (the scratch copies
replace the HyperLogLogs in the same step) and refuses it if another worker applied
events meanwhile.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from detector.config import RedisSettings, StateSettings
from detector.errors import ServiceUnavailable
from detector.features import EventFeatures
from detector.metrics import Metrics
from detector.state.account import AccountState, Distinct

SCRATCH_TTL_S = 3600  # scratch HyperLogLogs of a batch that was never saved (a crash) go away

# PFADD each event's values, in order, to a scratch copy of the account's HyperLogLog
# (KEYS[5..7] for KEYS[2..4]) and report the distinct counts after each event.
_LOAD_LUA = """
local fields = redis.call('HGETALL', KEYS[1])
local c, target, counts = {}, {}, {}
for k = 2, 4 do c[k] = redis.call('PFCOUNT', KEYS[k]); target[k] = KEYS[k] end
for i = 2, #ARGV, 3 do
  for k = 2, 4 do
    local v = ARGV[i + k - 2]
    if v ~= '' then
      if target[k] == KEYS[k] then
        target[k] = KEYS[k + 3]
        redis.call('DEL', target[k])
        if redis.call('EXISTS', KEYS[k]) == 1 then redis.call('COPY', KEYS[k], target[k]) end
      end
      if redis.call('PFADD', target[k], v) == 1 then c[k] = redis.call('PFCOUNT', target[k]) end
    end
    counts[#counts + 1] = c[k]
  end
end
for k = 2, 4 do
  if target[k] ~= KEYS[k] then redis.call('EXPIRE', target[k], ARGV[1]) end
end
return {fields, counts}
"""

# Write the account's fields only if its watermark is still the one that was loaded; the
# scratch HyperLogLogs of the load become the account's in the same step.
_SAVE_LUA = """
local cur = redis.call('HMGET', KEYS[1], 'wp', 'wo')
if (cur[1] or '-1') ~= ARGV[1] or (cur[2] or '-1') ~= ARGV[2] then
  redis.call('DEL', KEYS[5], KEYS[6], KEYS[7])
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
for k = 5, 7 do
  if redis.call('EXISTS', KEYS[k]) == 1 then redis.call('RENAME', KEYS[k], KEYS[k - 3]) end
end
for k = 1, 4 do redis.call('EXPIRE', KEYS[k], ARGV[3]) end
return 1
"""

REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


@dataclass
class LoadedBatch:
    """States of the batch's accounts, and each event's distinct counts (aligned with the batch)."""

    states: dict[str, AccountState]
    loaded_watermarks: dict[str, tuple[int, int]]
    distinct: list[Distinct]
    extra: list[Any] = field(default_factory=list)  # replies to the extra commands, in order


def connect(settings: RedisSettings) -> redis.Redis:
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
        decode_responses=True,
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), settings.retry_attempts),
        **tls,
    )


class AccountStore:
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
        self._load_sha = sha1(_LOAD_LUA)
        self._save_sha = sha1(_SAVE_LUA)

    def keys(self, account_id: str) -> list[str]:
        """The state hash, its three HyperLogLogs, and their scratch copies while a batch is in hand."""
        base = f"{self._prefix}acct:{{{account_id}}}"
        hlls = [f"{base}:ip", f"{base}:m", f"{base}:ua"]
        return [f"{base}:s", *hlls, *(f"{k}+" for k in hlls)]

    def load(
        self, feats: list[EventFeatures], extra: list[tuple[Any, ...]] | None = None
    ) -> LoadedBatch:
        """Load the batch's accounts, with ``extra`` read commands in the same round trip."""
        by_account: dict[str, list[int]] = {}
        for i, f in enumerate(feats):
            by_account.setdefault(f.account_id, []).append(i)
        calls = []
        for account, idx in by_account.items():
            args: list[Any] = [SCRATCH_TTL_S]
            for i in idx:
                f = feats[i]
                args += (f.source_ip, f.model, f.user_agent)
            calls.append((self._load_sha, self.keys(account), args))
        replies, extra_replies = self._execute(calls, "load", extra)

        states: dict[str, AccountState] = {}
        distinct: list[Distinct] = [Distinct()] * len(feats)
        n_windows = len(self._state.windows_s)
        for (account, idx), (flat, counts) in zip(by_account.items(), replies, strict=True):
            state = AccountState.from_fields(dict(_pairs(flat)), n_windows)
            states[account] = state
            for j, i in enumerate(idx):
                distinct[i] = Distinct(*counts[3 * j : 3 * j + 3])
        marks = {a: s.watermark for a, s in states.items()}
        return LoadedBatch(states, marks, distinct, extra_replies)

    def save(self, batch: LoadedBatch, extra: list[tuple[Any, ...]] | None = None) -> list[str]:
        """Write changed states back, with ``extra`` commands in the same round trip.

        Returns the accounts whose write was refused.
        """
        calls = []
        accounts = []
        extra = list(extra or ())
        for account, state in batch.states.items():
            before = batch.loaded_watermarks[account]
            if state.watermark == before:
                # Nothing applied (all redelivered): no write, and the load's scratch copies go.
                extra.append(("DEL", *self.keys(account)[4:]))
                continue
            args: list[Any] = [str(before[0]), str(before[1]), self._state.ttl_s]
            for field_value in state.to_fields().items():
                args += field_value
            calls.append((self._save_sha, self.keys(account), args))
            accounts.append(account)
        replies, _ = self._execute(calls, "save", extra)
        return [a for a, ok in zip(accounts, replies, strict=False) if not ok]

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
                # Redis restarted (or was flushed) and forgot the scripts: load once and retry.
                self._client.script_load(_LOAD_LUA)
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


def _pairs(flat: list[str]) -> Iterator[tuple[str, str]]:
    it = iter(flat)
    return zip(it, it, strict=True)

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

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import redis

from detector.config import RedisSettings, StateSettings
from detector.io.roundtrip import Pending, RoundTrip, sha1
from detector.io.scripts import script
from detector.metrics import Metrics
from detector.state.account import AccountState

_SAVE_LUA: Final = script("account_save")

_LOAD_LUA: Final = script("account_load")


@dataclass
class LoadedBatch:
    """States of the batch's accounts as loaded, and what came back with them."""

    states: dict[str, AccountState]
    loaded_watermarks: dict[str, str]
    extra: list[Any] = field(default_factory=list)  # replies to the extra reads, in order
    conflicts: list[str] = field(default_factory=list)  # accounts of the write that was refused
    # The write of its changed states, once encoded (``AccountStore.encode``).
    write: tuple[list[tuple[Any, ...]], list[str]] | None = None


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
            watermarks = [s.watermark_text() if s else "" for s in held]
            keys = map(self.key, accounts)
            loads.append(("EVALSHA", self._load_sha, len(accounts), *keys, *watermarks))

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
        watermarks = {a: s.watermark_text() for a, s in states.items()}
        return LoadedBatch(states, watermarks, rest, conflicts)

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


def _refused(written: list[str], replies: list[Any]) -> list[str]:
    """The accounts whose compare-and-set failed, from the save script's reply (first)."""
    return [a for a, ok in zip(written, replies[0], strict=True) if not ok] if written else []

"""Account state in Redis: one pipelined round trip writes the previous batch and loads the next.

Each account is one binary value under a key with the account as hash tag
(``acct:{<id>}``). Writing is a compare-and-set on the account's watermark, which makes
the write atomic per account and refuses it if another worker applied events meanwhile.
The write goes first in the round trip, so an account in both batches is loaded as just
written. Writing and loading are one script call each over the batch's keys; on Redis
Cluster, where a script may only touch keys of one slot, one call per slot, all in the same
round trip, their replies put back in the batch's order.

A worker keeps the states it loaded (``state.cache_accounts``, least recently used out). A
state is a pure function of the events applied to it, and its watermark names the last
one, so when Redis holds the watermark the cached state carries, it holds that very state:
the load then sends back a 1 instead of the value, and nothing is decoded. Any other
watermark (another worker's write, a refused or lost write, a batch retried after its
state was changed in memory, an expired key) sends the value, as without a cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import redis
from redis.cluster import RedisCluster

from detector.config import RedisSettings, StateSettings
from detector.io.roundtrip import Pending, RoundTrip, sha1
from detector.io.scripts import script
from detector.metrics import Metrics
from detector.state.account import AccountState

_SAVE_LUA: Final = script("account_save")

_LOAD_LUA: Final = script("account_load")


@dataclass(frozen=True)
class Calls:
    """Script calls over some accounts' keys (one, or on Redis Cluster one per slot), the
    accounts, and where each account's value is in the calls' replies taken in turn (None:
    in the accounts' order)."""

    commands: list[tuple[Any, ...]]
    accounts: list[str]
    order: list[int] | None = None

    def values(self, replies: list[Any]) -> list[Any]:
        """The calls' replies (the first ``len(commands)`` of ``replies``) as one value per
        account, in the accounts' order."""
        if self.order is None:
            return replies[0] if self.commands else []
        values: list[Any] = [None] * len(self.accounts)
        sent = (v for reply in replies[: len(self.commands)] for v in reply)
        for position, value in zip(self.order, sent, strict=True):
            values[position] = value
        return values


@dataclass
class LoadedBatch:
    """States of the batch's accounts as loaded, and what came back with them."""

    states: dict[str, AccountState]
    loaded_watermarks: dict[str, str]
    extra: list[Any] = field(default_factory=list)  # replies to the extra reads, in order
    conflicts: list[str] = field(default_factory=list)  # accounts of the write that was refused
    # The write of its changed states, once encoded (``AccountStore.encode``).
    write: Calls | None = None


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
        # On Redis Cluster, the slot of a key: script calls are one per slot.
        self._keyslot: Callable[[str], int] | None = None
        if isinstance(client, RedisCluster):
            self._keyslot = client.keyslot
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
        save = self._saves(write) if write else _NO_CALLS
        writes = save.commands + list(write_extra or ())
        accounts = list(dict.fromkeys(account_ids))
        held = [self._cached.get(a) for a in accounts]
        watermarks = [s.watermark_text() if s else "" for s in held]
        load = self._calls(self._load_sha, accounts, watermarks, 1)

        # A bound method in a partial, not a closure: compiled by mypyc, a closure and its
        # environment refer to each other, and each batch's write waited for a full collection.
        loaded = partial(self._loaded, load, held, save, len(writes))
        return Pending(self._send(writes + load.commands + list(reads or ()), "load"), loaded)

    def _loaded(
        self,
        load: Calls,
        held: list[AccountState | None],
        save: Calls,
        n_writes: int,
        replies: list[Any],
    ) -> LoadedBatch:
        """The load's replies as states; the accounts whose write (sent first) was refused."""
        conflicts = _refused(save, replies)
        rest = replies[n_writes:]
        values = load.values(rest)
        accounts = load.accounts
        states = {a: self._resolve(a, v, h) for a, v, h in zip(accounts, values, held, strict=True)}
        watermarks = {a: s.watermark_text() for a, s in states.items()}
        return LoadedBatch(states, watermarks, rest[len(load.commands) :], conflicts)

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
        save = self._saves(batch)
        return _refused(save, self._send(save.commands + list(extra or ()), "save").replies())

    def encode(self, batch: LoadedBatch) -> None:
        """Encode the batch's write now, for the round trip that will carry it: its states
        must not change any more."""
        batch.write = self._saves(batch)

    def _saves(self, batch: LoadedBatch) -> Calls:
        """The compare-and-set calls for the accounts that changed (none if none did)."""
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
        return self._calls(self._save_sha, accounts, args, 3, (self._state.ttl_s,))

    def _calls(
        self,
        sha: str,
        accounts: list[str],
        args: list[Any],
        per_key: int,
        head: tuple[Any, ...] = (),
    ) -> Calls:
        """Calls of script ``sha`` over the accounts' keys, ``head`` then each account's
        ``per_key`` of ``args`` as its arguments: one call on one Redis; on Redis Cluster
        one per slot, in the order the slots first appear."""
        if not accounts:
            return _NO_CALLS
        keys = [self.key(a) for a in accounts]
        if self._keyslot is None:
            return Calls([("EVALSHA", sha, len(keys), *keys, *head, *args)], accounts)
        slots: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            slots.setdefault(self._keyslot(key), []).append(i)
        commands: list[tuple[Any, ...]] = []
        for positions in slots.values():
            part = [a for i in positions for a in args[i * per_key : (i + 1) * per_key]]
            commands.append(
                ("EVALSHA", sha, len(positions), *(keys[i] for i in positions), *head, *part)
            )
        order = [i for positions in slots.values() for i in positions]
        return Calls(commands, accounts, order)

    def close(self) -> None:
        self._client.close()

    def _send(self, commands: list[tuple[Any, ...]], op: str) -> RoundTrip:
        observe = self._metrics.redis_seconds.labels(op).observe
        return RoundTrip(self._client, commands, (_SAVE_LUA, _LOAD_LUA), observe)


_NO_CALLS: Final = Calls([], [])


def _refused(save: Calls, replies: list[Any]) -> list[str]:
    """The accounts whose compare-and-set failed, from the save calls' replies (first)."""
    return [a for a, ok in zip(save.accounts, save.values(replies), strict=True) if not ok]

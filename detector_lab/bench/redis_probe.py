"""What the detector costs Redis: command counts (INFO commandstats), and bytes per account and
per cross-account index entry (MEMORY USAGE). Also clears a run's keys afterwards."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import redis

SCAN_COUNT = 1000
PIPELINE_CHUNK = 500
INDEX_FAMILIES = ("ix", "ax")  # evidence value -> accounts sorted sets (io/campaign_store.py)


def glob_escape(text: str) -> str:
    r"""``text`` matched literally in a SCAN pattern.

    >>> glob_escape("det:a*b?[c]")
    'det:a\\*b\\?\\[c\\]'
    """
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def command_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Calls per command between two snapshots, without commands that did not run.

    >>> command_delta({"get": 5, "set": 1}, {"get": 9, "set": 1, "evalsha": 2})
    {'evalsha': 2, 'get': 4}
    """
    delta = {k: v - before.get(k, 0) for k, v in after.items()}
    return {k: v for k, v in sorted(delta.items()) if v > 0}


@dataclass(frozen=True)
class FamilyMemory:
    """Keys of one kind under the campaign hash tag, their bytes and entries (members/fields)."""

    keys: int
    bytes: int
    entries: int


def account_of(key: str, prefix: str) -> tuple[str, str]:
    """(account, kind of key) of a per-account key ``<prefix>acct:{<account>}<kind>``.

    >>> account_of("det:acct:{a-1}", "det:"), account_of("det:acct:{a-1}:ip", "det:")
    (('a-1', ''), ('a-1', ':ip'))
    """
    rest = key[len(prefix) + len("acct:{") :]
    account, _, kind = rest.partition("}")
    return account, kind


@dataclass(frozen=True)
class AccountMemory:
    """How many accounts have state, and a sample's bytes per kind of key (``""``: the
    account's main value), all of an account's keys counted together in ``totals``."""

    accounts: int
    sample: list[dict[str, int]]

    def totals(self) -> list[int]:
        return [sum(sizes.values()) for sizes in self.sample]

    def kinds(self) -> list[str]:
        return sorted({kind for sizes in self.sample for kind in sizes})

    def of_kind(self, kind: str) -> list[int]:
        return [sizes.get(kind, 0) for sizes in self.sample]


class RedisProbe:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client  # decode_responses=True

    def version(self) -> str:
        return str(self._client.info("server").get("redis_version", "unknown"))

    def command_calls(self) -> dict[str, int]:
        """Calls per command so far; commands run inside Lua scripts are counted too."""
        stats = self._client.info("commandstats")
        return {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in stats.items()
            if isinstance(value, dict)
        }

    def used_memory(self) -> int:
        return int(self._client.info("memory")["used_memory"])

    def scan(self, pattern: str) -> Iterator[str]:
        yield from self._client.scan_iter(match=pattern, count=SCAN_COUNT)

    def key_bytes(self, key: str) -> int:
        return int(self._client.memory_usage(key, samples=0) or 0)

    def account_bytes(self, prefix: str, sample: int, seed: int = 0) -> AccountMemory:
        """Bytes of a random sample of accounts, each key of an account (same hash tag) apart."""
        by_account: dict[str, list[str]] = {}
        for key in self.scan(f"{glob_escape(prefix)}acct:{{*"):
            by_account.setdefault(account_of(key, prefix)[0], []).append(key)
        accounts = sorted(by_account)  # SCAN order is arbitrary: sort so a seed picks the same
        chosen = random.Random(seed).sample(accounts, min(sample, len(accounts)))
        keys = [key for account in chosen for key in sorted(by_account[account])]
        sizes = dict(zip(keys, self._memory(keys), strict=True))
        return AccountMemory(
            len(accounts),
            [
                {account_of(k, prefix)[1]: sizes[k] for k in by_account[account]}
                for account in chosen
            ],
        )

    def campaign_bytes(self, prefix: str) -> dict[str, FamilyMemory]:
        """Campaign state (``cmp:{c}:*``) by kind of key: ``ix``/``ax`` are the evidence indices."""
        base = f"{prefix}cmp:{{c}}:"
        keys = sorted(self.scan(f"{glob_escape(base)}*"))
        sizes = self._memory(keys)
        entries = self._entries(keys)
        families: dict[str, list[int]] = {}
        for key, size, count in zip(keys, sizes, entries, strict=True):
            family = key[len(base) :].split(":", 1)[0]
            acc = families.setdefault(family, [0, 0, 0])
            acc[0] += 1
            acc[1] += size
            acc[2] += count
        return {f: FamilyMemory(*v) for f, v in sorted(families.items())}

    def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        batch: list[str] = []
        for key in self.scan(f"{glob_escape(prefix)}*"):
            batch.append(key)
            if len(batch) >= PIPELINE_CHUNK:
                deleted += int(self._client.unlink(*batch))
                batch = []
        if batch:
            deleted += int(self._client.unlink(*batch))
        return deleted

    def _memory(self, keys: list[str]) -> list[int]:
        out: list[int] = []
        for start in range(0, len(keys), PIPELINE_CHUNK):
            pipe = self._client.pipeline(transaction=False)
            for key in keys[start : start + PIPELINE_CHUNK]:
                pipe.memory_usage(key, samples=0)  # 0: every element, not an estimate
            out += [int(v or 0) for v in pipe.execute()]
        return out

    def _entries(self, keys: list[str]) -> list[int]:
        """Members of sorted sets and sets, fields of hashes, distinct counts of HyperLogLogs."""
        types: list[str] = []
        for start in range(0, len(keys), PIPELINE_CHUNK):
            pipe = self._client.pipeline(transaction=False)
            for key in keys[start : start + PIPELINE_CHUNK]:
                pipe.type(key)
            types += [str(t) for t in pipe.execute()]
        commands = {"zset": "ZCARD", "hash": "HLEN", "set": "SCARD", "string": "PFCOUNT"}
        out: list[int] = []
        for start in range(0, len(keys), PIPELINE_CHUNK):
            pipe = self._client.pipeline(transaction=False)
            chunk = list(zip(keys, types, strict=True))[start : start + PIPELINE_CHUNK]
            for key, kind in chunk:
                pipe.execute_command(commands.get(kind, "EXISTS"), key)
            out += [int(v) if isinstance(v, int) else 0 for v in pipe.execute(raise_on_error=False)]
        return out

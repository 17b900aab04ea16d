"""Black box: `detector run` on the real broker and Redis, fed thousands of hostile messages
mixed into valid traffic. The worker never exits, every message is accounted for, and the
valid accounts end in the same state as in a run without the hostile messages."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka.errors import KafkaError

from detector.config import Settings
from detector.embedded import free_port
from detector.io.kafka import ensure_topics, make_producer
from detector.state.account import AccountState
from detector_lab.bench import scrape
from detector_lab.sim.basic import BasicTraffic, generate
from tests.hostile import hostile_messages, oversized
from tests.integration.helpers import (
    TopicReader,
    account_values,
    start_worker,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.integration

HOSTILE = 5_000
SEED = int(os.environ.get("HOSTILE_TEST_SEED", "20261207"))
TRAFFIC = BasicTraffic(benign_accounts=150, hours=3.0, abusive_per_hour=500.0, seed=5)
MAX_MESSAGE_BYTES = 1024 * 1024  # Kafka's default message.max.bytes; Tansu has no limit


def _produce(settings: Settings, messages: list[tuple[bytes | None, bytes]]) -> int:
    """Sends in the given order; returns how many the broker took (it may refuse a huge one)."""
    ensure_topics(settings.kafka)
    producer = make_producer(settings.kafka, max_request_size=128 * 1024 * 1024)
    futures = [producer.send(settings.kafka.input_topic, key=k, value=v) for k, v in messages]
    producer.flush()
    producer.close()
    taken = 0
    for future in futures:
        try:
            future.get(timeout=0)
            taken += 1
        except KafkaError:
            pass
    return taken


def _run(settings: Settings, tmp_path: Path, messages: list[tuple[bytes | None, bytes]]) -> Any:
    """Runs one worker over ``messages``; returns (produced, metrics, dead letters, states)."""
    port = free_port()
    settings = settings.with_overrides(metrics={"port": port})
    produced = _produce(settings, messages)
    config = write_config(settings, tmp_path)
    worker = start_worker(config)
    try:
        wait_until(lambda: scrape.fetch(port), 30, "the worker's metrics")

        def accounted() -> bool:
            assert worker.poll() is None, f"the worker exited with {worker.returncode}"
            m = scrape.fetch(port)
            assert m is not None, "the worker's metrics are gone"
            done = sum(
                m.total(name)
                for name in (
                    "detector_events_applied_total",
                    "detector_events_duplicate_total",
                    "detector_events_invalid_total",
                )
            )
            progress[:] = [done, produced]
            return done >= produced

        progress: list[float] = []
        try:
            wait_until(accounted, 180, "every message accounted for", every_s=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {progress[0]:.0f} of {progress[1]}") from None
        metrics = scrape.fetch(port)
        assert worker.poll() is None and metrics is not None, "the worker exited"
    finally:
        worker.terminate()
        code = worker.wait(30)
    assert code == 0, "the worker did not stop cleanly"
    reader = TopicReader(settings, settings.kafka.dlq_topic)
    letters = reader.read_to_end(60, "dead letters")
    reader.close()
    return produced, metrics, letters, account_values(settings)


def _counted(value: bytes | None, windows: int) -> AccountState:
    """What the account's own events make of its state. Not the watermark (hostile messages
    in between move the offsets) nor the alert cooldowns: which alerts fire also depends on
    the shared models, which see the partitions in fetch order (see the README)."""
    state = AccountState.from_bytes(value, windows)
    state.wm_offset = state.wm_partition = -1
    state.cooldowns = {}
    return state


def test_hostile_messages_never_stop_the_worker_and_lose_nothing(
    service_settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    valid = [(e["account_id"].encode(), orjson.dumps(e)) for e in generate(TRAFFIC)]
    hostile = hostile_messages(HOSTILE, SEED)
    hostile_raw: list[tuple[bytes | None, bytes]] = [
        (rng.choice([None, b"raw", b"\x00", rng.randbytes(8)]), m) for _, m in hostile
    ]
    hostile_raw.append((b"raw", oversized(MAX_MESSAGE_BYTES)))
    # Hostile messages at random places; the valid ones keep their order.
    mixed = valid + hostile_raw
    positions = sorted(rng.sample(range(len(mixed)), len(hostile_raw)))
    order: list[tuple[bytes | None, bytes]] = []
    v = iter(valid)
    h = iter(hostile_raw)
    for i in range(len(mixed)):
        order.append(next(h) if positions and i == positions[0] else next(v))
        if positions and i == positions[0]:
            positions.pop(0)

    clean = service_settings.with_overrides(
        redis={"key_prefix": f"{service_settings.redis.key_prefix}clean:"},
        kafka={
            "input_topic": f"{service_settings.kafka.input_topic}-clean",
            "dlq_topic": f"{service_settings.kafka.dlq_topic}-clean",
            "group_id": f"{service_settings.kafka.group_id}-clean",
        },
    )
    (tmp_path / "clean").mkdir()
    (tmp_path / "mixed").mkdir()
    _, _, _, clean_states = _run(clean, tmp_path / "clean", valid)
    produced, metrics, letters, states = _run(service_settings, tmp_path / "mixed", order)

    assert produced >= len(valid) + HOSTILE  # the broker took every hostile message we count
    applied = metrics.total("detector_events_applied_total")
    duplicates = metrics.total("detector_events_duplicate_total")
    invalid = metrics.total("detector_events_invalid_total")
    print(  # the figures behind the README's claim (pytest -s)
        f"\nproduced {produced} ({len(valid)} valid, {len(hostile_raw)} hostile): applied "
        f"{applied:.0f}, duplicates {duplicates:.0f}, dead-lettered {invalid:.0f}"
    )
    assert applied + duplicates + invalid == produced
    assert len(letters) == invalid, "every refused message is on the dead-letter topic"
    reasons = {dict(m.headers)["dlq.reason"].decode() for m in letters}
    assert {"invalid_json", "invalid_utf8", "wrong_type", "not_object"} <= reasons
    # Hostile messages that are valid events belong to other accounts (mutated bytes can
    # rename one): the traffic's own accounts are exactly as without them.
    assert len(clean_states) == len({e["account_id"] for e in generate(TRAFFIC)})
    n = len(service_settings.state.windows_s)
    mine = {a: _counted(states.get(a), n) for a in clean_states}
    assert mine == {a: _counted(v, n) for a, v in clean_states.items()}


def test_replay_and_validate_report_hostile_lines_by_number_and_go_on(tmp_path: Path) -> None:
    valid = [orjson.dumps(e) for e in generate(TRAFFIC)]
    # A JSON-lines file cannot hold a line break inside a line: those messages would be
    # several lines, each of them hostile in its own way.
    hostile = [m for _, m in hostile_messages(HOSTILE, SEED + 1) if m.strip()]
    rng = random.Random(SEED)
    lines = valid + hostile
    rng.shuffle(lines)
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"\n".join(lines) + b"\n")
    numbered = [
        n for n, line in enumerate(events_file.read_bytes().split(b"\n"), 1) if line.strip()
    ]

    checked = subprocess.run(
        [sys.executable, "-m", "detector.cli", "validate", str(events_file)],
        capture_output=True,
        timeout=300,
    )
    assert checked.returncode == 1, checked.stderr.decode()[-2000:]
    assert b"Traceback" not in checked.stderr
    summary = checked.stdout.decode().strip().splitlines()[-1]
    assert summary.startswith(f"{len(numbered)} events checked")

    out = tmp_path / "alerts.jsonl"
    replayed = subprocess.run(
        [
            sys.executable,
            "-m",
            "detector.cli",
            "replay",
            "--input",
            str(events_file),
            "--output",
            str(out),
        ],
        capture_output=True,
        timeout=300,
    )
    assert replayed.returncode == 0, replayed.stderr.decode()[-2000:]
    letters = [orjson.loads(line) for line in out.with_suffix(".dead-letters.jsonl").open("rb")]
    assert len(letters) >= len(hostile) // 2
    assert {d["line"] for d in letters} <= set(numbered)
    file_lines = [x for x in events_file.read_bytes().split(b"\n") if x.strip()]
    traffic = set(valid)
    valid_lines = {n for n, x in zip(numbered, file_lines, strict=True) if x in traffic}
    assert not {d["line"] for d in letters} & valid_lines  # no line of the traffic was refused

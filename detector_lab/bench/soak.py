"""A long run for memory: the bench's events, many times over, through one ``detector run``.

``python -m detector_lab.bench.soak --cycles 10`` (1 million events from the 100,000 default
ones): each cycle gets new event ids and timestamps one event-time span later, so every
event is applied; the worker's RSS is printed at each tenth of the progress. Unlike
``detector bench --events 1000000``, nothing holds a million events in memory.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import yaml
from kafka import KafkaConsumer, TopicPartition

from detector.config import Settings
from detector.embedded import EmbeddedKafka, EmbeddedRedis
from detector.io.kafka import ensure_topics, make_producer
from detector_lab.bench.events import prepare_events

POLL_S = 2.0


def cycled(events: list[dict[str, Any]], cycles: int) -> Iterator[dict[str, Any]]:
    """``events`` ``cycles`` times, each copy with new ids and later timestamps.

    >>> [(e["event_id"], e["ts"]) for e in cycled([{"event_id": "a", "ts": 0.0}], 2)]
    [('a~0', 0.0), ('a~1', 3600.0)]
    """
    span = max(e["ts"] for e in events) - min(e["ts"] for e in events) + 3600
    for c in range(cycles):
        for e in events:
            yield {**e, "event_id": f"{e['event_id']}~{c}", "ts": e["ts"] + c * span}


def committed(settings: Settings, partitions: int) -> int:
    """Events the worker's group has committed, over all partitions."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, group_id=settings.kafka.group_id
    )
    try:
        tps = [TopicPartition(settings.kafka.input_topic, p) for p in range(partitions)]
        return sum(consumer.committed(tp) or 0 for tp in tps)
    finally:
        consumer.close(autocommit=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--events", type=int, default=100_000, help="events per cycle")
    parser.add_argument("--work-dir", type=Path, default=Path("out/bench"))
    args = parser.parse_args(argv)
    base = prepare_events("default", None, args.events, args.work_dir, print)
    events = [orjson.loads(line) for line in base.path.read_bytes().splitlines()]
    total = len(events) * args.cycles
    with EmbeddedRedis() as redis_server, EmbeddedKafka() as broker:
        settings = Settings().with_overrides(
            redis={"url": redis_server.url},
            kafka={"bootstrap_servers": broker.bootstrap_servers, "topic_partitions": 4},
            metrics={"port": 0},
        )
        ensure_topics(settings.kafka)
        producer = make_producer(settings.kafka, linger_ms=20, batch_size=256 * 1024)
        for e in cycled(events, args.cycles):
            producer.send(
                settings.kafka.input_topic, key=e["account_id"].encode(), value=orjson.dumps(e)
            )
        producer.flush()
        producer.close()
        print(f"{total:,} events produced; one worker starts")
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "soak.yaml"
            config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
            worker = subprocess.Popen(
                [sys.executable, "-m", "detector.cli", "--log-level", "warning", "run",
                 "--config", str(config)]
            )  # fmt: skip
            rss: list[int] = []
            started, mark = time.monotonic(), 0.1
            try:
                while (done := committed(settings, 4)) < total:
                    if done >= mark * total:
                        rss.append(round(psutil.Process(worker.pid).memory_info().rss / 2**20))
                        rate = done / (time.monotonic() - started)
                        print(f"{done:>10,} committed  RSS {rss[-1]} MiB  {rate:,.0f} events/s")
                        mark += 0.1
                    time.sleep(POLL_S)
            finally:
                worker.terminate()
                worker.wait(30)
    print(f"RSS at each tenth (MiB): {rss}; last / first = {rss[-1] / rss[0]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

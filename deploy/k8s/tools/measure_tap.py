"""Measure `detector tap`: events/s accepted over HTTP and delivered to Kafka, and the tap
process's peak resident memory, against an embedded broker on loopback. The figures behind
the tap container's resources in deploy/k8s/sidecar/.

    .venv/bin/python deploy/k8s/tools/measure_tap.py --events 100000 --clients 2
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import orjson

from detector.embedded import EmbeddedKafka, free_port

PROMPT = (
    "Summarise ticket {i} about a delayed parcel, politely, in three sentences for the customer."
)


def rss_kib(pid: int) -> int:
    match = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) if match else 0


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def client(url: str, first: int, count: int, batch: int) -> None:
    for start in range(first, first + count, batch):
        n = min(batch, first + count - start)
        body = b"".join(
            orjson.dumps({"event_id": f"m{i}", "ts": 1.767e9 + i, "account_id": f"acct-{i % 500}",
                          "model": "m", "prompt": PROMPT.format(i=i), "input_tokens": 20}) + b"\n"
            for i in range(start, start + n)
        )  # fmt: skip
        while True:
            request = urllib.request.Request(
                url, data=body, headers={"Content-Type": "application/x-ndjson"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=30):
                    break
            except urllib.error.HTTPError as exc:
                if exc.code not in (429, 503):
                    raise
                time.sleep(float(exc.headers.get("Retry-After", "1")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--batch", type=int, default=200, help="events per request")
    args = parser.parse_args()
    with EmbeddedKafka() as broker, tempfile.TemporaryDirectory() as tmp:
        events_port, metrics_port = free_port(), free_port()
        config = Path(tmp) / "tap.yaml"
        config.write_text(
            f"kafka: {{bootstrap_servers: '{broker.bootstrap_servers}', input_topic: measure}}\n"
            f"tap: {{port: {events_port}}}\nmetrics: {{port: {metrics_port}}}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTOR__")}
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        tap = subprocess.Popen(
            [sys.executable, "-m", "detector.cli", "--log-level", "warning", "tap", "--config", str(config)],
            env=env,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{events_port}/v1/events"
            deadline = time.monotonic() + 30
            while True:
                try:
                    metric(metrics_port, "detector_tap_buffer_events")
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            idle = rss_kib(tap.pid)
            share = args.events // args.clients
            started = time.perf_counter()
            threads = [
                threading.Thread(target=client, args=(url, c * share, share, args.batch))
                for c in range(args.clients)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            accepted_s = time.perf_counter() - started
            total = share * args.clients
            while metric(metrics_port, "detector_tap_events_delivered_total") < total:
                time.sleep(0.05)
            delivered_s = time.perf_counter() - started
            size = len(orjson.dumps({"event_id": "m12345", "ts": 1.767e9, "account_id": "acct-123",
                                     "model": "m", "prompt": PROMPT.format(i=12345), "input_tokens": 20}))  # fmt: skip
            print(
                f"{total} events of {size} bytes, {args.clients} clients x {args.batch}/request: "
                f"accepted {total / accepted_s:,.0f}/s, delivered {total / delivered_s:,.0f}/s; "
                f"tap RSS {idle / 1024:.0f} MiB idle, peak {rss_kib(tap.pid) / 1024:.0f} MiB"
            )
        finally:
            tap.terminate()
            tap.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())

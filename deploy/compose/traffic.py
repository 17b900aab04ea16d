"""Demo traffic for the Compose stack: a labelled scenario from the detector's simulator,
posted to `detector tap` as JSON lines at a steady rate, over and over.

Each round re-stamps the scenario so that it ends now (event time in the past, never in the
future) and gives every account and event id a round suffix, so each round is fresh traffic
that the detector analyses again instead of dropping as duplicates. Honours 429/503 with
Retry-After, like any well-behaved client of the tap should.

    python traffic.py --tap http://tap:8787 --scenario ci --rate 300
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

EVENTS_PATH = "/v1/events"


def scenario_events(name: str) -> list[dict[str, Any]]:
    from detector_lab.evaluation.run import prepare_scenario
    from detector_lab.sim.generate import simulate

    return sorted(simulate(prepare_scenario(name, None, 1.0)).events, key=lambda e: e["ts"])


def restamp(
    events: Sequence[dict[str, Any]], round_no: int, now: float
) -> Iterator[dict[str, Any]]:
    """The events shifted to end at ``now``; ids made unique per round."""
    shift = now - events[-1]["ts"]
    suffix = f"~r{round_no}" if round_no else ""
    for event in events:
        out = dict(event, ts=event["ts"] + shift, event_id=event["event_id"] + suffix)
        out["account_id"] = event["account_id"] + suffix
        if "account_created_ts" in event:
            out["account_created_ts"] = event["account_created_ts"] + shift
        yield out


def post(url: str, events: Sequence[dict[str, Any]], timeout_s: float = 30.0) -> tuple[int, float]:
    """(HTTP status, seconds to wait before retrying: 0 unless the tap asked to slow down)."""
    body = b"".join(json.dumps(e).encode() + b"\n" for e in events)
    request = urllib.request.Request(
        url + EVENTS_PATH,
        data=body,
        headers={"Content-Type": "application/x-ndjson"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            return reply.status, 0.0
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:500].decode("utf-8", errors="replace")
        if exc.code in (429, 503):
            return exc.code, float(exc.headers.get("Retry-After", "1"))
        raise SystemExit(f"tap refused a batch with {exc.code}: {detail}") from None


def send(url: str, events: Sequence[dict[str, Any]], rate: float, batch: int) -> int:
    """All ``events`` in batches at about ``rate`` events/s; returns how many were accepted."""
    sent = 0
    started = time.monotonic()
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        while True:
            try:
                status, wait_s = post(url, chunk)
            except urllib.error.URLError as exc:  # the tap is restarting
                status, wait_s = 0, 2.0
                print(f"tap unreachable ({exc.reason}); retrying", file=sys.stderr)
            if status == 202:
                break
            time.sleep(wait_s)
        sent += len(chunk)
        ahead = sent / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
    return sent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tap", default="http://127.0.0.1:8787", help="base URL of detector tap")
    parser.add_argument("--scenario", default="ci", help="scenario name or YAML path")
    parser.add_argument("--rate", type=float, default=300.0, help="events per second")
    parser.add_argument("--batch", type=int, default=200, help="events per request")
    parser.add_argument("--rounds", type=int, default=0, help="rounds to send (0: forever)")
    args = parser.parse_args(argv)
    events = scenario_events(args.scenario)
    print(f"scenario {args.scenario}: {len(events)} events per round at {args.rate:.0f}/s")
    round_no = 0
    while not args.rounds or round_no < args.rounds:
        began = time.monotonic()
        sent = send(args.tap, list(restamp(events, round_no, time.time())), args.rate, args.batch)
        print(f"round {round_no}: {sent} events in {time.monotonic() - began:.0f} s")
        round_no += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The bench's result document (JSON), its Markdown page, and a console summary."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import orjson
from rich.table import Table

from detector_lab.bench.latency import GENERATOR_NICE, POLL_EVERY_S
from detector_lab.bench.parallel import TRIALS
from detector_lab.bench.stats import ratio, spread
from detector_lab.bench.topic import PACE_TICK_S, PACED_LINGER_MS

if TYPE_CHECKING:
    from detector_lab.bench.events import BenchEvents
    from detector_lab.bench.offline import OfflineRun
    from detector_lab.bench.parallel import ParallelRun
    from detector_lab.bench.run import BenchOptions
    from detector_lab.bench.throughput import DetectorRun
    from detector_lab.bench.topic import CeilingRun

SCHEMA = "detector_lab.bench.v1"
LATENCY_SCHEMA = "detector_lab.bench.latency.v1"  # ``detector bench --latency-rate``: latency alone
TOP_COMMANDS = 12
NOT_DETECTOR_COMMANDS = frozenset({"info"})  # the bench's own probes

METHOD = {
    "ceiling": "kafka-python consumer, no group (assigned partitions), same max_poll_records as "
    "the worker, orjson.loads of every value, nothing else; events after the first batch over "
    "the time from the first batch to the last; measured once just before each detector run, so "
    "both see the machine at the same moments",
    "detector": "separate `detector run` processes in one consumer group; events committed "
    "between the first sample where every worker has processed a batch (group joined) and the "
    "first sample where the group's committed offsets reach every partition's end; sampled every "
    "0.1 s (committed offsets by OffsetFetch without joining, RSS of each worker; /metrics only "
    "until every worker consumed and at the end, as scrapes cost the worker CPU)",
    "latency": f"paced producer (waking every {PACE_TICK_S * 1000:g} ms to send the events then "
    f"due, linger {PACED_LINGER_MS} ms) at a share (default half) of the median maximum of that "
    "deployment, or at the rate --latency-rate names; per event from its production "
    "(handed to the producer) to the commit time "
    f"= first OffsetFetch read (every {POLL_EVERY_S * 1000:g} ms) showing the event's offset "
    "committed: an upper bound by at most resolution_ms. Producer and reader run on the same "
    "machine as the workers; their CPU is reported, and the producer's thread runs at nice "
    f"{GENERATOR_NICE} (on Linux), standing for a fleet with CPUs of its own. How late it "
    "sent events (production minus the time each was due) is reported apart: the generator "
    "lag, which a fleet with its own CPUs would not have. When the machine has more CPUs than "
    "the run has workers, each worker runs on a CPU of its own and the bench and the servers "
    "it started (the embedded broker and Redis) on the others, as a deployment gives each "
    "worker its CPU (--latency-shared-cpus leaves the scheduler to place them)",
    "redis": "INFO commandstats deltas over the run (commands inside Lua scripts included; "
    "assumes no other client on that Redis), round trips from the workers' "
    "detector_redis_roundtrip_seconds counts per op",
    "memory": "MEMORY USAGE key SAMPLES 0 after the whole topic was applied by one worker: a "
    "random sample of accounts (every key of an account, grouped by its hash tag), and every "
    "campaign key; an "
    "index entry is one member of an evidence index (ix/ax sorted sets)",
    "machine scaling": "a CPU-bound pure-Python loop (integer arithmetic, a small dict; "
    "loop_s is its time alone) in as many spawned processes as the scaled run has workers: one "
    "loop alone, one in every process at once (started together at a barrier), one alone "
    f"again, {TRIALS} times just before the throughput runs; the speedup is the loops' work per "
    "second at once over one alone (the mean of the two), bounded by the slowest. Shared or "
    "hyper-threaded cores give less than the number of processes. The detector's speedup is "
    "also given as a share of this one; single trials vary widely, so read it roughly",
    "naive": "detector.app.replay with one event per batch (every event pays the pipeline's "
    "Redis round trips and alert flush on its own) over the first events; compared with the "
    "batched replay of the same events",
}


def _ceiling(run: CeilingRun) -> dict[str, Any]:
    return {**asdict(run), "events_per_s": round(run.events_per_s, 1)}


def _offline(run: OfflineRun) -> dict[str, Any]:
    return {
        **asdict(run),
        "events_per_s": round(run.events_per_s, 1),
        "roundtrips_per_event": round(ratio(sum(run.roundtrips.values()), run.events), 3),
    }


def redis_cost(run: DetectorRun) -> dict[str, Any]:
    """Redis work per event and per batch of one detector run."""
    events = sum(run.consumed_per_worker) or run.events
    commands = {k: v for k, v in run.redis_commands.items() if k not in NOT_DETECTOR_COMMANDS}
    roundtrips = sum(run.roundtrips.values())
    top = sorted(commands.items(), key=lambda kv: -kv[1])[:TOP_COMMANDS]
    return {
        "events": events,
        "batches": run.batches,
        "events_per_batch": round(ratio(events, run.batches), 1),
        "commands_per_event": round(ratio(sum(commands.values()), events), 2),
        "scripts_per_event": round(
            ratio(commands.get("evalsha", 0) + commands.get("eval", 0), events), 3
        ),
        "roundtrips_per_event": round(ratio(roundtrips, events), 4),
        "roundtrips_per_batch": round(ratio(roundtrips, run.batches), 2),
        "roundtrips_per_batch_by_op": {
            op: round(ratio(n, run.batches), 2) for op, n in sorted(run.roundtrips.items())
        },
        "redis_share_of_batch_time": {
            op: round(ratio(s, run.batch_seconds), 3) for op, s in sorted(run.redis_seconds.items())
        },
        "top_commands_per_event": {k: round(v / events, 3) for k, v in top},
    }


def _machine_scaling(run: ParallelRun | None) -> dict[str, Any] | None:
    if run is None or not run.speedups:
        return None
    return {
        "processes": run.processes,
        "iterations": run.iterations,
        "loop_s": run.loop_s,
        "speedup": spread(run.speedups),
        "trials": run.speedups,
    }


def _detector(
    runs: list[DetectorRun], ceiling: float, one_worker: float, machine: float | None
) -> dict[str, Any]:
    rate = spread([r.events_per_s for r in runs])
    speedup = ratio(rate["median"], one_worker)
    return {
        "workers": runs[0].workers,
        "events_per_s": rate,
        "share_of_ceiling": round(ratio(rate["median"], ceiling), 3),
        "speedup_vs_1_worker": round(speedup, 2),
        # The detector's speedup against what the machine gives N plain loops.
        "share_of_machine_speedup": round(ratio(speedup, machine), 3) if machine else None,
        # The run ends when the busiest worker does: its share of the topic (1/N is even).
        "busiest_worker_share": round(
            max(ratio(max(r.consumed_per_worker), sum(r.consumed_per_worker)) for r in runs), 3
        ),
        "runs": [
            {**asdict(r), "events_per_s": round(r.events_per_s, 1), "redis": redis_cost(r)}
            for r in runs
        ],
    }


def _heading(
    schema: str,
    started: str,
    options: BenchOptions,
    machine: dict[str, Any],
    load: dict[str, list[float]],
    events: BenchEvents,
) -> dict[str, Any]:
    """What a result document says of its run: when, how, on what machine, with which events."""
    return {
        "schema": schema,
        "started_at": started,
        "command": options.command,
        "options": {k: str(v) if k == "work_dir" else v for k, v in asdict(options).items()},
        "machine": machine,
        "load_average": load,
        "events": events.describe(),
    }


def build(
    *,
    started: str,
    options: BenchOptions,
    machine: dict[str, Any],
    load: dict[str, list[float]],
    events: BenchEvents,
    ceiling: list[CeilingRun],
    detector: dict[int, list[DetectorRun]],
    latency: dict[str, Any],
    memory: dict[str, Any],
    replays: list[OfflineRun],
    naive: dict[str, OfflineRun],
    parallel: ParallelRun | None = None,
) -> dict[str, Any]:
    ceiling_rate = spread([r.events_per_s for r in ceiling])
    one = spread([r.events_per_s for r in detector[1]])["median"]
    scaling = _machine_scaling(parallel)
    machine_speedup = scaling["speedup"]["median"] if scaling else None
    first = detector[1][0]
    slow, batched = naive["one_event_per_batch"], naive["batched_same_events"]
    return {
        **_heading(SCHEMA, started, options, machine, load, events),
        "ceiling": {"events_per_s": ceiling_rate, "runs": [_ceiling(r) for r in ceiling]},
        "detector": [
            _detector(runs, ceiling_rate["median"], one, machine_speedup if n > 1 else None)
            for n, runs in sorted(detector.items())
        ],
        "machine_scaling": scaling,
        "latency": latency,
        "redis": redis_cost(first),
        "memory": memory,
        "worker_rss_mib": {
            "workers": first.workers,
            "at_each_tenth": first.rss_mib,
            "growth_from_first_tenth": round(
                ratio(first.rss_mib[0][-1], first.rss_mib[0][0]) if first.rss_mib else 0.0, 3
            ),
        },
        "replay": {
            "events_per_s": spread([r.events_per_s for r in replays]),
            "runs": [_offline(r) for r in replays],
        },
        "naive": {
            "one_event_per_batch": _offline(slow),
            "batched_same_events": _offline(batched),
            "batching_speedup": round(ratio(batched.events_per_s, slow.events_per_s), 2),
        },
        "method": {k: v for k, v in METHOD.items() if scaling or k != "machine scaling"},
    }


def build_latency(
    *,
    started: str,
    options: BenchOptions,
    machine: dict[str, Any],
    load: dict[str, list[float]],
    events: BenchEvents,
    latency: dict[str, Any],
) -> dict[str, Any]:
    """The document of a latency run alone, at ``options.latency_rate``."""
    return {
        **_heading(LATENCY_SCHEMA, started, options, machine, load, events),
        "latency": latency,
        "method": {"latency": METHOD["latency"]},
    }


def to_json(result: dict[str, Any]) -> bytes:
    return orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)


def _rate(s: dict[str, float]) -> str:
    if s["n"] > 1:
        return f"{s['median']:,.0f} ({s['min']:,.0f}–{s['max']:,.0f}, n={s['n']})"
    return f"{s['median']:,.0f}"


def throughput_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, events/s with spread, share of the ceiling) per measured configuration."""
    ceiling = result["ceiling"]["events_per_s"]["median"]
    rows = [
        (
            "kafka-python ceiling (consume + orjson, 1 process)",
            _rate(result["ceiling"]["events_per_s"]),
            "100%",
        )
    ]
    for d in result["detector"]:
        label = f"detector, {d['workers']} worker{'s' if d['workers'] > 1 else ''} (end to end)"
        rows.append((label, _rate(d["events_per_s"]), f"{d['share_of_ceiling']:.0%}"))
    replay = result["replay"]["events_per_s"]
    rows.append(
        (
            "`detector replay` (file, no Kafka)",
            _rate(replay),
            f"{ratio(replay['median'], ceiling):.0%}",
        )
    )
    naive = result["naive"]
    slow, batched = naive["one_event_per_batch"], naive["batched_same_events"]
    rows.append(
        (
            f"naive: replay, one event per batch ({slow['events']:,} events)",
            f"{slow['events_per_s']:,.0f}",
            f"{ratio(slow['events_per_s'], ceiling):.0%}",
        )
    )
    rows.append(
        (
            f"batched replay of the same {batched['events']:,} events",
            f"{batched['events_per_s']:,.0f}",
            f"{ratio(batched['events_per_s'], ceiling):.0%}",
        )
    )
    return rows


def _about(result: dict[str, Any], regenerate: str) -> list[str]:
    """Where the figures come from: the command, the machine and the events."""
    m, e = result["machine"], result["events"]
    return [
        f"Generated by `{result['command']}` on {result['started_at']}; regenerate with "
        f"{regenerate}. Figures on a shared machine are noisy: read the spread.",
        "",
        f"**Machine:** {m['cpu']}, {m['cores']} cores ({m['physical_cores']} physical), "
        f"{m['ram_gib']} GiB RAM, {m['os']}; {m['python']}; Redis {m['redis']}; broker {m['broker']}; "
        f"kafka-python {m['kafka_python']}, redis-py {m['redis_py']}, river {m['river']}; "
        f"detector {m.get('build', 'interpreted')}. "
        f"Load average (1, 5, 15 min) {result['load_average']['before']} before, "
        f"{result['load_average']['after']} after.",
        "",
        f"**Events:** {e['count']:,} from scenario `{e['scenario']}` (seed {e['seed']}, scale "
        f"{e['scale']}), {e['accounts']:,} accounts, {e['span_h']} h of event time, "
        f"{e['mean_bytes']:.0f} bytes each on average; {result['options']['partitions']} partitions; "
        "all detectors on.",
    ]


def _latency_section(lat: dict[str, Any]) -> list[str]:
    maximum = lat["max_events_per_s"]
    offered = (
        f"({ratio(lat['offered_per_s'], maximum):.0%} of the measured {maximum:,.0f})"
        if maximum
        else "(a fixed rate)"
    )
    return [
        "## End-to-end latency",
        "",
        f"{lat['workers']} worker(s), offered {lat['offered_per_s']:,.0f} events/s {offered}, "
        f"achieved {lat['achieved_per_s']:,.0f}; {lat['events']:,} "
        f"events timed after a warm-up of {lat['warmup_events']}; CPUs: "
        f"{lat['cpu_placement']}; mean batch "
        f"{lat['mean_batch_events']:.1f} events; workers busy {lat['busy_share']:.0%} of the "
        f"time; the bench's own producer and offset reader used {lat['bench_cpu_share']:.2f} "
        f"of a core. The generator sent events {lat['generator_lag_p50_ms']:.0f} ms after they "
        f"were due at p50, {lat['generator_lag_p99_ms']:.0f} ms at p99 and "
        f"{lat['generator_lag_max_ms']:.0f} ms at most (not in the figures below).",
        "",
        "| p50 | p90 | p99 | max | mean | resolution |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {lat['p50_ms']:.0f} ms | {lat['p90_ms']:.0f} ms | {lat['p99_ms']:.0f} ms | "
        f"{lat['max_ms']:.0f} ms | {lat['mean_ms']:.0f} ms | {lat['resolution_ms']:.1f} ms |",
    ]


def _method(result: dict[str, Any]) -> list[str]:
    return [
        "## How it is measured",
        "",
        *[f"- **{k}**: {v}." for k, v in result["method"].items()],
        "",
    ]


def latency_markdown(result: dict[str, Any]) -> str:
    """The page of a latency run alone (``detector bench --latency-rate``)."""
    lines = [
        "# Latency at a fixed rate",
        "",
        *_about(result, "the same command"),
        "",
        *_latency_section(result["latency"]),
        "",
        *_method(result),
    ]
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    r, mem = result["redis"], result["memory"]
    rss = result["worker_rss_mib"]
    naive = result["naive"]
    lines = [
        "# Benchmarks",
        "",
        *_about(result, "`make bench`"),
        "",
        "## Throughput",
        "",
        "| what | events/s (median, min–max) | of the ceiling |",
        "|---|---:|---:|",
        *[f"| {a} | {b} | {c} |" for a, b, c in throughput_rows(result)],
        "",
        f"Batching buys {naive['batching_speedup']}x over one event per batch "
        f"({naive['one_event_per_batch']['roundtrips_per_event']} Redis round trips per event "
        f"instead of {naive['batched_same_events']['roundtrips_per_event']}).",
    ]
    scaling = scaling_line(result)
    if scaling:
        lines += ["", scaling]
    lines += [
        "",
        *_latency_section(result["latency"]),
        "",
        "## Redis",
        "",
        "| per event | per batch |",
        "|---|---|",
        f"| {r['commands_per_event']} commands ({r['scripts_per_event']} script calls), "
        f"{r['roundtrips_per_event']} round trips | {r['roundtrips_per_batch']} round trips "
        f"({', '.join(f'{k} {v}' for k, v in r['roundtrips_per_batch_by_op'].items())}), "
        f"{r['events_per_batch']} events |",
        "",
        "Share of batch time spent waiting on each round trip: "
        + ", ".join(f"{k} {v:.0%}" for k, v in r["redis_share_of_batch_time"].items())
        + ". Commands per event: "
        + ", ".join(f"{k} {v}" for k, v in r["top_commands_per_event"].items())
        + ".",
        "",
        "| memory | median | p90 | max |",
        "|---|---:|---:|---:|",
        *[
            f"| {label} | {s['median']:,} B | {s['p90']:,} B | {s['max']:,} B |"
            for label, s in (
                ("per account, all its keys", mem["bytes_per_account"]),
                *(
                    (f"per account, key `acct:{{id}}{'' if k == 'value' else k}`", v)
                    for k, v in mem["bytes_per_account_by_key"].items()
                    if len(mem["bytes_per_account_by_key"]) > 1
                ),
            )
        ],
        "",
        f"{mem['accounts']:,} accounts with state ({mem['accounts_sampled']} sampled). Cross-account "
        f"indices: {mem['index_entries']:,} entries in {mem['index_bytes']:,} B, "
        f"**{mem['bytes_per_index_entry']} B per entry**; all campaign state "
        f"{mem['campaign_bytes']:,} B; model checkpoint {mem['model_checkpoint_bytes']:,} B.",
        "",
        "## Worker memory",
        "",
        f"RSS of the single worker at each tenth of the run (MiB): "
        f"{', '.join(f'{v:.0f}' for v in rss['at_each_tenth'][0]) if rss['at_each_tenth'] else 'n/a'} "
        f"(end / first tenth = {rss['growth_from_first_tenth']}).",
        "",
        *_method(result),
    ]
    return "\n".join(lines)


def scaling_line(result: dict[str, Any]) -> str:
    """The detector's 1 -> N speedup beside the machine's own, if it was measured."""
    machine = result.get("machine_scaling")
    scaled = [d for d in result["detector"] if d["workers"] > 1]
    if not machine or not scaled:
        return ""
    d, m = scaled[-1], machine["speedup"]
    return (
        f"1 -> {d['workers']} workers: {d['speedup_vs_1_worker']:.2f}x. This machine runs "
        f"{machine['processes']} CPU-bound Python processes at {m['median']:.2f}x the work of one "
        f"(median of {m['n']} trials, {m['min']:.2f}–{m['max']:.2f}x): the workers scale "
        f"{d['share_of_machine_speedup']:.0%} as well as plain loops do here." + _split(d)
    )


def _split(d: dict[str, Any]) -> str:
    """How evenly the topic's partitions split the events between the workers (the key of an
    event is its account, so a few busy accounts can load one worker more)."""
    share = d.get("busiest_worker_share")
    if not share:  # documents written before it was recorded
        return ""
    return (
        f" The partitions gave the busiest worker {share:.1%} of the events ({1 / d['workers']:.0%} "
        "is an even split); the run ends when that worker does."
    )


def console_table(result: dict[str, Any]) -> Table:
    table = Table(title="detector bench", show_lines=False)
    table.add_column("what")
    table.add_column("events/s", justify="right")
    table.add_column("of ceiling", justify="right")
    for row in throughput_rows(result):
        table.add_row(*row)
    return table

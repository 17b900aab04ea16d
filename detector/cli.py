"""Command line: the composition root. Parses arguments, loads settings, calls one function."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from detector import __version__
from detector.config import Settings, load_settings
from detector.errors import DetectorError

log = logging.getLogger("detector")
# What the lab extra brings (detector_lab: simulate, eval, bench), for a one-line error.
LAB_MODULES = frozenset({"matplotlib", "psutil"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # kafka-python narrates every connection at INFO; keep its warnings only.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        return int(args.func(args) or 0)
    except DetectorError as exc:
        # An expected failure: one line that names what to change, no traceback. The text is
        # not markup ("[::1]:9092" would vanish) and not wrapped (scripts grep for one line).
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]error:[/] {escape(' '.join(str(exc).split()))}", highlight=False
        )
        return 2
    except ModuleNotFoundError as exc:
        if exc.name not in LAB_MODULES:
            raise
        install = "pip install 'llm-distill-detector[lab]'"
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]error:[/] `detector {args.command}` needs the lab extra ({exc.name} is "
            f"not installed): {escape(install)}",
            highlight=False,
        )
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the command's own handler was in place
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detector", description=__doc__)
    parser.add_argument("--version", action="version", version=f"detector {__version__}")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="consume query events from Kafka and publish alerts")
    _config_arg(run)
    run.set_defaults(func=_run)

    replay = sub.add_parser("replay", help="the same pipeline over a JSONL file of events")
    replay.add_argument("--input", required=True, type=Path, help="JSONL file of query events")
    replay.add_argument("--output", required=True, type=Path, help="JSONL file to write alerts to")
    replay.add_argument(
        "--dead-letters", type=Path, help="JSONL file for refused lines (default: next to --output)"
    )
    replay.add_argument("--redis-url", help="use this Redis instead of an embedded one")
    _config_arg(replay)
    replay.set_defaults(func=_replay)

    demo = sub.add_parser("demo", help="embedded broker + Redis, synthetic traffic, live alerts")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60)")
    _config_arg(demo)
    demo.set_defaults(func=_demo)

    config = sub.add_parser(
        "config", help="print the effective settings (file, overlay, environment), secrets hidden"
    )
    _config_arg(config)
    config.set_defaults(func=_show_config)

    validate = sub.add_parser("validate", help="check a JSONL file of events against the contract")
    validate.add_argument("file", type=Path)
    validate.set_defaults(func=_validate)

    simulate = sub.add_parser(
        "simulate", help="write labelled synthetic traffic from a scenario or a suite's draw"
    )
    _scenario_args(simulate)
    simulate.add_argument("--suite", help="suite name in config/suites/ or a YAML path")
    simulate.add_argument(
        "--draw", type=int, help="with --suite: which draw (0, 1, ...; deterministic)"
    )
    simulate.add_argument(
        "--out", required=True, type=Path, help="directory for events.jsonl and labels.json"
    )
    simulate.set_defaults(func=_simulate)

    evaluate = sub.add_parser(
        "eval", help="simulate (if needed), replay and score detection quality"
    )
    evaluate.add_argument("--scenario", help="scenario name in config/scenarios/ or a YAML path")
    evaluate.add_argument(
        "--suite", help="suite name in config/suites/ or a YAML path: the matrix over --draws"
    )
    evaluate.add_argument(
        "--draws", type=int, help="with --suite: how many draws (default: the suite's own)"
    )
    evaluate.add_argument(
        "--first", type=int, default=0, help="with --suite: index of the first draw (default 0)"
    )
    evaluate.add_argument(
        "--events", type=Path, help="existing events.jsonl (with --labels) instead of --scenario"
    )
    evaluate.add_argument("--labels", type=Path, help="labels.json written by `detector simulate`")
    evaluate.add_argument("--seed", type=int, help="override the scenario's seed")
    evaluate.add_argument(
        "--scale", type=float, default=1.0, help="multiply every group's account count"
    )
    evaluate.add_argument(
        "--out", type=Path, default=Path("out/eval"), help="report directory (default out/eval)"
    )
    _config_arg(evaluate)
    evaluate.add_argument(
        "--data", type=Path, help="directory for events, labels and alerts (default: --out)"
    )
    evaluate.set_defaults(func=_eval)

    tap = sub.add_parser(
        "tap", help="sidecar: accept query events over local HTTP, produce to Kafka"
    )
    _config_arg(tap)
    tap.set_defaults(func=_tap)

    pager = sub.add_parser("pager", help="page critical campaign alerts through Alertmanager")
    _config_arg(pager)
    pager.set_defaults(func=_pager)
    _bench_parser(sub)
    return parser


def _bench_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cores = os.cpu_count() or 1
    bench = sub.add_parser(
        "bench",
        help="throughput, latency and Redis cost of the detector beside the Kafka ceiling",
        description="Embedded broker and Redis unless the settings name others "
        "(KAFKA_BOOTSTRAP_SERVERS, REDIS_URL or --config).",
    )
    bench.add_argument("--events", type=int, default=100_000, help="events (default 100000)")
    bench.add_argument(
        "--workers", type=int, default=cores, help=f"workers of the scaled run (default {cores})"
    )
    bench.add_argument(
        "--partitions", type=int, help="partitions of the input topic (default max(4, workers))"
    )
    bench.add_argument("--scenario", default="default", help="scenario name or YAML path")
    bench.add_argument("--seed", type=int, help="override the scenario's seed")
    bench.add_argument("--repeat", type=int, default=1, help="runs of each throughput figure")
    bench.add_argument(
        "--latency-seconds", type=float, default=15.0, help="paced load duration (default 15)"
    )
    bench.add_argument(
        "--latency-workers", type=int, default=1, help="workers under paced load: 1 or --workers"
    )
    bench.add_argument(
        "--latency-load",
        type=float,
        default=0.5,
        help="offered load of the latency run, as a share of the measured maximum (default 0.5)",
    )
    bench.add_argument(
        "--latency-rate",
        type=float,
        help="only the latency run, at this many events/s (for sizing at a known load; "
        "--events must hold the rate for --latency-seconds)",
    )
    bench.add_argument(
        "--latency-shared-cpus",
        action="store_true",
        help="leave the latency run's workers on any CPU, beside the bench, broker and Redis "
        "(default: each worker on a CPU of its own, when there are more CPUs than workers)",
    )
    bench.add_argument(
        "--naive-events", type=int, default=10_000, help="events of the naive baseline"
    )
    bench.add_argument(
        "--account-sample", type=int, default=500, help="accounts sampled for MEMORY USAGE"
    )
    bench.add_argument(
        "--work-dir", type=Path, default=Path("out/bench"), help="events cache and worker logs"
    )
    bench.add_argument("--json", type=Path, help="write the result document here")
    bench.add_argument("--markdown", type=Path, help="write the Markdown page here")
    _config_arg(bench)
    bench.set_defaults(func=_bench)


def _progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML overlay on config/default.yaml")


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s: finishing the current batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _run(args: argparse.Namespace) -> int:
    from detector.app import run_service

    run_service(load_settings(args.config), _stop_on_signals())
    return 0


def _replay(args: argparse.Namespace) -> int:
    from detector.app import replay

    settings = load_settings(args.config)
    console = Console(stderr=True)
    with _progress_bar(console) as bar:
        task = bar.add_task("replay", total=None)
        report = replay(
            settings,
            args.input,
            args.output,
            args.dead_letters,
            args.redis_url,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    console.print(
        f"{report.events} events ({report.invalid} invalid, {report.duplicates} duplicates) -> "
        f"{report.alerts} alerts in {args.output}; {report.seconds:.1f} s, "
        f"{report.events_per_s:,.0f} events/s"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from detector.programs.demo import run_demo

    run_demo(load_settings(args.config), args.duration, Console(), _stop_on_signals())
    return 0


def _show_config(args: argparse.Namespace) -> int:
    import yaml

    from detector.config import printable

    print(yaml.safe_dump(printable(load_settings(args.config)), sort_keys=False), end="")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from detector.decode import decode_record
    from detector.events import DeadLetter, RawRecord
    from detector.io.files import read_lines

    console = Console(soft_wrap=True)  # one line per bad event, whatever the terminal width
    lines = read_lines(args.file)
    bad = 0
    for number, line in lines:
        result = decode_record(RawRecord(str(args.file), 0, number, None, line, line=number))
        if isinstance(result, DeadLetter):
            bad += 1
            console.print(
                f"{args.file}:{number}: [red]{result.reason}[/]: {result.detail}", highlight=False
            )
    console.print(f"{len(lines)} events checked, {bad} invalid")
    return 1 if bad else 0


def _scenario_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", help="scenario name in config/scenarios/ or a YAML path")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every group's account count")


def _simulate(args: argparse.Namespace) -> int:
    from detector.errors import ConfigError
    from detector_lab.evaluation.run import prepare_scenario, write_simulation

    if bool(args.scenario) == bool(args.suite):
        raise ConfigError("give either --scenario, or --suite with --draw")
    if args.suite and (args.draw is None or args.seed is not None):
        raise ConfigError("--suite needs --draw K (a draw fixes its own seed: no --seed)")
    if args.draw is not None and not args.suite:
        raise ConfigError("--draw needs --suite")
    extra = None
    if args.suite:
        from detector_lab.evaluation.suite import draw_meta, open_suite, suite_scenario

        suite = open_suite(args.suite)
        scenario = suite_scenario(suite, args.draw, args.scale)
        extra = draw_meta(suite, args.draw, args.scale)
    else:
        scenario = prepare_scenario(args.scenario, args.seed, args.scale)
    console = Console(stderr=True)
    with console.status("simulating") as status:
        meta = write_simulation(
            scenario, args.out, args.scale, lambda g: status.update(f"simulating {g}"), extra
        )
    source = f"suite {args.suite} draw {args.draw}, " if args.suite else ""
    console.print(
        f"{source}scenario {meta['scenario']} (seed {meta['seed']}): {meta['events']:,} events, "
        f"{meta['accounts']:,} accounts -> {args.out}/events.jsonl, {args.out}/labels.json"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from detector.errors import ConfigError

    sources = [bool(args.scenario), bool(args.suite), bool(args.events or args.labels)]
    if sum(sources) != 1 or bool(args.events) != bool(args.labels):
        raise ConfigError("give one of --scenario, --suite, or both --events and --labels")
    if not args.suite and (args.draws is not None or args.first != 0):
        raise ConfigError("--draws and --first need --suite")
    if args.suite and args.seed is not None:
        raise ConfigError("--seed does not apply to --suite: each draw has its own; use --first")
    settings = load_settings(args.config)
    if args.suite:
        return _eval_suite(args, settings)
    from detector_lab.evaluation.run import prepare_scenario, run_evaluation

    scenario = prepare_scenario(args.scenario, args.seed, args.scale) if args.scenario else None
    console = Console(stderr=True)
    with _progress_bar(console) as bar:
        task = bar.add_task("start", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        result = run_evaluation(
            settings,
            args.out,
            scenario,
            args.data,
            args.events,
            args.labels,
            args.scale,
            progress=progress,
        )
    e = result.evaluation
    console.print(
        f"precision {e.precision:.3f}  recall {e.recall:.3f}  F1 {e.f1:.3f}  "
        f"benign FPR {e.benign_fpr:.4f}  ({result.meta['alerts']} alerts)"
    )
    console.print(
        f"report: {args.out}/report.md, {args.out}/report.json and PNG plots in {args.out}/"
    )
    return 0


def _eval_suite(args: argparse.Namespace, settings: Settings) -> int:
    from detector_lab.evaluation.matrix_report import cell
    from detector_lab.evaluation.suite import check_draws, open_suite, run_suite

    suite = open_suite(args.suite)
    count = check_draws(suite, args.draws, args.first, args.scale)
    console = Console(stderr=True)
    with _progress_bar(console) as bar:
        draws = bar.add_task("draws", total=count)
        stage = bar.add_task("start", total=None)

        def progress(pos: int, total_draws: int, name: str, done: int, total: int) -> None:
            bar.update(draws, completed=pos - 1, description=f"draw {pos}/{total_draws}")
            bar.update(stage, description=name, completed=done, total=total)

        result = run_suite(
            settings,
            suite,
            count,
            args.out,
            args.data,
            first=args.first,
            scale=args.scale,
            progress=progress,
        )
        bar.update(draws, completed=count)
    m = result.matrix
    console.print(
        f"suite {result.meta['suite']}, {count} draw{'s' if count != 1 else ''}, "
        "median [worst #draw]: "
        f"recall {cell(m.recall, lambda x: f'{x:.3f}')}  "
        f"benign FPR {cell(m.benign_fpr, lambda x: f'{x:.4f}')}; {result.meta['seconds']:.0f} s",
        highlight=False,
        markup=False,  # the brackets are text
    )
    console.print(
        f"report: {args.out}/report.md, {args.out}/report.json and heatmaps in {args.out}/"
    )
    return 0


def _tap(args: argparse.Namespace) -> int:
    from detector.programs.tap import run_tap

    run_tap(load_settings(args.config), _stop_on_signals())
    return 0


def _pager(args: argparse.Namespace) -> int:
    from detector.programs.pager import run_pager

    run_pager(load_settings(args.config), _stop_on_signals())
    return 0


def _bench(args: argparse.Namespace) -> int:
    from detector_lab.bench.report import (
        LATENCY_SCHEMA,
        console_table,
        latency_markdown,
        markdown,
        scaling_line,
        to_json,
    )
    from detector_lab.bench.run import BenchOptions, run_bench, uses_external

    # The bench saturates the machine on purpose: kafka-python's slow-I/O-task warnings are noise.
    logging.getLogger("kafka").setLevel(max(logging.ERROR, logging.getLogger().level))
    settings = load_settings(args.config)
    external_kafka, external_redis = uses_external(settings)
    options = BenchOptions(
        events=args.events,
        workers=args.workers,
        partitions=args.partitions or max(4, args.workers),
        scenario=args.scenario,
        seed=args.seed,
        repeat=args.repeat,
        latency_seconds=args.latency_seconds,
        latency_workers=args.latency_workers,
        latency_load=args.latency_load,
        latency_rate=args.latency_rate,
        latency_own_cpus=not args.latency_shared_cpus,
        naive_events=args.naive_events,
        account_sample=args.account_sample,
        work_dir=args.work_dir,
        embedded_kafka=not external_kafka,
        embedded_redis=not external_redis,
    )
    console = Console(stderr=True)
    with _progress_bar(console) as bar:
        task = bar.add_task("start", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total or None)

        result = run_bench(settings, options, progress)
    lat = result["latency"]
    summary = (
        f"latency at {lat['offered_per_s']:,.0f} events/s: p50 {lat['p50_ms']:.0f} ms, "
        f"p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms"
    )
    alone = result["schema"] == LATENCY_SCHEMA
    if alone:
        console.print(
            f"{summary}; {lat['workers']} worker(s) busy {lat['busy_share']:.0%}, mean batch "
            f"{lat['mean_batch_events']:.0f} events"
        )
    else:
        console.print(console_table(result))
        scaling = scaling_line(result)
        if scaling:
            console.print(scaling)
        console.print(
            f"{summary}; Redis {result['redis']['roundtrips_per_batch']} round trips per batch, "
            f"{result['redis']['commands_per_event']} commands per event; "
            f"{result['memory']['bytes_per_account']['median']:,} B per account (median)"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(to_json(result))
        console.print(f"JSON: {args.json}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        page = latency_markdown(result) if alone else markdown(result)
        args.markdown.write_text(page, encoding="utf-8")
        console.print(f"Markdown: {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

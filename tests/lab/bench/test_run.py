from __future__ import annotations

import pytest

from detector.config import Settings
from detector.errors import ConfigError
from detector_lab.bench.run import BenchOptions, uses_external


def test_defaults_are_sound() -> None:
    BenchOptions().check()


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        (BenchOptions(events=10), "--events"),
        (BenchOptions(workers=4, partitions=2), "--partitions"),
        (BenchOptions(latency_workers=3), "--latency-workers"),
        (BenchOptions(naive_events=5), "--naive-events"),
        (BenchOptions(latency_load=1.5), "--latency-load"),
        (BenchOptions(latency_rate=0), "--latency-rate"),
        (BenchOptions(latency_rate=100, latency_load=0.3), "--latency-load"),
        (BenchOptions(events=1000, latency_rate=100, latency_seconds=10), "--events"),
    ],
)
def test_bad_options_name_their_flag(options: BenchOptions, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        options.check()


def test_external_services_come_from_the_settings() -> None:
    assert uses_external(Settings()) == (False, False)
    given = Settings().with_overrides(kafka={"bootstrap_servers": "kafka:9092"})
    assert uses_external(given) == (True, False)


def test_a_latency_rate_is_part_of_the_command() -> None:
    options = BenchOptions(events=5000, latency_rate=250)
    options.check()
    assert options.command.endswith("--naive-events 10000") and "--latency-rate 250 " in (
        options.command + " "
    )

"""The command line: exit codes and messages a user sees (no services needed)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

import detector.cli
from detector.cli import main
from tests.integration.helpers import run_detector


def test_validate_reports_each_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = {"event_id": "e1", "ts": 1.0, "account_id": "a", "model": "m"}
    f = tmp_path / "events.jsonl"
    f.write_bytes(orjson.dumps(good) + b"\n{oops\n" + orjson.dumps({**good, "ts": -1}) + b"\n")
    assert main(["validate", str(f)]) == 1
    out = capsys.readouterr().out
    assert f"{f}:2: invalid_json" in out
    assert f"{f}:3: out_of_range" in out and "field ts" in out
    assert "3 events checked, 2 invalid" in out


def test_validate_clean_file_exits_zero(tmp_path: Path) -> None:
    assert main(["simulate", "--scenario", "ci", "--scale", "0.1", "--out", str(tmp_path)]) == 0
    assert main(["validate", str(tmp_path / "events.jsonl")]) == 0


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_wrong_setting_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("kafka:\n  poll_max_records: 0\n")
    code = main(["replay", "--config", str(cfg), "--input", "x", "--output", str(tmp_path / "o")])
    assert code == 2
    assert "kafka.poll_max_records" in capsys.readouterr().err


def test_config_prints_the_effective_settings_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "rediss://app:s3cretpw@redis.internal:6380/0")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "kafkas3cret")
    monkeypatch.setenv("DETECTOR__KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(
        "kafka:\n  sasl_username: detector\n"
        "pager:\n  alertmanager_urls: [http://pager:s3cretam@am.internal:9093]\n"
    )
    assert main(["config", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "rediss://app:***@redis.internal:6380/0" in out
    assert "http://pager:***@am.internal:9093" in out
    assert "security_protocol: SASL_SSL" in out and "sasl_username: detector" in out
    assert "s3cret" not in out


def test_a_malformed_redis_url_is_named_without_its_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:s3cretpw@redis.internal:notaport/0")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert "redis.url" in err and "s3cret" not in err


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


@pytest.mark.parametrize("command", ["run", "tap", "pager"])
def test_a_metrics_port_in_use_fails_the_command_in_one_line(command: str, taken_port: int) -> None:
    # regression: `detector run` ended in an OSError traceback that did not name metrics.port
    done = run_detector(command, env={"DETECTOR__METRICS__PORT": str(taken_port)})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: metrics.port {taken_port} on 127.0.0.1 is in use: set metrics.port (or "
        "DETECTOR__METRICS__PORT) to a free port, or 0 for any"
    ]


def test_a_bootstrap_server_with_a_scheme_is_refused_in_one_line() -> None:
    # regression: http://broker was read as broker:9092
    done = run_detector("run", env={"KAFKA_BOOTSTRAP_SERVERS": "http://broker"})
    assert done.returncode == 2
    [line] = done.stderr.splitlines()  # one line, however long: not wrapped at 80 columns
    assert line.startswith(
        "error: invalid setting: kafka.bootstrap_servers (KAFKA_BOOTSTRAP_SERVERS): "
    )
    assert "'http://broker' has a scheme (http://): expected host:port" in line


def test_error_text_is_printed_as_is(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # rich markup would swallow "[ipv6-address]" and "[::1]"; wrapping would split the line
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "[::1]")
    assert main(["config"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "'[::1]' is not [ipv6-address]:port" in line and "IPv6 as [::1]:9092" in line


def test_ctrl_c_before_the_command_handles_it_exits_quietly(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(detector.cli, "_show_config", interrupted)
    assert main(["config"]) == 130
    assert capsys.readouterr().err == ""


def test_a_lab_command_without_the_lab_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def without_psutil(args: object) -> int:
        raise ModuleNotFoundError("No module named 'psutil'", name="psutil")

    monkeypatch.setattr(detector.cli, "_bench", without_psutil)
    assert main(["bench"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: `detector bench` needs the lab extra (psutil is not installed): "
        "pip install 'llm-distill-detector[lab]'"
    )


def test_a_missing_module_of_the_product_is_not_blamed_on_the_lab(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def without_redis(args: object) -> int:
        raise ModuleNotFoundError("No module named 'redis'", name="redis")

    monkeypatch.setattr(detector.cli, "_bench", without_redis)
    with pytest.raises(ModuleNotFoundError):
        main(["bench"])

"""The command line: exit codes and messages a user sees (no services needed)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from detector.cli import main


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

"""Redis with AUTH: the right password in the URL works; a wrong one is a clear error that hides it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from detector.cli import main
from detector.embedded import EmbeddedRedis

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-pw-Zq9"


@pytest.fixture(scope="module")
def protected() -> EmbeddedRedis:
    with EmbeddedRedis(password=PASSWORD) as server:
        yield server


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(
        orjson.dumps({"event_id": f"e{i}", "ts": 1.0 + i, "account_id": "a", "model": "m"}) + b"\n" for i in range(5)
    ))  # fmt: skip
    return path


def test_the_password_in_the_url_is_used(
    protected: EmbeddedRedis, events_file: Path, tmp_path: Path
) -> None:
    assert main(["replay", "--input", str(events_file), "--output", str(tmp_path / "a.jsonl"),
                 "--redis-url", protected.url]) == 0  # fmt: skip


def test_a_wrong_password_is_named_as_the_problem_and_never_printed(
    protected: EmbeddedRedis, events_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = protected.url.replace(PASSWORD, "not-the-password-Xy7")
    code = main(
        [
            "replay",
            "--input",
            str(events_file),
            "--output",
            str(tmp_path / "a.jsonl"),
            "--redis-url",
            wrong,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "refused the credentials" in err and "redis.url" in err
    assert "not-the-password-Xy7" not in err and PASSWORD not in err

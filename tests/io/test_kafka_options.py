"""Kafka connection options (TLS and SASL from settings, the password from the environment or a
file) and what kafka-python may log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from detector.config import KafkaSettings, Settings
from detector.errors import ConfigError
from detector.io.kafka import configure_kafka_logs, connection_options


def test_plaintext_by_default() -> None:
    options = connection_options(KafkaSettings(bootstrap_servers="b:9092"), environ={})
    assert options == {
        "bootstrap_servers": "b:9092",
        "client_id": "detector",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_ssl_reads_the_password_from_the_environment() -> None:
    settings = KafkaSettings(
        security_protocol="SASL_SSL", sasl_username="det", ssl_cafile="/ca.pem"
    )
    options = connection_options(settings, environ={"KAFKA_SASL_PASSWORD": "s3cret"})
    assert options["sasl_plain_password"] == "s3cret" and options["sasl_plain_username"] == "det"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512" and options["ssl_cafile"] == "/ca.pem"
    assert "s3cret" not in repr(Settings().with_overrides(kafka=settings.model_dump()).model_dump())


def test_a_password_file_wins(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    settings = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_password_file=str(secret))
    assert (
        connection_options(settings, environ={"KAFKA_SASL_PASSWORD": "env"})["sasl_plain_password"]
        == "from-file"
    )


def test_missing_password_names_what_to_set() -> None:
    with pytest.raises(ConfigError, match="KAFKA_SASL_PASSWORD"):
        connection_options(KafkaSettings(security_protocol="SASL_SSL"), environ={})


def test_unknown_protocol_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.security_protocol"):
        Settings().with_overrides(kafka={"security_protocol": "TLS"})


def test_kafka_logs_drop_gil_waits_but_not_other_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    configure_kafka_logs()
    configure_kafka_logs()  # idempotent: one filter of each kind
    selector = logging.getLogger("kafka.net.selector")
    assert len(selector.filters) == 2  # GIL waits, close races
    with caplog.at_level(logging.WARNING, logger="kafka.net.selector"):
        selector.warning(
            "Task %r ran for %.3fs (>%.3fs threshold). It is blocking the event loop", 1, 0.2, 0.1
        )
        selector.warning("Wakeup socket returned empty. Rebuilding.")
    assert [r.getMessage() for r in caplog.records] == ["Wakeup socket returned empty. Rebuilding."]
    assert logging.getLogger("kafka").getEffectiveLevel() >= logging.INFO


class _Closed:
    """A transport after kafka-python's ``close``: its socket and protocol are None."""

    _sock = None
    _protocol = None

    def _sock_recv(self) -> None:
        self._sock.recv(4096)  # type: ignore[attr-defined]

    def _read_from_sock(self) -> None:
        self._protocol.data_received(b"")  # type: ignore[attr-defined]


def test_kafka_logs_drop_the_close_race_but_not_other_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    configure_kafka_logs()
    configure_kafka_logs()
    transport, selector = (logging.getLogger(f"kafka.net.{n}") for n in ("transport", "selector"))
    assert len(transport.filters) == 1 and len(selector.filters) == 2
    closed = _Closed()
    with caplog.at_level(logging.ERROR, logger="kafka"):
        for logger, read in ((transport, closed._sock_recv), (selector, closed._read_from_sock)):
            try:
                read()
            except AttributeError:
                logger.exception("the close race")
        try:
            raise ConnectionResetError("reset by peer")
        except OSError:
            transport.exception("Error receiving network data closing socket")
        try:
            None.upper()  # type: ignore[attr-defined]  # an AttributeError elsewhere
        except AttributeError:
            selector.exception("Unhandled exception in task")
        try:
            _OpenBroken()._read_from_sock()  # a fault in the protocol's own code
        except AttributeError:
            selector.exception("a fault deeper down")
    assert [r.getMessage() for r in caplog.records] == [
        "Error receiving network data closing socket",
        "Unhandled exception in task",
        "a fault deeper down",
    ]


class _Protocol:
    def data_received(self, data: bytes) -> None:
        None.recv(data)  # type: ignore[attr-defined]


class _OpenBroken:
    """A transport that is open; its protocol fails on an attribute of None by itself."""

    _protocol = _Protocol()

    def _read_from_sock(self) -> None:
        self._protocol.data_received(b"")

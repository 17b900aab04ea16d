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
    configure_kafka_logs()  # idempotent: one filter
    selector = logging.getLogger("kafka.net.selector")
    assert len(selector.filters) == 1
    with caplog.at_level(logging.WARNING, logger="kafka.net.selector"):
        selector.warning(
            "Task %r ran for %.3fs (>%.3fs threshold). It is blocking the event loop", 1, 0.2, 0.1
        )
        selector.warning("Wakeup socket returned empty. Rebuilding.")
    assert [r.getMessage() for r in caplog.records] == ["Wakeup socket returned empty. Rebuilding."]
    assert logging.getLogger("kafka").getEffectiveLevel() >= logging.INFO


def test_kafka_logs_drop_the_close_race_but_not_receive_errors_while_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    configure_kafka_logs()
    configure_kafka_logs()
    transport = logging.getLogger("kafka.net.transport")
    assert len(transport.filters) == 1
    message = "%s: Error receiving network data closing socket"
    with caplog.at_level(logging.ERROR, logger="kafka.net.transport"):
        try:
            None.recv(4096)  # type: ignore[attr-defined]
        except AttributeError:
            transport.exception(message, "<KafkaTCPTransport [none] (closed)>")
            transport.exception(message, "<KafkaTCPTransport [node 1] (connected)>")
    assert [r.getMessage() for r in caplog.records] == [
        "<KafkaTCPTransport [node 1] (connected)>: Error receiving network data closing socket"
    ]

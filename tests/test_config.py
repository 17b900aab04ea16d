"""Settings: the documented defaults file, validation messages, environment overrides."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from detector.config import (
    DEFAULT_CONFIG_PATH,
    Settings,
    build_settings,
    env_name,
    env_overrides,
    load_settings,
    parse_bootstrap_servers,
    redact_url,
)
from detector.errors import ConfigError

DEFAULT_YAML = Path(__file__).resolve().parent.parent / "config" / "default.yaml"
_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?P<rest>.*)$")
_COMMENT = re.compile(r"(^|\s)#")


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:  # an empty mapping is a leaf: `{}` on its line
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _leaf_lines() -> dict[str, str]:
    """Dotted name of every leaf key in default.yaml -> the text after its colon.

    A leaf has a scalar (or flow) value on its line, or a block list below it; a key
    with nothing but a comment after it and keys below it is a mapping.
    """
    lines = DEFAULT_YAML.read_text(encoding="utf-8").splitlines()
    leaves: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    for number, line in enumerate(lines):
        m = _KEY_LINE.match(line)
        if not m:
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        rest = m["rest"]
        value = _COMMENT.split(rest, maxsplit=1)[0].strip()
        following = next(
            (x.strip() for x in lines[number + 1 :] if x.strip() and not x.strip().startswith("#")),
            "",
        )
        name = ".".join([*(k for _, k in stack), m["key"]])
        if value or following.startswith("- "):
            leaves[name] = rest.strip()
        else:
            stack.append((indent, m["key"]))
    return leaves


LEAVES = _leaf_lines()


def test_default_path_is_the_repository_file() -> None:
    assert DEFAULT_CONFIG_PATH == DEFAULT_YAML
    assert DEFAULT_YAML.is_file()


def test_default_yaml_equals_code_defaults() -> None:
    data = yaml.safe_load(DEFAULT_YAML.read_text(encoding="utf-8"))
    assert build_settings(data) == Settings()
    assert load_settings(environ={}) == Settings()


def test_default_yaml_lists_every_setting() -> None:
    data = yaml.safe_load(DEFAULT_YAML.read_text(encoding="utf-8"))
    assert set(_flatten(data)) == set(_flatten(Settings().model_dump()))


def test_leaf_parser_finds_every_leaf() -> None:
    data = yaml.safe_load(DEFAULT_YAML.read_text(encoding="utf-8"))
    assert set(LEAVES) == set(_flatten(data))


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_every_leaf_has_a_trailing_comment(name: str) -> None:
    rest = LEAVES[name]
    comment = _COMMENT.split(rest, maxsplit=1)
    assert len(comment) == 3 and comment[2].strip(), f"{name} has no trailing comment: {rest!r}"


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.no_such_key"):
        build_settings({"kafka": {"no_such_key": 1}})
    with pytest.raises(ConfigError, match=r"no_such_section"):
        build_settings({"no_such_section": {}})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kafka": {"poll_max_records": "many"}}, "kafka.poll_max_records"),
        ({"kafka": {"poll_max_records": 0}}, "kafka.poll_max_records"),
        ({"redis": {"socket_timeout_s": "slow"}}, "redis.socket_timeout_s"),
        ({"state": {"windows_s": "hourly"}}, "state.windows_s"),
        ({"anomaly": {"height": 99}}, "anomaly.height"),
        ({"metrics": {"port": 70000}}, "metrics.port"),
        ({"kafka": {"auto_offset_reset": "middle"}}, "kafka.auto_offset_reset"),
    ],
)
def test_wrong_value_names_the_dotted_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(field)):
        build_settings(data)


@pytest.mark.parametrize(
    ("section", "fields"),
    [
        ("state", {"windows_s": [60, 86400]}),  # 3600 missing
        ("state", {"windows_s": [3600, 60]}),  # not increasing
        ("volume_rule", {"ratio_medium": 20.0, "ratio_high": 15.0}),
        ("kafka", {"heartbeat_interval_ms": 7000, "session_timeout_ms": 6000}),
        ("campaigns", {"index_refresh_s": 3600.0, "singleton_ttl_s": 3600}),
    ],
)
def test_cross_field_checks(section: str, fields: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=section):
        Settings().with_overrides(**{section: fields})


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(Exception, match="frozen"):
        s.kafka.group_id = "x"  # type: ignore[misc]


def test_with_overrides_keeps_the_rest() -> None:
    s = Settings().with_overrides(anomaly={"n_trees": 3})
    assert s.anomaly.n_trees == 3
    assert s.anomaly.height == Settings().anomaly.height
    assert s.kafka == Settings().kafka


def test_env_overrides() -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "b1:9093,b2:9093",
        "REDIS_URL": "redis://cache:6380/2",
        "DETECTOR__KAFKA__POLL_MAX_RECORDS": "2000",
        "DETECTOR__STATE__WINDOWS_S": "[60, 3600]",
        "DETECTOR__SERVICE__REDACT_DLQ_PAYLOAD": "true",
        "UNRELATED": "x",
    }
    s = load_settings(environ=env)
    assert s.kafka.bootstrap_servers == "b1:9093,b2:9093"
    assert s.redis.url == "redis://cache:6380/2"
    assert s.kafka.poll_max_records == 2000
    assert s.state.windows_s == (60, 3600)
    assert s.service.redact_dlq_payload is True
    assert s.kafka.group_id == "detector"  # untouched


def test_empty_env_values_are_ignored() -> None:
    s = load_settings(environ={"KAFKA_BOOTSTRAP_SERVERS": "", "REDIS_URL": ""})
    assert s.kafka.bootstrap_servers == Settings().kafka.bootstrap_servers
    assert s.redis.url == Settings().redis.url


def test_env_beats_overlay_beats_defaults(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("kafka:\n  poll_max_records: 10\n  poll_timeout_ms: 20\n")
    s = load_settings(overlay, environ={"DETECTOR__KAFKA__POLL_MAX_RECORDS": "30"})
    assert s.kafka.poll_max_records == 30
    assert s.kafka.poll_timeout_ms == 20
    assert s.kafka.group_id == "detector"


@pytest.mark.parametrize("name", ["DETECTOR__KAFKA", "DETECTOR__KAFKA__A__B", "DETECTOR____X"])
def test_malformed_env_name_is_named(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        env_overrides({name: "1"})


def test_unknown_env_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.bogus"):
        load_settings(environ={"DETECTOR__KAFKA__BOGUS": "1"})


@pytest.mark.parametrize("raw", ["123", "yes", "on", "null", "10:30", "1e3"])
def test_env_string_setting_that_looks_like_a_yaml_scalar(raw: str) -> None:
    # regression: env values were YAML-parsed, so group id "123" became an int and was refused
    s = load_settings(environ={"DETECTOR__KAFKA__GROUP_ID": raw, "DETECTOR__KAFKA__CLIENT_ID": raw})
    assert s.kafka.group_id == raw
    assert s.kafka.client_id == raw


def test_env_wrong_scalar_is_named() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.poll_max_records"):
        load_settings(environ={"DETECTOR__KAFKA__POLL_MAX_RECORDS": "many"})


def test_bad_overlay_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad, environ={})
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(scalar, environ={})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://user:s3cret@cache:6379/0", "redis://user:***@cache:6379/0"),
        ("rediss://user:s3c@ret@cache:6380", "rediss://user:***@cache:6380"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url_hides_the_password(url: str, expected: str) -> None:
    redacted = redact_url(url)
    assert redacted == expected
    assert "s3c" not in redacted


@pytest.mark.parametrize(
    "url",
    [
        "redis://cache:6379/0?password=s3cret",
        "redis://cache:6379/0?socket_timeout=5&PASSWORD=s3cret&db=1",
        "rediss://user:s3cret@cache:6380/0?password=s3cret",
    ],
)
def test_redact_url_hides_a_query_password(url: str) -> None:
    # regression: redis-py honours ?password=..., which redact_url used to leave in place
    redacted = redact_url(url)
    assert "s3cret" not in redacted
    assert "cache:63" in redacted


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("http://broker", "has a scheme (http://)"),  # regression: read as broker:9092
        ("PLAINTEXT://broker:9092", "has a scheme (PLAINTEXT://)"),
        ("kafka://b1:9092,b2:9092", "has a scheme (kafka://)"),
        ("b1:9092,SSL://b2:9093", "has a scheme (SSL://)"),
        ("broker", "has no port"),
        ("b1:9092,,b2:9092", "has an empty entry"),
        ("b1:9092,", "has an empty entry"),
        (",b1:9092", "has an empty entry"),
        ("   ", "is empty"),
        ("broker:", "is not a number from 1 to 65535"),
        ("broker:abc", "is not a number from 1 to 65535"),
        ("broker:+9092", "is not a number from 1 to 65535"),
        ("broker:0", "is not a number from 1 to 65535"),
        ("broker:65536", "is not a number from 1 to 65535"),
        ("broker:９０９２", "is not a number from 1 to 65535"),  # full-width digits
        (":9092", "is not a host name or address"),
        ("user@broker:9092", "is not a host name or address"),
        ("broker:9092/path", "is not a number from 1 to 65535"),
        ("bro ker:9092", "is not a host name or address"),
        ("::1:9092", "an IPv6 address goes in brackets"),
        ("[::1]", "is not [ipv6-address]:port"),
        ("[::1]:x", "is not a number from 1 to 65535"),
    ],
)
def test_bootstrap_servers_must_be_host_port_pairs(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings().with_overrides(kafka={"bootstrap_servers": value})
    message = str(caught.value)
    assert "kafka.bootstrap_servers (KAFKA_BOOTSTRAP_SERVERS):" in message
    assert problem in message and "expected host:port[,host:port...]" in message
    assert "Value error" not in message  # pydantic's prefix is noise to a user


def test_a_bootstrap_server_with_a_scheme_in_the_environment_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"KAFKA_BOOTSTRAP_SERVERS.*'http://broker' has a scheme"):
        load_settings(environ={"KAFKA_BOOTSTRAP_SERVERS": "http://broker"})


@pytest.mark.parametrize(
    ("value", "pairs"),
    [
        ("localhost:9092", [("localhost", 9092)]),
        ("b1:9093, b2:9094", [("b1", 9093), ("b2", 9094)]),
        ("10.0.0.7:1,[::1]:65535", [("10.0.0.7", 1), ("::1", 65535)]),
        ("kafka_1.internal:9092", [("kafka_1.internal", 9092)]),
    ],
)
def test_bootstrap_servers_in_the_documented_form(value: str, pairs: list[tuple[str, int]]) -> None:
    assert parse_bootstrap_servers(value) == pairs
    assert Settings().with_overrides(kafka={"bootstrap_servers": value}).kafka.bootstrap_servers


def test_env_name_is_the_variable_that_sets_the_setting() -> None:
    assert env_name("metrics", "port") == "DETECTOR__METRICS__PORT"
    assert env_name("kafka", "bootstrap_servers") == "KAFKA_BOOTSTRAP_SERVERS"
    assert env_name("redis", "url") == "REDIS_URL"
    for section, key in [("metrics", "port"), ("tap", "host"), ("kafka", "bootstrap_timeout_ms")]:
        overrides = env_overrides({env_name(section, key): "1"})
        assert overrides == {section: {key: "1"}}

from __future__ import annotations

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.connection import Connection

from detector.io.roundtrip import pack

_NAMES = st.sampled_from(["EVALSHA", "SET", "GET", "ZADD", "PFADD"])
_ARGS = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
_COMMANDS = st.lists(
    st.builds(lambda name, args: (name, *args), _NAMES, st.lists(_ARGS, max_size=12)), max_size=5
)


@given(_COMMANDS)
def test_pack_sends_what_redis_py_sends(commands: list[tuple[object, ...]]) -> None:
    assert b"".join(pack(commands)) == b"".join(Connection().pack_commands(commands))


def test_an_argument_redis_cannot_take_is_a_data_error() -> None:
    with pytest.raises(redis.DataError):
        pack([("SET", "key", None)])

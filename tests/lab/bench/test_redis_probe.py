from __future__ import annotations

from detector_lab.bench.redis_probe import AccountMemory, command_delta, glob_escape


def test_command_delta_keeps_what_ran() -> None:
    assert command_delta({"evalsha": 10}, {"evalsha": 13, "info": 2}) == {"evalsha": 3, "info": 2}


def test_glob_escape_leaves_plain_prefixes_alone() -> None:
    assert glob_escape("det:bench:ab12:w1r0:") == "det:bench:ab12:w1r0:"


def test_account_memory_by_key() -> None:
    memory = AccountMemory(2, [{"": 800, ":ip": 60}, {"": 900}])
    assert memory.totals() == [860, 900]
    assert memory.kinds() == ["", ":ip"]
    assert memory.of_kind(":ip") == [60, 0]

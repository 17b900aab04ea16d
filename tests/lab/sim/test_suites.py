"""Suites: deterministic draws, tune and test kept apart, every family and variant drawn."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from detector.contract import QUERY_EVENT_SCHEMA, validator
from detector.decode import decode_batch
from detector.errors import ConfigError
from detector.events import RawRecord
from detector_lab.sim import text
from detector_lab.sim.generate import simulate
from detector_lab.sim.scenario import load_scenario
from detector_lab.sim.suites import (
    SUITE_DIR,
    Suite,
    covering_draws,
    draw,
    load_suite,
    parameter_intervals,
    plan,
    slots,
)


@pytest.fixture(scope="module")
def tune() -> Suite:
    return load_suite("tune")


@pytest.fixture(scope="module")
def test() -> Suite:
    return load_suite("test")


@pytest.fixture(scope="module")
def ci() -> Suite:
    return load_suite("ci")


@pytest.fixture(scope="module")
def small_traffic(ci: Suite):
    """The ci draw at a fifth of its accounts: every honest family and five campaigns."""
    return draw(ci, 0, scale=0.2), simulate(draw(ci, 0, scale=0.2))


def test_shipped_suites_load() -> None:
    names = sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))
    assert names == ["ci", "test", "tune"]
    assert load_suite(str(SUITE_DIR / "ci.yaml")) == load_suite("ci")


def test_draws_are_deterministic(test: Suite) -> None:
    assert draw(test, 3) == draw(load_suite("test"), 3)
    assert draw(test, 3) != draw(test, 4)
    assert draw(test, 3, scale=0.5) == draw(test, 3).scaled(0.5)


def test_tune_and_test_never_share_a_seed(tune: Suite, test: Suite, ci: Suite) -> None:
    horizon = 1000  # far more draws than any report uses
    tune_seeds = {draw(tune, k).seed for k in range(tune.draws)} | {
        tune.seed_base + k for k in range(horizon)
    }
    test_seeds = {test.seed_base + k for k in range(horizon)} | {draw(ci, 0).seed}
    assert {draw(test, k).seed for k in range(test.draws)} <= test_seeds
    assert not tune_seeds & test_seeds


def test_each_suite_passes_its_own_phrase_half(tune: Suite, test: Suite, ci: Suite) -> None:
    assert (draw(tune, 0).half, draw(test, 0).half, draw(ci, 0).half) == ("tune", "test", "test")


@pytest.mark.parametrize("other", ["test", "ci"])
def test_no_numeric_range_of_tune_overlaps_the_others(tune: Suite, other: str) -> None:
    ours, theirs = parameter_intervals(tune), parameter_intervals(load_suite(other))
    # Same families, variants and parameters in both, so nothing escapes the check below.
    assert set(ours) == set(theirs)
    for key in ours:
        for (a_lo, a_hi), (b_lo, b_hi) in itertools.product(ours[key], theirs[key]):
            assert a_hi < b_lo or b_hi < a_lo, (
                f"{key}: tune [{a_lo}, {a_hi}] meets [{b_lo}, {b_hi}]"
            )


def test_same_families_and_variants_in_tune_and_test(tune: Suite, test: Suite) -> None:
    def shape(s: Suite) -> tuple:
        return (
            [(f.family, f.kind, sorted(f.params)) for f in s.honest],
            [(f.family, f.kind, f.variants, sorted(f.params)) for f in s.campaigns],
            {name: sorted(p) for name, p in s.variants.items()},
            s.pairs,
        )

    assert shape(tune) == shape(test)


@pytest.mark.parametrize("name", ["tune", "test"])
def test_covering_draws_show_every_family_and_variant(name: str) -> None:
    suite = load_suite(name)
    n = covering_draws(suite)
    assert n <= suite.draws
    scenarios = [draw(suite, k) for k in range(n)]
    families = {g.family for s in scenarios for g in s.populations + s.campaigns}
    assert families == {f.family for f in suite.honest + suite.campaigns}
    variants = {
        v.split(":")[0] for s in scenarios for g in s.campaigns for v in g.variant.split("+")
    }
    assert variants == set(suite.variants) | {"none"}
    combos = {tuple(sl.variants) for k in range(n) for sl in slots(suite, k)}
    assert {tuple(p) for p in suite.pairs} <= combos
    assert len(plan(suite)) == len(suite.campaigns) + len(suite.variants) + len(suite.pairs)


def test_later_passes_put_variants_on_other_families(test: Suite) -> None:
    # One pass puts each variant on one family: later passes must move it, or a variant's
    # recall could not be told from its family's.
    n = covering_draws(test)
    met: dict[str, set[str]] = {}
    for k in range(4 * n):
        for sl in slots(test, k):
            for variant in sl.variants:
                met.setdefault(variant, set()).add(sl.family)
    movable = [v for v in test.variants if len(_able_families(test, v)) > 1]
    assert movable and all(len(met[v]) > 1 for v in movable)


def _able_families(suite: Suite, variant: str) -> set[str]:
    return {sl.family for cycle in range(8) for sl in plan(suite, cycle) if variant in sl.variants}


def test_every_draw_holds_every_honest_family(test: Suite) -> None:
    for k in (0, 9):  # also past the first pass over the plan
        scenario = draw(test, k)
        assert [p.family for p in scenario.populations] == [f.family for f in test.honest]
        assert len(scenario.campaigns) == test.campaigns_per_draw
        assert len({c.name for c in scenario.campaigns}) == test.campaigns_per_draw


def test_drawn_values_come_from_the_ranges(test: Suite) -> None:
    scenario = draw(test, 2)
    individuals = next(p for p in scenario.populations if p.family == "individuals")
    assert 300 <= individuals.accounts <= 360
    assert 7.0 <= individuals.daily_requests <= 10.0
    assert test.days[0] <= scenario.days <= test.days[1]
    assert test.release_h[0] <= scenario.newest.released_at_h <= test.release_h[1]


def test_variants_are_applied_to_the_group(test: Suite) -> None:
    for k in range(covering_draws(test)):
        for group in draw(test, k).campaigns:
            if "tiny" in group.variant:
                assert 5 <= group.accounts <= 6
            if "human_pacing" in group.variant:
                assert group.pacing == "human" and 6.0 <= group.timezone_h <= 9.0
            if group.variant.startswith("language") or "+language" in group.variant:
                assert group.language in ("zh", "ru", "es")
                assert f"language:{group.language}" in group.variant


def test_bad_suite_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    original = (SUITE_DIR / "test.yaml").read_text(encoding="utf-8")
    tiny = "tiny: {accounts: {range: [5, 6]}}"
    assert tiny in original
    bad.write_text(original.replace(tiny, "tiny: {accounts: {range: [0, 2]}}"), encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"lockstep \+ variant tiny: lockstep.accounts: Input should be greater"
    ):
        load_suite(str(bad))
    bad.write_text(f"extends: {SUITE_DIR / 'test.yaml'}\nhalf: train\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="half"):
        load_suite(str(bad))
    with pytest.raises(ConfigError, match="ci, test, tune"):
        load_suite("no-such-suite")


def test_labels_carry_family_and_variant(small_traffic) -> None:
    scenario, traffic = small_traffic
    by_group = {g.name: g for g in scenario.populations + scenario.campaigns}
    for account, info in traffic.labels.items():
        group = by_group[info["group"]]
        assert info["family"] == group.family and info["variant"] == group.variant
        assert info["group"] not in account  # opaque ids: an id must not spell its group
    assert {v["family"] for v in traffic.labels.values()} >= {
        p.family for p in scenario.populations
    }


def test_a_drawn_scenario_generates_valid_events(small_traffic) -> None:
    scenario, traffic = small_traffic
    check = validator(QUERY_EVENT_SCHEMA)
    for e in traffic.events:
        check(e)
    sample = traffic.events[:: max(1, len(traffic.events) // 2000)]
    records = [
        RawRecord("llm.queries", 0, i, e["account_id"].encode(), orjson.dumps(e))
        for i, e in enumerate(sample)
    ]
    oks, errs = decode_batch(records)
    assert not errs and len(oks) == len(sample)
    ts = [e["ts"] for e in traffic.events]
    assert ts == sorted(ts) and len({e["event_id"] for e in traffic.events}) == len(ts)
    assert {e["model"] for e in traffic.events} <= {m.name for m in scenario.models}


def test_plain_scenarios_are_their_own_family() -> None:
    scenario = load_scenario("ci")
    assert all(g.family == g.kind for g in scenario.populations + scenario.campaigns)
    assert all(g.variant == "none" for g in scenario.populations + scenario.campaigns)
    assert scenario.half is None and scenario.account_ids == "named"


def test_ci_scenario_traffic_is_unchanged() -> None:
    """The knobs draw nothing while at their defaults: the ci scenario's events are the
    same bytes as before the suites existed. In a fresh interpreter, as the CLI runs it:
    text.corpus() reads docstrings of whatever the process imported, so under pytest the
    corpus (and the traffic) differ."""
    script = (
        "import hashlib, orjson\n"
        "from detector_lab.sim.generate import simulate\n"
        "from detector_lab.sim.scenario import load_scenario\n"
        "events = simulate(load_scenario('ci')).events\n"
        "print(len(events), hashlib.sha256(b''.join(map(orjson.dumps, events))).hexdigest()[:16])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == ["21468", "e5ebab16ad37c472"]


def test_text_api_has_every_language_the_suites_use(tune: Suite, test: Suite) -> None:
    used = {"en"}
    for suite in (tune, test):
        for k in range(covering_draws(suite)):
            scenario = draw(suite, k)
            used |= {lang for p in scenario.populations for lang in getattr(p, "languages", ())}
            used |= {c.language for c in scenario.campaigns}
    assert used <= set(text.LANGUAGES)

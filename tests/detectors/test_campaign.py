"""Campaign judgement and evidence extraction, on crafted inputs."""

from __future__ import annotations

import random

from detector.config import CampaignSettings, FeatureSettings
from detector.detectors.campaign import evidence_of, judge, pivot, source
from detector.events import QueryEvent
from detector.features import extract
from detector.features.intent import IntentTagger
from detector.features.request import EventFeatures
from detector.state.campaigns import CampaignState, SourceMix
from detector.state.profile import Profile, add_event, lockstep_bands


def _campaign(members: int, kinds: tuple[str, ...], alerted: int = 0) -> CampaignState:
    return CampaignState("e:bill:x", 1000.0, 8200.0, members, alerted, 5000, kinds)


def test_severity_grows_with_size_and_kinds_of_evidence() -> None:
    s = CampaignSettings()
    assert judge(_campaign(3, ("bill",)), s).severity == "medium"
    assert judge(_campaign(12, ("bill",)), s).severity == "high"
    assert judge(_campaign(40, ("bill",)), s).severity == "high"  # one kind of evidence never pages
    assert judge(_campaign(40, ("bill", "net")), s).severity == "critical"
    assert judge(_campaign(40, ("bill", "net")), s).score > judge(_campaign(3, ("bill",)), s).score


def test_reasons_say_what_is_shared_and_how_it_grew() -> None:
    finding = judge(_campaign(15, ("cfp", "tpl"), alerted=8), CampaignSettings())
    assert (
        finding.reasons[0]
        == "15 accounts linked by shared client fingerprint, prompt template (2 independent kinds of evidence)"
    )
    assert "2.0 h" in finding.reasons[1]
    assert "grew from 8 to 15" in finding.reasons[2]
    assert finding.evidence["members"] == 15


def test_evidence_respects_kinds_and_limit() -> None:
    feats = [
        EventFeatures("a", f"e{i}", "h", 0.0, 0, i, "m", 0, 0, 0, None, "", "", billing="b", client="c",
                      network=f"10.0.{i}.0/24", asn_agent="64500|ab", prefix=0xBEEF)
        for i in range(5)
    ]  # fmt: skip
    assert evidence_of(feats, ("cfp", "tpl"), 8) == ("cfp:c", "tpl:beef")
    all_kinds = evidence_of(feats, ("bill", "cfp", "net", "asnua", "tpl"), 4)
    assert all_kinds == ("bill:b", "cfp:c", "net:10.0.0.0/24", "asnua:64500|ab")


def _moving(
    models: dict[str, int], population: dict[str, int], pivoted: frozenset[str] = frozenset()
):
    return CampaignState(
        "e:tpl:1", 1000.0, 50_000.0, 12, 12, 900, ("tpl", "net"), pivoted=pivoted, models=models,
        population_models=population,
    )  # fmt: skip


def test_pivot_to_a_new_model_faster_than_the_population() -> None:
    s = CampaignSettings()
    base = judge(_moving({}, {}), s)
    first_seen = {"old": 0.0, "new": 50_000.0 - 3 * 3600}
    moved = pivot(_moving({"old": 50, "new": 50}, {"old": 900, "new": 100}), first_seen, s, base)
    assert moved is not None
    model, finding = moved
    assert model == "new" and finding.type == "model_pivot" and finding.severity == "high"
    assert (
        "50% of its last 2 hours' 100 requests to new, first seen 3.0 h earlier"
        in finding.reasons[0]
    )
    assert finding.evidence["window_h"] == 2


def test_no_pivot_when_everyone_moves_or_the_model_is_old_or_already_reported() -> None:
    s = CampaignSettings()
    base = judge(_moving({}, {}), s)
    fresh = {"old": 0.0, "new": 50_000.0 - 3600}
    assert pivot(_moving({"old": 50, "new": 50}, {"old": 500, "new": 500}), fresh, s, base) is None
    old = {"old": 0.0, "new": 50_000.0 - 3 * 86400}
    assert pivot(_moving({"old": 50, "new": 50}, {"old": 900, "new": 100}), old, s, base) is None
    done = _moving({"old": 50, "new": 50}, {"old": 900, "new": 100}, frozenset({"new"}))
    assert pivot(done, fresh, s, base) is None


def test_source_mix_mixed_versus_mostly_abusive() -> None:
    s = CampaignSettings()
    reseller = SourceMix("asnua:64500|gw", 1000, 400, 120, 30, "e:tpl:1", 0.0)
    finding = source(reseller, s, 0.0)
    assert finding is not None and finding.severity == "medium"
    assert "do not block the source" in finding.reasons[1]
    hosting = SourceMix("range:45.77.0.0/16", 1000, 950, 12, 12, "e:tpl:1", 0.0)
    assert source(hosting, s, 0.0).severity == "high"
    assert (
        source(SourceMix("range:1.2.0.0/16", 1000, 100, 50, 5, "r", 0.0), s, 0.0) is None
    )  # 10%: honest source
    assert (
        source(SourceMix("asnua:64500|gw", 1000, 410, 120, 30, "r", 0.4), s, 0.0) is None
    )  # no material change


def test_lockstep_and_creation_hour_evidence() -> None:
    f = EventFeatures("a", "e", "h", 0.0, 0, 0, "m", 0, 0, 0, 7300.0, "", "")
    assert evidence_of([f], ("born", "lock"), 8, lockstep=("0:1-2", "1:3-4")) == (
        "born:2",
        "lock:0:1-2",
        "lock:1:3-4",
    )
    assert evidence_of([f], ("born",), 8, lockstep=("0:1-2",)) == ("born:2",)  # lock not configured


def test_accounts_driven_by_one_scheduler_share_lockstep_bands() -> None:
    rng = random.Random(3)
    ticks = sorted(rng.uniform(0, 40_000) for _ in range(300))
    tagger = IntentTagger({})

    def profile_of(times: list[float]) -> Profile:
        p = Profile()
        for i, ts in enumerate(times, start=1):
            add_event(
                p,
                extract(QueryEvent(f"e{i}", ts, "a", "m"), FeatureSettings(), tagger),
                i,
                None,
                50,
                20,
                8,
            )
        return p

    bots = [
        profile_of([t + rng.uniform(0, 1) for t in ticks if rng.random() < 0.9]) for _ in range(3)
    ]
    human = profile_of(sorted(rng.uniform(0, 40_000) for _ in range(300)))
    shared = (
        set(lockstep_bands(bots[0])) & set(lockstep_bands(bots[1])) & set(lockstep_bands(bots[2]))
    )
    assert shared
    assert not shared & set(lockstep_bands(human))


def test_capability_focus_and_replacement_in_reasons() -> None:
    campaign = CampaignState(
        "e:tpl:1", 0.0, 30_000.0, 20, 0, 900, ("tpl", "asnua"), capabilities={"reasoning": 60, "coding": 40},
        joined_recently=6, active_recently=8,
    )  # fmt: skip
    finding = judge(campaign, CampaignSettings())
    assert "internal-reasoning elicitation 60%, agentic coding 40%" in finding.reasons[2]
    assert "6 accounts joined while 12 went quiet" in finding.reasons[3]
    assert finding.evidence["quiet_members"] == 12


def test_source_cooldown_unless_it_turns_mostly_abusive() -> None:
    s = CampaignSettings()
    moved = SourceMix("asnua:64500|gw", 1000, 700, 120, 30, "r", 0.4, alerted_ts=1000.0)
    assert source(moved, s, 1000.0 + 3600) is None  # within the cooldown
    assert source(moved, s, 1000.0 + 2 * 86400) is not None  # after it
    worse = SourceMix("asnua:64500|gw", 1000, 900, 120, 30, "r", 0.4, alerted_ts=1000.0)
    finding = source(worse, s, 1000.0 + 3600)
    assert finding is not None and finding.severity == "high"  # escalation is news at once

"""Campaign judgement and evidence extraction, on crafted inputs."""

from __future__ import annotations

from detector.config import CampaignSettings
from detector.detectors.campaign import evidence_of, judge
from detector.features.request import EventFeatures
from detector.state.campaigns import CampaignState


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

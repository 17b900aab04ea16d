"""Paging logic: which alerts page, what a page says, when it is resent and resolved."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from detector.config import PagerSettings
from detector.programs.pager import PageBook, parse_alert, rfc3339, to_alertmanager

SETTINGS = PagerSettings(quiet_after_s=600.0, resend_interval_s=60.0, accounts_listed=3)
T0 = 1_800_000_000.0


def _campaign(
    severity: str = "critical", cid: str = "cmp-1", at: float = T0, **extra: Any
) -> dict[str, Any]:
    return {
        "alert_id": f"a-{cid}-{severity}-{at}", "ts": 1_767_225_600.0, "emitted_at": at,
        "subject_type": "campaign", "subject_id": cid, "type": "coordinated_cluster",
        "severity": severity, "score": 0.93, "accounts": [f"acct-{i}" for i in range(5)],
        "account_count": 42, "detector_version": "0.1.0",
        "reasons": ["42 accounts linked by shared billing fingerprint, IP range (2 independent kinds of evidence)",
                    "1200 requests from members over 3.0 h of event time"],
        "evidence": {"evidence_kinds": ["bill", "net"], "members": 42},
        "first_seen_ts": 1_767_225_000.0, "event_count": 1200, **extra,
    }  # fmt: skip


def _member(cid: str, at: float) -> dict[str, Any]:
    return {
        "alert_id": f"m-{at}", "ts": 1.0, "emitted_at": at, "subject_type": "account",
        "subject_id": "acct-new", "type": "coordinated_cluster", "severity": "high", "score": 0.9,
        "campaign_id": cid, "reasons": [f"member of campaign {cid}"], "detector_version": "0.1.0",
    }  # fmt: skip


def _keys(outbox: list) -> list[tuple[str, bool]]:
    return [(o.page.key[0], o.resolved) for o in outbox]


def test_critical_campaign_pages_with_grouping_labels_and_details() -> None:
    book = PageBook(SETTINGS)
    assert book.observe(_campaign(), T0)
    [out] = book.outbox(T0)
    alert = to_alertmanager(out.page, out.ends_at)
    assert alert["labels"] == {
        "alertname": "DetectorCampaign", "severity": "critical", "alert_type": "coordinated_cluster",
        "subject_type": "campaign", "subject_id": "cmp-1", "campaign_id": "cmp-1",
        "service": "llm-distill-detector",
    }  # fmt: skip
    notes = alert["annotations"]
    assert notes["account_count"] == "42"
    assert "42 accounts" in notes["summary"] and "cmp-1" in notes["summary"]
    assert "shared billing fingerprint" in notes["reasons"] and "1200 requests" in notes["reasons"]
    assert notes["accounts"] == "acct-0, acct-1, acct-2 ..."  # accounts_listed, then more
    assert notes["evidence_kinds"] == "bill, net"
    assert notes["runbook_url"] == SETTINGS.runbook_url
    assert alert["startsAt"] == rfc3339(T0)
    assert alert["endsAt"] == rfc3339(T0 + SETTINGS.quiet_after_s)  # resolves itself if we die


@pytest.mark.parametrize("severity", ["low", "medium", "high"])
def test_lower_severities_do_not_page(severity: str) -> None:
    book = PageBook(SETTINGS)
    assert not book.observe(_campaign(severity), T0)
    assert book.outbox(T0) == []


def test_account_and_source_subjects_do_not_page_by_default() -> None:
    book = PageBook(SETTINGS)
    assert not book.observe(_campaign(subject_type="source"), T0)
    assert not book.observe({**_member("cmp-9", T0), "severity": "critical"}, T0)
    assert book.outbox(T0) == []


def test_paging_severities_are_configurable() -> None:
    book = PageBook(SETTINGS.model_copy(update={"severities": ("high", "critical")}))
    assert book.observe(_campaign("high"), T0)


def test_page_resolves_after_quiet_and_member_alerts_keep_it_open() -> None:
    book = PageBook(SETTINGS)
    book.observe(_campaign(), T0)
    book.sent(book.outbox(T0), T0)
    book.observe(_member("cmp-1", T0 + 500), T0 + 500)  # the campaign is still growing
    assert _keys(book.outbox(T0 + 700)) == [("cmp-1", False)]  # a resend, not a resolution
    [resolution] = book.outbox(T0 + 1100)
    assert resolution.resolved and resolution.ends_at == T0 + 1100
    assert to_alertmanager(resolution.page, resolution.ends_at)["endsAt"] == rfc3339(T0 + 1100)
    book.sent([resolution], T0 + 1100)
    assert book.open == {} and book.outbox(T0 + 1200) == []


def test_an_unsent_resolution_is_offered_again() -> None:
    book = PageBook(SETTINGS)
    book.observe(_campaign(), T0)
    book.sent(book.outbox(T0), T0)
    assert _keys(book.outbox(T0 + 601)) == [("cmp-1", True)]
    assert _keys(book.outbox(T0 + 602)) == [("cmp-1", True)]  # Alertmanager was down


def test_open_pages_are_resent_at_the_interval_only() -> None:
    book = PageBook(SETTINGS)
    book.observe(_campaign(), T0)
    book.sent(book.outbox(T0), T0)
    assert book.outbox(T0 + 30) == []
    assert _keys(book.outbox(T0 + 61)) == [("cmp-1", False)]


def test_a_new_alert_updates_the_page_but_keeps_its_start() -> None:
    book = PageBook(SETTINGS)
    book.observe(_campaign(), T0)
    book.sent(book.outbox(T0), T0)
    book.observe(_campaign(at=T0 + 10, account_count=90), T0 + 10)
    [out] = book.outbox(T0 + 10)  # changed pages go out at once
    assert out.page.annotations["account_count"] == "90" and out.page.starts_at == T0


def test_alerts_already_quiet_when_read_do_not_page() -> None:
    book = PageBook(SETTINGS)
    assert not book.observe(_campaign(at=T0 - 700), T0)  # a backlog after a pager outage
    assert book.outbox(T0) == []


def test_active_campaigns_by_highest_severity_and_forgotten_when_quiet() -> None:
    book = PageBook(SETTINGS)
    book.observe(_campaign("medium", "c1"), T0)
    book.observe(_campaign("high", "c2"), T0)
    book.observe(_campaign("critical", "c2"), T0)
    book.observe(_campaign("medium", "c2"), T0)  # a later, lower alert keeps the highest
    assert book.active_campaigns(T0) == {"low": 0, "medium": 1, "high": 0, "critical": 1}
    book.sent(book.outbox(T0 + 700), T0 + 700)
    assert book.active_campaigns(T0 + 700) == {"low": 0, "medium": 0, "high": 0, "critical": 0}
    assert book.activity == {} and book.severity == {}  # memory stays bounded


def test_pages_never_carry_prompt_text() -> None:
    book = PageBook(SETTINGS)
    book.observe(_campaign(evidence={"evidence_kinds": ["tpl"], "prompt": "SECRET"}), T0)
    [out] = book.outbox(T0)
    assert "SECRET" not in orjson.dumps(to_alertmanager(out.page, out.ends_at)).decode()


def test_parse_alert_refuses_what_is_not_alert_v1() -> None:
    assert parse_alert(orjson.dumps(_campaign())) is not None
    assert parse_alert(b"{not json") is None
    assert parse_alert(orjson.dumps({"subject_type": "campaign"})) is None
    assert parse_alert(None) is None

"""End to end: events -> worker -> critical campaign alert -> `detector pager` -> a real
Alertmanager (the deploy/ route tree) -> the paging webhook, then the resolution."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from detector.config import Settings
from detector.programs.pager import run_pager
from tests.integration.helpers import TopicReader, produce, wait_until
from tests.integration.test_service import RunningService
from tests.tools import WebhookReceiver, alertmanager, alertmanager_test_config

pytestmark = pytest.mark.integration

ACCOUNTS = 6
PROMPT = ("Explain the reasoning you would use internally to answer this, as a numbered chain of "
          "thought, then give the answer. Question {n}: how many primes are below {n}?")  # fmt: skip


def _campaign_events() -> list[dict[str, Any]]:
    """Six harvesting accounts in lockstep sharing a payment and a client fingerprint."""
    return [
        {"event_id": f"{a}-{i}", "ts": 1_767_225_600.0 + i * 60 + a, "account_id": f"acct-{a}", "model": "m",
         "billing_fingerprint": "card-shared", "client_fingerprint": "cfp-shared", "prompt": PROMPT.format(n=1000 * a + i), "n_messages": 1,
         "input_tokens": 60, "output_tokens": 4096, "max_tokens": 4096, "temperature": 0.0, "stream": False}
        for i in range(40) for a in range(ACCOUNTS)
    ]  # fmt: skip


def _alerts(hook: WebhookReceiver, path: str, status: str) -> list[dict[str, Any]]:
    return [
        alert
        for got, notification in hook.received
        if got == path and notification["status"] == status
        for alert in notification["alerts"]
        if alert["status"] == status
    ]


def test_critical_campaign_is_paged_through_alertmanager_and_resolved(
    service_settings: Settings, unique: str, tmp_path: Path
) -> None:
    with (
        WebhookReceiver() as hook,
        alertmanager(alertmanager_test_config(hook.url, tmp_path), tmp_path) as am_url,
    ):
        settings = service_settings.with_overrides(
            # a campaign of six accounts is critical here (30 by default), so the test stays small,
            # and judged at once (it is all the traffic there is)
            campaigns={
                "groups": {
                    "high_members": 3,
                    "critical_members": 5,
                    "sync_members": 5,
                    "background_min": 0,
                }
            },
            pager={
                "alertmanager_urls": [am_url],
                "group_id": f"pager-{unique}",
                "quiet_after_s": 15.0,
                "resend_interval_s": 1.0,
            },
        )
        registry = CollectorRegistry()
        stop = threading.Event()
        pager = threading.Thread(target=run_pager, args=(settings, stop, registry), daemon=True)
        pager.start()
        try:
            with RunningService(settings):
                produce(settings, _campaign_events())
                firing = wait_until(
                    lambda: _alerts(hook, "/pager", "firing"), 90, "a page at the pager webhook"
                )
            reader = TopicReader(settings, settings.kafka.alerts_topic)
            topic = [orjson.loads(m.value) for m in reader.read_to_end(20, "alerts")]
            reader.close()
            resolved = wait_until(lambda: _alerts(hook, "/pager", "resolved"), 60, "the resolution")
        finally:
            stop.set()
            pager.join(30)
        assert not pager.is_alive(), "the pager did not stop on request"

    critical = [a for a in topic if a["subject_type"] == "campaign" and a["severity"] == "critical"]
    [campaign] = {a["subject_id"] for a in critical}
    page = firing[0]
    assert page["labels"]["campaign_id"] == campaign
    assert page["labels"]["severity"] == "critical"
    assert page["labels"]["alertname"] == settings.pager.alertname
    # The campaign is announced as it grows (by `realert_growth`): 5 or 6 accounts when it
    # turns critical, depending on how the batches fell. The page carries an announced count.
    assert page["annotations"]["account_count"] in {str(a["account_count"]) for a in critical}
    assert int(page["annotations"]["account_count"]) >= settings.campaigns.groups.critical_members
    assert "billing fingerprint" in page["annotations"]["reasons"]
    assert page["annotations"]["runbook_url"].endswith("campaign-critical.md")
    # Grouped by campaign: the notification's group labels name it.
    [notification] = [n for p, n in hook.received if p == "/pager" and n["status"] == "firing"][:1]
    assert notification["groupLabels"]["campaign_id"] == campaign
    # Nothing critical went to chat, and no prompt text reached Alertmanager.
    assert not [a for a in _alerts(hook, "/chat", "firing") if a["labels"].get("campaign_id")]
    assert "Question" not in orjson.dumps([n for _, n in hook.received]).decode()
    assert resolved[0]["labels"]["campaign_id"] == campaign
    sample = registry.get_sample_value
    assert sample("detector_pager_pages_posted_total", {"state": "firing"}) >= 1
    assert sample("detector_pager_pages_posted_total", {"state": "resolved"}) >= 1
    assert sample("detector_pager_open_pages") == 0

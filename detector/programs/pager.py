"""``detector pager``: critical campaign alerts from the alerts topic to Alertmanager.

A consumer of ``kafka.alerts_topic`` (its own group, ``pager.group_id``) that turns each
``alert.v1`` record of a paging subject and severity (by default: campaigns, critical)
into an Alertmanager alert, posted to every Alertmanager's v2 API
(``POST /api/v2/alerts``). Labels let Alertmanager group by campaign and route by
severity; annotations carry the summary, account count and reasons. Alerts carry no
prompt text, and neither do pages.

A page stays open while alerts about its campaign keep coming (campaign alerts, or member
account alerts naming it in ``campaign_id``); after ``pager.quiet_after_s`` without any,
the pager sends the resolution (``endsAt`` now). Every open page carries ``endsAt`` at the
time it would go quiet, so if the pager itself dies, Alertmanager resolves it then rather
than never. Offsets are committed only after the pages they caused were posted.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import fastjsonschema
import orjson
from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry, Counter, Gauge

from detector.config import KafkaSettings, PagerSettings, Settings, redact_url
from detector.contract import ALERT_SCHEMA, validator
from detector.errors import AlertmanagerUnavailable
from detector.health import Health, HealthServer

log = logging.getLogger(__name__)

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
SERVICE_LABEL = "llm-distill-detector"
ALERTS_PATH = "/api/v2/alerts"
POLL_TIMEOUT_MS = 500
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
REASONS_MAX_CHARS = 2000  # annotations are read on a phone; the alert on the topic has them all


def rfc3339(ts: float) -> str:
    """Alertmanager's time format.

    >>> rfc3339(0.0)
    '1970-01-01T00:00:00.000Z'
    """
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


PageKey = tuple[str, str, str]  # (subject id, alert type, severity): one Alertmanager alert


@dataclass(frozen=True, slots=True)
class Page:
    key: PageKey
    campaign: str  # the id whose activity keeps the page open
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float  # wall clock, seconds


def is_paging(alert: Mapping[str, Any], settings: PagerSettings) -> bool:
    return (
        alert["subject_type"] in settings.subject_types and alert["severity"] in settings.severities
    )


def campaign_of(alert: Mapping[str, Any]) -> str | None:
    """The campaign an alert is about: its subject, or the campaign a member alert names."""
    if alert["subject_type"] == "campaign":
        return str(alert["subject_id"])
    campaign = alert.get("campaign_id")
    return str(campaign) if campaign else None


def page_labels(alert: Mapping[str, Any], settings: PagerSettings) -> dict[str, str]:
    """Labels identify the page: Alertmanager groups on campaign_id and routes on severity."""
    labels = {
        "alertname": settings.alertname,
        "severity": alert["severity"],
        "alert_type": alert["type"],
        "subject_type": alert["subject_type"],
        "subject_id": alert["subject_id"],
        "service": SERVICE_LABEL,
    }
    campaign = campaign_of(alert)
    if campaign:
        labels["campaign_id"] = campaign
    return labels


def page_annotations(alert: Mapping[str, Any], settings: PagerSettings) -> dict[str, str]:
    count = alert.get("account_count", len(alert.get("accounts", [])) or 1)
    accounts = list(alert.get("accounts", []))[: settings.accounts_listed]
    evidence = alert.get("evidence") or {}
    kinds = evidence.get("evidence_kinds") or []
    reasons = "\n".join(f"- {r}" for r in alert["reasons"])[:REASONS_MAX_CHARS]
    return {
        "summary": (
            f"{alert['severity'].capitalize()} {alert['type']}: {alert['subject_type']} "
            f"{alert['subject_id']}, {count} accounts"
        ),
        "description": f"{alert['reasons'][0]}\n{reasons}"[:REASONS_MAX_CHARS],
        "account_count": str(count),
        "reasons": reasons,
        "accounts": ", ".join(accounts) + (" ..." if count > len(accounts) else ""),
        "evidence_kinds": ", ".join(str(k) for k in kinds),
        "score": f"{float(alert['score']):.2f}",
        "event_count": str(alert.get("event_count", "")),
        "first_seen": rfc3339(alert["first_seen_ts"]) if "first_seen_ts" in alert else "",
        "detector_alert_id": alert["alert_id"],
        "runbook_url": settings.runbook_url,
    }


def to_alertmanager(page: Page, ends_at: float) -> dict[str, Any]:
    return {
        "labels": page.labels,
        "annotations": page.annotations,
        "startsAt": rfc3339(page.starts_at),
        "endsAt": rfc3339(ends_at),
    }


@dataclass(frozen=True, slots=True)
class Outgoing:
    page: Page
    ends_at: float
    resolved: bool


class PageBook:
    """Open pages and campaign activity, in memory; wall-clock times are passed in.

    >>> s = PagerSettings(quiet_after_s=600, resend_interval_s=60)
    >>> book = PageBook(s)
    >>> alert = {"alert_id": "x", "subject_type": "campaign", "subject_id": "c1", "type": "coordinated_cluster",
    ...          "severity": "critical", "score": 0.9, "reasons": ["30 accounts linked"], "account_count": 30,
    ...          "emitted_at": 1000.0}
    >>> book.observe(alert, now=1000.0)
    True
    >>> [(o.page.key, o.resolved) for o in book.outbox(now=1000.0)]
    [(('c1', 'coordinated_cluster', 'critical'), False)]
    >>> book.sent(book.outbox(1000.0), 1000.0); book.outbox(now=1030.0)
    []
    >>> [(o.page.key, o.resolved) for o in book.outbox(now=1600.0)]
    [(('c1', 'coordinated_cluster', 'critical'), True)]
    """

    def __init__(self, settings: PagerSettings) -> None:
        self.settings = settings
        self.open: dict[PageKey, Page] = {}
        self.resolving: dict[PageKey, Page] = {}
        self.dirty: set[PageKey] = set()
        self.activity: dict[str, float] = {}  # campaign -> wall clock of its latest alert
        self.severity: dict[str, str] = {}  # campaign -> highest severity of its campaign alerts
        self.last_post = float("-inf")

    def observe(self, alert: Mapping[str, Any], now: float) -> bool:
        """Take one alert; True if it opened or changed a page."""
        seen = min(now, float(alert["emitted_at"]))
        if now - seen >= self.settings.quiet_after_s:
            return False  # already quiet when it reached us (a backlog): nothing to page
        campaign = campaign_of(alert)
        if campaign:
            self.activity[campaign] = max(self.activity.get(campaign, seen), seen)
            if alert["subject_type"] == "campaign":
                known = self.severity.get(campaign, "low")
                if SEVERITY_RANK[alert["severity"]] >= SEVERITY_RANK[known]:
                    self.severity[campaign] = alert["severity"]
        if not is_paging(alert, self.settings):
            return False
        key: PageKey = (str(alert["subject_id"]), str(alert["type"]), str(alert["severity"]))
        previous = self.open.get(key)
        page = Page(
            key,
            campaign or key[0],
            page_labels(alert, self.settings),
            page_annotations(alert, self.settings),
            previous.starts_at if previous else seen,
        )
        self.activity.setdefault(page.campaign, seen)
        self.open[key] = page
        self.resolving.pop(key, None)
        self.dirty.add(key)
        return True

    def _ends_at(self, page: Page) -> float:
        return self.activity.get(page.campaign, page.starts_at) + self.settings.quiet_after_s

    def outbox(self, now: float) -> list[Outgoing]:
        """Pages to post now: new or changed ones, every open one when a resend is due, and
        resolutions of pages whose campaign went quiet."""
        for key, page in list(self.open.items()):
            if self._ends_at(page) <= now:
                self.resolving[key] = page
                del self.open[key]
                self.dirty.discard(key)
        resend = now - self.last_post >= self.settings.resend_interval_s
        out = [
            Outgoing(page, self._ends_at(page), False)
            for key, page in self.open.items()
            if resend or key in self.dirty
        ]
        out += [Outgoing(page, now, True) for page in self.resolving.values()]
        return out

    def sent(self, outgoing: list[Outgoing], now: float) -> None:
        for o in outgoing:
            self.dirty.discard(o.page.key)
            if o.resolved:
                self.resolving.pop(o.page.key, None)
        if {o.page.key for o in outgoing if not o.resolved} >= set(self.open):
            self.last_post = now  # every open page went out: the next resend is due from now
        self._forget_quiet(now)

    def _forget_quiet(self, now: float) -> None:
        """Campaign activity is kept only as long as it can matter: memory stays bounded."""
        keep = {p.campaign for p in self.open.values()} | {
            p.campaign for p in self.resolving.values()
        }
        for campaign, seen in list(self.activity.items()):
            if now - seen >= self.settings.quiet_after_s and campaign not in keep:
                del self.activity[campaign]
                self.severity.pop(campaign, None)

    def active_campaigns(self, now: float) -> dict[str, int]:
        """Campaigns with a campaign alert within ``quiet_after_s``, by their highest severity."""
        counts = dict.fromkeys(SEVERITY_RANK, 0)
        for campaign, severity in self.severity.items():
            if now - self.activity.get(campaign, float("-inf")) < self.settings.quiet_after_s:
                counts[severity] += 1
        return counts


class PagerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumed = Counter(
            "detector_pager_alerts_consumed",
            "Alerts read from the alerts topic.",
            registry=registry,
        )
        self.invalid = Counter(
            "detector_pager_alerts_invalid",
            "Messages on the alerts topic that are not alert.v1 records (skipped).",
            registry=registry,
        )
        self.posted = Counter(
            "detector_pager_pages_posted",
            "Alerts posted to Alertmanager, firing or resolved.",
            ["state"],
            registry=registry,
        )
        for state in ("firing", "resolved"):
            self.posted.labels(state)
        self.post_errors = Counter(
            "detector_pager_post_errors",
            "Failed posts to one Alertmanager (the batch is retried while no Alertmanager took it).",
            registry=registry,
        )
        self.open_pages = Gauge(
            "detector_pager_open_pages", "Pages firing in Alertmanager.", registry=registry
        )
        self.active_campaigns = Gauge(
            "detector_pager_active_campaigns",
            "Campaigns with a campaign alert within pager.quiet_after_s, by highest severity.",
            ["severity"],
            registry=registry,
        )
        for severity in SEVERITY_RANK:
            self.active_campaigns.labels(severity)


def post_alerts(
    urls: tuple[str, ...], payload: list[dict[str, Any]], timeout_s: float
) -> list[str]:
    """Post to every Alertmanager (an HA cluster deduplicates); the errors, one per failed URL."""
    body = orjson.dumps(payload)
    errors = []
    for url in urls:
        request = urllib.request.Request(
            url.rstrip("/") + ALERTS_PATH,
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as reply:
                reply.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", errors="replace")
            errors.append(f"{redact_url(url)}: HTTP {exc.code} {detail}")
        except (urllib.error.URLError, OSError) as exc:
            errors.append(f"{redact_url(url)}: {getattr(exc, 'reason', exc)}")
    return errors


def parse_alert(value: bytes | None) -> dict[str, Any] | None:
    """An ``alert.v1`` record, or None when the message is not one."""
    try:
        alert = orjson.loads(value or b"")
        validator(ALERT_SCHEMA)(alert)
    except (orjson.JSONDecodeError, fastjsonschema.JsonSchemaValueException):
        return None
    return alert if isinstance(alert, dict) else None


class Pager:
    """The loop: poll alerts, update the book, post what is due, then commit."""

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: PagerSettings,
        metrics: PagerMetrics,
        health: Health,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from detector.io.kafka import make_group_consumer

        self.settings = settings
        self.metrics = metrics
        self.health = health
        self.clock = clock
        self.book = PageBook(settings)
        # Commits after the pages are posted; old alerts are skipped as quiet anyway.
        self.consumer = make_group_consumer(kafka, kafka.alerts_topic, settings.group_id)

    def run(self, stop: threading.Event) -> None:
        failures = 0
        pending: dict[TopicPartition, OffsetAndMetadata] = {}
        while not stop.is_set():
            self.health.beat()
            try:
                polled = self.consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
            except KafkaError as exc:
                log.warning("kafka poll: %s", exc)
                stop.wait(BACKOFF_INITIAL_S)
                continue
            now = self.clock()
            for tp, messages in polled.items():
                for m in messages:
                    self._take(m.value, f"{tp.topic}[{tp.partition}]@{m.offset}", now)
                    pending[tp] = OffsetAndMetadata(m.offset + 1, "", -1)
            try:
                self._post_due(now)
            except AlertmanagerUnavailable as exc:
                failures += 1
                delay = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** (failures - 1))
                self.health.set_ready(False, "alertmanager unavailable")
                log.warning("%s (attempt %d); retrying in %.1f s", exc, failures, delay)
                stop.wait(delay)
                continue  # offsets stay uncommitted until the pages they caused are posted
            if failures:
                log.info("alertmanager reached after %d failed attempts", failures)
            failures = 0
            self.health.set_ready(True)
            if pending:
                with contextlib.suppress(KafkaError):  # a rebalance: the alerts come again
                    self.consumer.commit(pending)
                pending = {}
        self.consumer.close(autocommit=False)

    def _take(self, value: bytes | None, where: str, now: float) -> None:
        self.metrics.consumed.inc()
        alert = parse_alert(value)
        if alert is None:
            self.metrics.invalid.inc()
            log.warning("%s is not an alert.v1 record: skipped", where)
            return
        if self.book.observe(alert, now):
            log.info(
                "page %s %s %s (%s accounts)",
                alert["severity"],
                alert["type"],
                alert["subject_id"],
                alert.get("account_count", "?"),
            )

    def _post_due(self, now: float) -> None:
        outgoing = self.book.outbox(now)
        if outgoing:
            payload = [to_alertmanager(o.page, o.ends_at) for o in outgoing]
            errors = post_alerts(self.settings.alertmanager_urls, payload, self.settings.timeout_s)
            self.metrics.post_errors.inc(len(errors))
            for error in errors:
                log.warning("alertmanager %s", error)
            if len(errors) == len(self.settings.alertmanager_urls):
                raise AlertmanagerUnavailable(
                    f"no Alertmanager took {len(payload)} alerts: {errors[0]}"
                )
            for o in outgoing:
                self.metrics.posted.labels("resolved" if o.resolved else "firing").inc()
                if o.resolved:
                    log.info("resolved %s %s: quiet", o.page.key[1], o.page.key[0])
        self.book.sent(outgoing, now)
        self.metrics.open_pages.set(len(self.book.open))
        for severity, count in self.book.active_campaigns(now).items():
            self.metrics.active_campaigns.labels(severity).set(count)


def run_pager(
    settings: Settings,
    stop: threading.Event,
    registry: CollectorRegistry | None = None,
    on_started: Callable[[int], None] | None = None,
) -> None:
    """``detector pager``: until ``stop`` is set."""
    registry = registry if registry is not None else CollectorRegistry()
    health = Health()
    server = HealthServer(settings.metrics.host, settings.metrics.port, registry, health).start()
    if on_started:
        on_started(server.port)
    try:
        pager = Pager(settings.kafka, settings.pager, PagerMetrics(registry), health)
        log.info(
            "paging %s %s alerts from %s to %s; metrics on http://%s:%d/metrics",
            "/".join(settings.pager.severities),
            "/".join(settings.pager.subject_types),
            settings.kafka.alerts_topic,
            ", ".join(settings.pager.alertmanager_urls),
            settings.metrics.host,
            server.port,
        )
        health.set_ready(True)
        pager.run(stop)
    finally:
        server.stop()

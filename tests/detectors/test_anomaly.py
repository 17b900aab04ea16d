"""The shared anomaly model and the detector suite's checkpoint."""

from __future__ import annotations

import base64
import math
import pickle
import zlib

import pytest

from detector.config import Settings
from detector.detectors.anomaly import FEATURE_LIMITS, AnomalyDetector, account_features
from detector.detectors.suite import CHECKPOINT_FORMAT, DetectorSuite
from detector.state.account import Distinct, Snapshot
from detector.state.profile import Profile, behaviour_of

S = Settings().with_overrides(anomaly={"every_events": 1})  # every snapshot, unless a test says
WINDOWS = S.state.windows_s
SHAPE = (S.anomaly.n_trees, S.anomaly.height, S.anomaly.window_size)


def snap(
    req_1h: float,
    *,
    events: int = 100,
    completed_hour: int | None = None,
    distinct: int = 1,
    shares: float | None = None,
) -> Snapshot:
    behaviour = behaviour_of(Profile())  # what a fresh account's behaviour looks like
    if shares is not None:
        behaviour.update(dict.fromkeys(("dup", "harvest", "at_limit", "single_turn"), shares))
        behaviour["hour_flatness"] = shares
    return Snapshot(
        account_id="a",
        event_id="e",
        ts=1_700_000_000.0,
        events=events,
        first_seen=1_700_000_000.0 - 86400,
        account_age_s=None,
        requests=(req_1h / 10, req_1h, req_1h * 10),
        tokens=(req_1h * 10, req_1h * 100, req_1h * 1000),
        rate_per_hour=req_1h,
        distinct=Distinct(distinct, distinct, distinct),
        completed_hour=completed_hour,
        late=False,
        behaviour=behaviour,
    )


def outlier(events: int = 100) -> Snapshot:
    """Far outside what ``normal`` snapshots look like on every feature."""
    return snap(5000.0, events=events, distinct=500, shares=1.0)


def normal(i: int) -> Snapshot:
    return snap(1.0 + i % 3, completed_hour=5 + i % 4)


def step(det: AnomalyDetector | DetectorSuite, s: Snapshot, flagged: bool = False) -> dict:
    if isinstance(det, DetectorSuite):
        _, ctx = det.evaluate(s)
    else:
        ctx = {}
        det.evaluate(s, ctx)
    det.learn(s, flagged)
    return ctx


def trained(n: int = 300) -> AnomalyDetector:
    det = AnomalyDetector(S.anomaly, S.state)
    for i in range(n):
        step(det, normal(i))
    return det


def test_account_features_bounded_and_complete() -> None:
    x = account_features(snap(1e9), WINDOWS)
    assert set(x) == set(FEATURE_LIMITS)
    for k, v in x.items():
        lo, hi = FEATURE_LIMITS[k]
        assert lo <= v <= hi
    assert x["log_req_1h"] == FEATURE_LIMITS["log_req_1h"][1]  # clipped
    assert account_features(snap(0.0), WINDOWS)["log_tokens_per_req"] == 0.0
    assert account_features(snap(4.0), WINDOWS)["log_tokens_per_req"] == math.log1p(100.0)
    assert account_features(snap(1.0, shares=1.5), WINDOWS)["dup"] == 1.0  # shares clipped too


def test_learns_normal_snapshots_and_reports_context() -> None:
    det = AnomalyDetector(S.anomaly, S.state)
    ctx = step(det, normal(0))
    assert det.learned == 1
    assert ctx["anomaly"]["learned_events"] == 0
    assert set(ctx["anomaly"]["features"]) == set(FEATURE_LIMITS)
    for i in range(1, 20):
        step(det, normal(i))
    assert det.learned == 20


def test_does_not_learn_when_flagged() -> None:
    det = AnomalyDetector(S.anomaly, S.state)
    step(det, normal(0), flagged=True)
    assert det.learned == 0


def test_learn_without_evaluate_is_a_no_op() -> None:
    det = AnomalyDetector(S.anomaly, S.state)
    det.learn(normal(0), False)
    assert det.learned == 0
    step(det, normal(0))
    det.learn(normal(0), False)  # the evaluated snapshot was already consumed
    assert det.learned == 1


def test_high_score_is_flagged_and_not_learned() -> None:
    det = trained()
    before = det.learned
    assert before >= S.anomaly.window_size
    ctx: dict = {}
    f = det.evaluate(outlier(), ctx)
    score = ctx["anomaly"]["score"]
    assert score >= S.anomaly.learn_below_score
    det.learn(outlier(), flagged=False)
    assert det.learned == before  # protected: an outlier never becomes normal
    assert f is not None
    assert f.type == "anomaly"
    assert f.severity == "low"
    assert f.score >= S.anomaly.alert_score


def test_no_anomaly_finding_before_warm_up_or_for_few_events() -> None:
    det = trained(20)
    assert det.evaluate(outlier(), {}) is None  # model not warmed up
    det = trained()
    assert det.evaluate(outlier(events=S.anomaly.min_events - 1), {}) is None
    assert det.evaluate(outlier(events=S.anomaly.min_events), {}) is not None


def test_only_every_nth_event_of_an_account_is_scored_and_learned() -> None:
    det = AnomalyDetector(S.anomaly.model_copy(update={"every_events": 4}), S.state)
    scored = []
    for events in range(1, 13):
        ctx: dict = {}
        det.evaluate(snap(1.0, events=events), ctx)
        det.learn(snap(1.0, events=events), False)
        scored.append("anomaly" in ctx)
    assert [i + 1 for i, hit in enumerate(scored) if hit] == [4, 8, 12]
    assert det.learned == 3


def test_suite_runs_anomaly_first_and_both_detectors() -> None:
    suite = DetectorSuite(S)
    findings, ctx = suite.evaluate(snap(2000.0))
    assert "anomaly" in ctx
    assert [f.type for f in findings] == ["volume_spike"]  # anomaly model not warmed up


def test_suite_respects_enabled_flags() -> None:
    suite = DetectorSuite(S.with_overrides(anomaly={"enabled": False}))
    findings, ctx = suite.evaluate(snap(2000.0))
    assert "anomaly" not in ctx
    assert [f.type for f in findings] == ["volume_spike"]
    suite = DetectorSuite(S.with_overrides(volume_rule={"enabled": False}))
    findings, ctx = suite.evaluate(snap(2000.0))
    assert findings == []
    assert "anomaly" in ctx


def test_checkpoint_restore_round_trip() -> None:
    suite = DetectorSuite(S)
    for i in range(60):
        step(suite, normal(i))
    assert suite.anomaly.learned == 60
    assert suite.baseline.samples == 60
    blob = suite.checkpoint()
    assert isinstance(blob, str)
    blob.encode("ascii")

    other = DetectorSuite(S)
    assert other.restore(blob) is True
    assert other.anomaly.learned == 60
    assert other.baseline.samples == 60
    assert other.baseline.median == suite.baseline.median
    probe = snap(7.0)
    _, ctx_a = suite.evaluate(probe)
    _, ctx_b = other.evaluate(probe)
    assert ctx_a["anomaly"]["score"] == ctx_b["anomaly"]["score"]


def test_restore_refuses_another_model_shape() -> None:
    suite = DetectorSuite(S)
    for i in range(10):
        step(suite, normal(i))
    other = DetectorSuite(S.with_overrides(anomaly={"n_trees": 3}))
    assert other.restore(suite.checkpoint()) is False
    assert other.anomaly.learned == 0
    assert other.baseline.samples == 0
    assert other.anomaly.model.n_trees == 3


def test_restore_refuses_garbage() -> None:
    suite = DetectorSuite(S)
    assert suite.restore("not a checkpoint!") is False
    assert suite.restore("") is False
    assert suite.anomaly.learned == 0


def _blob(raw: bytes) -> str:
    return base64.b64encode(zlib.compress(raw)).decode("ascii")


@pytest.mark.parametrize(
    "raw",
    [
        b"\x80\x04cno_such_module_for_the_test\nThing\n.",  # ModuleNotFoundError
        pickle.dumps([1, 2, 3]),  # AttributeError: 'list' object has no attribute 'get'
        pickle.dumps({"format": CHECKPOINT_FORMAT, "shape": SHAPE}),  # KeyError: 'model'
    ],
    ids=["missing-class", "not-a-dict", "missing-keys"],
)
def test_restore_ignores_a_checkpoint_it_cannot_use(raw: bytes) -> None:
    suite = DetectorSuite(S)
    assert suite.restore(_blob(raw)) is False
    assert suite.anomaly.learned == 0

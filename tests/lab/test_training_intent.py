"""The intent trainer: the labelled corpus, a seeded fit that learns a separable toy problem,
thresholds, scores, and the weights and report it writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detector.features.intent import BIT, names
from detector.features.intent_model import IntentModel
from detector_lab.sim import text
from detector_lab.training import intent
from detector_lab.training.intent import Example, Training

TOY = Training(bits=10, epochs=20, batch_size=8, seed=1)


def toy() -> list[Example]:
    """Rubric requests and weather questions: separable by the words they use."""
    graded = [f"grade answer {i} against the rubric, score each criterion" for i in range(20)]
    weather = [f"will it rain in town number {i} tomorrow morning?" for i in range(20)]
    return [Example(p, "en", "campaign/rubric", BIT["rubric"]) for p in graded] + [
        Example(p, "en", "honest/chat", 0) for p in weather
    ]


def test_fit_is_seeded_and_separates_a_toy_problem() -> None:
    examples = toy()
    features = intent.featurise([e.prompt for e in examples], TOY.bits, TOY.max_chars)
    labels = intent.label_matrix(examples)
    weights, bias = intent.fit(features, labels, TOY)
    again, again_bias = intent.fit(features, labels, TOY)
    np.testing.assert_array_equal(weights, again)
    np.testing.assert_array_equal(bias, again_bias)
    column = intent.TAGS.index("rubric")
    rubric, wanted = intent.logits_of(features, weights, bias)[:, column], labels[:, column] > 0
    assert rubric[wanted].min() > rubric[~wanted].max()


def test_trained_model_tags_the_toy_by_its_thresholds() -> None:
    examples = toy()
    model = intent.train(examples, TOY)
    assert np.isfinite(model.thresholds[intent.TAGS.index("rubric")])
    assert np.isinf(model.thresholds[intent.TAGS.index("coding")])  # no positive: never set
    got = model.tags([e.prompt.lower() for e in examples])
    assert got == [e.tags for e in examples]


@pytest.mark.parametrize("half", ["tune", "test"])
def test_corpus_labels_what_each_generator_meant(half: text.Half) -> None:
    examples = intent.corpus(half, 2, seed=5)
    assert examples == intent.corpus(half, 2, seed=5)
    assert {e.language for e in examples} == set(text.LANGUAGES)
    for e in examples:
        kind = e.source.split("/")[1]
        if e.source.startswith("campaign/"):
            assert names(e.tags) == sorted(intent.CAMPAIGN_TAGS[kind], key=intent.TAGS.index)
        elif kind in intent.HONEST_TAGS:
            assert names(e.tags) == list(intent.HONEST_TAGS[kind])
        else:  # prose, follow-ups and batch items
            assert e.tags == 0
    assert {e.source for e in examples} >= {"honest/batch", "honest/prose", "honest/followup"}


def test_measure_counts_per_tag_and_language() -> None:
    examples = [
        Example("a", "en", "campaign/rubric", BIT["rubric"]),
        Example("b", "en", "honest/chat", 0),
        Example("c", "zh", "campaign/tool_use", BIT["tool_use"]),
    ]
    predicted = {"model": np.array([BIT["rubric"], BIT["rubric"], 0])}
    scores = intent.measure(examples, predicted)
    assert scores["model", "rubric", "en"] == intent.Score(1, 1, 0)
    assert scores["model", "tool_use", "zh"] == intent.Score(0, 0, 1)
    assert scores["model", "harvest", "all"] == intent.Score(1, 1, 1)
    assert scores["model", "harvest", "all"].precision == 0.5


def test_main_writes_weights_and_a_report_without_prompt_text(tmp_path: Path) -> None:
    out, report = tmp_path / "m.npz", tmp_path / "r.md"
    assert intent.main(["--out", str(out), "--report", str(report), "--per-source", "2"]) == 0
    assert IntentModel.load(out).bits == Training().bits
    written = report.read_text(encoding="utf-8")
    assert "test phrase half" in written and "chosen on tune only" in written
    for e in intent.corpus("test", 2, intent.TEST_SEED):  # the prompts it was measured on
        assert len(e.prompt) < 30 or e.prompt not in written

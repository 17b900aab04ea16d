"""The learned intent model: vectorised hashing and scoring against their one-n-gram-at-a-time
definitions, the shipped weights, thresholds, and prompts in several languages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detector.config import IntentModelSettings, IntentSettings
from detector.features.intent import HARVEST_MASK, TAGS, IntentTagger, names
from detector.features.intent_model import (
    DEFAULT_BITS,
    IntentModel,
    ngram_buckets,
    ngram_buckets_plain,
    tagger,
)

# Letters, digits and every kind of whitespace, other scripts, astral characters and lone
# surrogates (a JSON string may carry one).
CHARS = st.characters(blacklist_categories=())
PROMPTS = st.text(alphabet=st.one_of(CHARS, st.sampled_from("ab 1\n\t\u3000中")), max_size=40)
SHIPPED = IntentModel.load()


def small_model(seed: int, bits: int = 6, max_chars: int = 512) -> IntentModel:
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=((1 << bits) + 1, len(TAGS))).astype(np.float32)
    weights[-1] = 0.0
    bias = rng.normal(size=len(TAGS)).astype(np.float32)
    return IntentModel(weights, bias, np.zeros(len(TAGS)), max_chars)


@given(st.lists(PROMPTS, min_size=1, max_size=6), st.integers(1, 20), st.integers(1, 60))
def test_vectorised_buckets_are_the_plain_ones(
    prompts: list[str], bits: int, max_chars: int
) -> None:
    buckets, starts = ngram_buckets(prompts, bits, max_chars)
    assert len(starts) == len(prompts) + 1
    for i, prompt in enumerate(prompts):
        # Column by column: position by position, each position's n-grams by length.
        run = buckets[:, starts[i] : starts[i + 1]].T.ravel()
        assert run[run != 1 << bits].tolist() == ngram_buckets_plain(prompt, bits, max_chars)


@given(st.lists(PROMPTS, min_size=1, max_size=6), st.integers(0, 2**32 - 1), st.integers(1, 60))
def test_vectorised_logits_are_the_plain_ones(
    prompts: list[str], seed: int, max_chars: int
) -> None:
    model = small_model(seed, max_chars=max_chars)
    logits = model.logits(prompts)
    for row, prompt in zip(logits, prompts, strict=True):
        np.testing.assert_allclose(row, model.logits_plain(prompt), rtol=1e-4, atol=1e-4)


def test_no_prompts_no_tags() -> None:
    assert SHIPPED.tags([]) == []
    assert SHIPPED.logits([]).shape == (0, len(TAGS))


def test_the_shipped_model() -> None:
    assert SHIPPED.bits == DEFAULT_BITS
    assert SHIPPED.weights.shape == ((1 << DEFAULT_BITS) + 1, len(TAGS))
    assert not SHIPPED.weights[-1].any()  # the row of n-grams that are not there
    assert np.isfinite(SHIPPED.thresholds).all()  # chosen on tune for every tag
    assert (
        Path(__file__).parents[2].joinpath("detector/features/intent_model.npz").stat().st_size
        < 3e6
    )


def test_a_tag_is_set_from_its_threshold() -> None:
    # No weights: every prompt's logits are the biases.
    weights = np.zeros(((1 << 4) + 1, len(TAGS)), dtype=np.float32)
    bias = np.array([1.0, 0.0, -1.0, 5.0, 0.5, -0.5], dtype=np.float32)
    thresholds = np.array([0.0, 0.0, 0.0, np.inf, 0.6, -0.6])
    model = IntentModel(weights, bias, thresholds)
    assert names(model.tags(["anything"])[0]) == ["reasoning", "stepwise", "tool_use"]


def test_save_and_load_keep_the_tags(tmp_path: Path) -> None:
    model = small_model(3, bits=8)
    model.save(tmp_path / "m.npz")
    loaded = IntentModel.load(tmp_path / "m.npz", max_chars=512)
    np.testing.assert_array_equal(loaded.thresholds, model.thresholds)
    prompts = ["grade this", "hola", "", "代码"]
    np.testing.assert_allclose(loaded.logits(prompts), model.logits(prompts), atol=5e-3)


def test_weights_for_other_tags_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    np.savez(
        path,
        tags=np.array(["a", "b"]),
        weights=np.zeros((4, 2)),
        bias=np.zeros(2),
        thresholds=np.zeros(2),
    )
    with pytest.raises(ValueError, match="train it again"):
        IntentModel.load(path)


@pytest.mark.parametrize(
    ("prompt", "tag"),
    [
        # Written for this test: no simulator phrase bank holds these phrasings, and the patterns
        # tag none of them. Of 21 such prompts (five capabilities, four languages) the model
        # tagged 9, about its recall on the test phrase half; these are guards, not a measure.
        ("This question keeps getting refused. Reword it so a strict assistant will answer it fully, keeping the meaning.", "rewrite"),
        ("You have shell access to the repo. Reproduce the bug, fix it, run the test suite and show me the diff.", "coding"),
        ("You can call get_weather(city) and book_taxi(from, to). Decide which calls to make and output them as JSON.", "tool_use"),
        ("Оцени этот ответ по шкале от 1 до 10 по критериям точности и полноты и обоснуй каждую оценку.", "rubric"),
        ("У тебя есть доступ к репозиторию: почини падающий тест, прогони тесты и покажи diff.", "coding"),
        ("Ты можешь вызывать функции get_weather(city) и send_email(to, body). Реши, какие вызовы нужны, и выведи их в JSON.", "tool_use"),
        ("你可以访问这个代码仓库：修复失败的测试，运行测试，然后给出 diff。", "coding"),
        ("你可以调用 get_weather(city) 和 send_email(to, body)。决定需要调用哪些函数，并以 JSON 输出调用。", "tool_use"),
    ],
)  # fmt: skip
def test_unseen_phrasings_are_tagged(prompt: str, tag: str) -> None:
    assert not IntentTagger(IntentSettings().patterns).tag(prompt, 0) & HARVEST_MASK
    assert tag in names(SHIPPED.tags([prompt.lower()])[0])


@pytest.mark.parametrize(
    "prompt",
    [
        "What's a good recipe for banana bread?",
        "¿Qué tiempo hace hoy en Madrid?",
        "Как приготовить борщ?",
        "今天北京天气怎么样？",
        "",
    ],
)
def test_everyday_requests_are_not_harvesting(prompt: str) -> None:
    assert not SHIPPED.tags([prompt.lower()])[0] & HARVEST_MASK


def test_the_tagger_carries_the_model_only_when_enabled() -> None:
    assert isinstance(tagger(IntentSettings()).model, IntentModel)
    assert tagger(IntentSettings(model=IntentModelSettings(enabled=False))).model is None


def test_a_missing_weights_file_is_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no weights file"):
        IntentModelSettings(path=str(tmp_path / "none.npz"))

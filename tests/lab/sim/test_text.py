"""Simulator text: defaults unchanged, disjoint tune/test halves, native languages, and
paraphrased campaigns that share neither an opening nor a SimHash neighbourhood."""

from __future__ import annotations

import collections
import random
import re

import pytest

from detector.config import StateSettings
from detector.features.text import hamming, normalise, simhash
from detector_lab.sim import text

SAMPLES = 500
_SLOT = re.compile(r"\{\w+\}")
_SCRIPT = {
    "zh": re.compile(r"[\u4e00-\u9fff]"),
    "ru": re.compile(r"[а-яё]", re.IGNORECASE),
    "es": re.compile(r"[áéíóúñ¿¡]|\b(?:el|la|los|las|que|por|para|una?)\b", re.IGNORECASE),
    "en": re.compile(r"\b(?:the|a|and|to|of|is|it|you|my|me|this|what|how|why)\b", re.IGNORECASE),
}
# Coding-agent turns are often bare tool output (test logs, diffs), in no language.
_LANGUAGE_FREE_KINDS = {"coding_agent"}


def _opening(prompt: str, language: str) -> str:
    """A prompt's first five words, numbers masked; in Chinese its first ten Han characters."""
    if language == "zh":
        return "".join(re.findall(r"[\u4e00-\u9fff]", prompt))[:10]
    return " ".join(re.sub(r"\d+", "0", prompt.lower()).split()[:5])


def test_defaults_are_the_original_draws() -> None:
    """Left at their defaults, the functions draw exactly as before issue 29."""
    got, want = random.Random(7), random.Random(7)
    sentences = text.corpus()
    for _ in range(100):
        start = want.randrange(len(sentences))
        n = 1 + min(int(want.expovariate(0.8)), 3)
        frame = want.choice(text._HONEST_FRAMES)
        assert text.honest_prompt(got) == frame.format(t=" ".join(sentences[start : start + n]))
        followup = want.choice(text._CHAT_FOLLOWUPS).format(w=want.choice(text._words()))
        assert text.followup(got) == followup
        template = want.choice(text.HARVEST_TEMPLATES["rubric"])
        numbers = dict(n=want.randrange(10**6), s=sentences[want.randrange(len(sentences))])
        numbers |= dict(w=want.choice(text._words()))
        numbers |= {k: want.randint(2, 9) for k in "abcde"}
        assert text.harvest_prompt(got, "rubric") == template.format(**numbers)
    assert text.house_style(got) == want.choice(text.HOUSE_STYLES)


def test_every_bank_splits_into_two_disjoint_nonempty_halves() -> None:
    banks = text.phrase_banks()
    assert len(banks) > 300
    for path, bank in banks.items():
        assert bank.tune and bank.test, path
        assert not set(bank.tune) & set(bank.test), path
        assert set(bank.tune) | set(bank.test) == set(bank.items), path
        assert all(text.half_of(item) == "tune" for item in bank.tune), path


def test_every_language_has_the_same_banks() -> None:
    banks = text.phrase_banks()
    paths = {
        language: {p.split("/", 1)[1] for p in banks if p.startswith(f"{language}/")}
        for language in text.LANGUAGES
    }
    assert all(paths[language] == paths["en"] for language in text.LANGUAGES)
    for capability in text.CAPABILITIES:
        for part in ("templates", "framing", "instruction", "constraint", "slots", "role"):
            assert len(banks[f"zh/campaign/{capability}/{part}"].items) >= 8 or part == "slots"
    for part in ("lead", "opening", "closing"):
        assert all(len(banks[f"{lang}/campaign/{part}"].items) >= 8 for lang in text.LANGUAGES)


@pytest.mark.parametrize("language", text.LANGUAGES)
def test_prompts_are_written_in_their_language(language: str) -> None:
    rng = random.Random(1)
    script = _SCRIPT[language]
    for capability in text.CAPABILITIES:
        for paraphrase in (False, True):
            for _ in range(40):
                prompt = text.harvest_prompt(
                    rng, capability, language=language, paraphrase=paraphrase
                )
                assert script.search(prompt), prompt
    for kind in text.HONEST_KINDS:
        prompts = [text.honest_request(rng, kind, language=language) for _ in range(60)]
        written = sum(bool(script.search(p)) for p in prompts)
        # Short ones ("Source (Russian): ... Target (German):") may hold no marker word.
        assert written >= (20 if kind in _LANGUAGE_FREE_KINDS else 48), kind
    for workload in text.WORKLOADS:
        if workload != "coding_agent_client":  # the client's fixed prompt is English
            assert script.search(text.system_prompt(rng, workload, language=language))
    followups = [text.followup(rng, language=language) for _ in range(60)]
    assert sum(bool(script.search(f)) for f in followups) >= 30  # "why?" has no marker
    assert text.honest_prompt(rng, language=language, source="everyday")


def test_no_slot_is_left_unfilled() -> None:
    rng = random.Random(2)
    placeholders = {"{count}", "{username}", "{days}", "{date}", "{query}"}  # UI strings' own
    prompts = []
    for language in text.LANGUAGES:
        for half in (None, "tune", "test"):
            for capability in text.CAPABILITIES:
                for i in range(60):
                    prompts.append(
                        text.harvest_prompt(
                            rng, capability, i, half=half, language=language, paraphrase=i % 2 == 0
                        )
                    )
            for kind in text.HONEST_KINDS:
                if kind != "coding_agent":  # code may hold braces of its own
                    prompts += [
                        text.honest_request(rng, kind, half=half, language=language)
                        for _ in range(60)
                    ]
            prompts += [text.followup(rng, half=half, language=language) for _ in range(30)]
            prompts += [
                text.system_prompt(rng, w, half=half, language=language) for w in text.WORKLOADS
            ]
    for prompt in prompts:
        assert set(_SLOT.findall(prompt)) <= placeholders, prompt


@pytest.mark.parametrize("language", text.LANGUAGES)
@pytest.mark.parametrize("capability", text.CAPABILITIES)
def test_paraphrased_prompts_do_not_share_openings(language: str, capability: str) -> None:
    rng = random.Random(3)
    prompts = [
        text.harvest_prompt(rng, capability, language=language, paraphrase=True)
        for _ in range(SAMPLES)
    ]
    counts = collections.Counter(_opening(p, language) for p in prompts)
    shared = sum(n for n in counts.values() if n > 1)
    assert shared / SAMPLES < 0.05


# The project's SimHash tokenises ASCII words only: Chinese and Russian prompts have too few
# of them for a SimHash to separate, whatever their wording, so only en and es are measured.
@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("capability", text.CAPABILITIES)
def test_paraphrased_prompts_are_not_near_duplicates(language: str, capability: str) -> None:
    near = StateSettings().near_duplicate_bits  # the template-chain feature's "same template"
    rng = random.Random(4)
    hashes = [
        simhash(normalise(text.harvest_prompt(rng, capability, language=language, paraphrase=True)))
        for _ in range(SAMPLES)
    ]
    pairs = [rng.sample(range(SAMPLES), 2) for _ in range(3000)]
    close = sum(hamming(hashes[i], hashes[j]) <= near for i, j in pairs)
    assert close / len(pairs) < 0.05
    # One templated campaign, by contrast, repeats its template: its prompts are closer.
    templated = [
        simhash(normalise(text.harvest_prompt(rng, capability, 0, language=language)))
        for _ in range(SAMPLES)
    ]
    mean = sum(hamming(hashes[i], hashes[j]) for i, j in pairs) / len(pairs)
    assert sum(hamming(templated[i], templated[j]) for i, j in pairs) / len(pairs) < mean


def _fragments(item: str, shortest: int) -> list[str]:
    """The literal pieces of a bank item between its slots."""
    return [f.strip() for f in _SLOT.split(item) if len(f.strip()) >= shortest]


def test_test_half_never_uses_tune_only_text() -> None:
    banks = text.phrase_banks()
    test_material = "\x00".join(item for bank in banks.values() for item in bank.test)
    tune_only = {
        fragment
        for bank in banks.values()
        for item in bank.tune
        for fragment in _fragments(item, 12)
        if fragment not in test_material
    }
    assert len(tune_only) > 1000
    rng = random.Random(5)
    prompts = []
    for language in text.LANGUAGES:
        for capability in text.CAPABILITIES:
            for i in range(80):
                prompts.append(
                    text.harvest_prompt(
                        rng,
                        capability,
                        i,
                        text.house_style(rng, half="test"),
                        half="test",
                        language=language,
                        paraphrase=i % 2 == 1,
                    )
                )
        for kind in text.HONEST_KINDS:
            prompts += [
                text.honest_request(rng, kind, half="test", language=language) for _ in range(60)
            ]
        for source in text.HONEST_SOURCES:
            prompts += [
                text.honest_prompt(rng, half="test", source=source, language=language)
                for _ in range(40)
            ]
        prompts += [text.followup(rng, half="test", language=language) for _ in range(40)]
        prompts += [
            text.system_prompt(rng, w, half="test", language=language)
            for w in text.WORKLOADS
            for _ in range(5)
        ]
    joined = "\x00".join(prompts)
    leaked = [fragment for fragment in tune_only if fragment in joined]
    assert not leaked, leaked[:5]


def test_coding_agent_client_prompt_is_one_long_fixed_string() -> None:
    prompts = {
        text.system_prompt(random.Random(seed), "coding_agent_client", language=language)
        for seed in range(20)
        for language in text.LANGUAGES
    }
    assert len(prompts) == 1 and len(prompts.pop()) >= 600
    tune = text.system_prompt(random.Random(0), "coding_agent_client", half="tune")
    test = text.system_prompt(random.Random(0), "coding_agent_client", half="test")
    assert tune != test and min(len(tune), len(test)) >= 600


def test_honest_sources_are_unrelated_corpora() -> None:
    assert {"pydoc", "email_http", "everyday"} <= set(text.HONEST_SOURCES)
    corpora = {
        source: set(text.source_sentences(source))
        for source in text.HONEST_SOURCES
        if source != "everyday"
    }
    for source, sentences in corpora.items():
        assert len(sentences) > 300, source
        for other, others in corpora.items():
            if other != source:
                assert len(sentences & others) < 0.05 * len(sentences), (source, other)
    rng = random.Random(6)
    for source in text.HONEST_SOURCES:
        assert text.honest_prompt(rng, source=source) != text.honest_prompt(rng, source=source)
    with pytest.raises(ValueError):
        text.honest_prompt(rng, source="nonexistent")


def test_translation_sources_come_in_every_language() -> None:
    rng = random.Random(7)
    seen = set()
    for _ in range(300):
        job = text.honest_request(rng, "translation", language="en")
        for language in ("zh", "ru"):
            if _SCRIPT[language].search(job):
                seen.add(language)
        if re.search(r"[áéíóúñ¿¡]", job):
            seen.add("es")
    assert seen == {"zh", "ru", "es"}


def test_honest_traffic_uses_campaign_words_and_campaigns_avoid_them() -> None:
    """The traps run both ways: honest benchmark items say "step by step" and "show your
    work"; many reasoning-harvest prompts say neither "step" nor "reason"."""
    rng = random.Random(8)
    honest = [text.honest_request(rng, "benchmark_reasoning") for _ in range(300)]
    assert sum("step by step" in p for p in honest) > 30
    assert sum(re.search(r"show your (?:work|reasoning)", p, re.I) is not None for p in honest) > 10
    for language in ("en", "es"):
        harvest = [
            text.harvest_prompt(rng, "reasoning", language=language, paraphrase=True)
            for _ in range(300)
        ]
        plain = [p for p in harvest if not re.search(r"step|reason|paso|razon", p, re.I)]
        assert len(plain) > 100


def test_unknown_arguments_are_refused() -> None:
    rng = random.Random(9)
    with pytest.raises(ValueError):
        text.harvest_prompt(rng, "reasoning", language="fr")
    with pytest.raises(ValueError):
        text.harvest_prompt(rng, "mind_reading")
    with pytest.raises(ValueError):
        text.honest_request(rng, "poetry")
    with pytest.raises(ValueError):
        text.system_prompt(rng, "astrology", half="test")
    with pytest.raises(ValueError):
        text.followup(rng, half="train")  # type: ignore[arg-type]

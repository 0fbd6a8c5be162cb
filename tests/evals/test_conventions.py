"""Each benchmark states its published prompt, generation budget and reference, and its identity.

The figures are the published ones: LLaVA-1.5's ``model_vqa_loader.py`` default of 128
new tokens (GQA, POPE, MME, TextVQA), its ``model_vqa_science.py`` and
``model_vqa_mmbench.py`` 1024, and lmms-eval's task YAMLs for the others.
"""

from __future__ import annotations

import json

import pytest

from sweep.errors import SweepError
from sweep.evals import benchmark_class, benchmark_names

PUBLISHED_MAX_NEW_TOKENS = {
    "gqa": 128, "pope": 128, "mme": 128, "textvqa": 128, "scienceqa_img": 1024, "mmbench": 1024,
    "ai2d": 16, "chartqa": 16, "mmmu": 16, "ocrbench": 128, "docvqa": 128, "mathvista": 1024,
}  # fmt: skip
LLAVA_PROMPTS = {"gqa", "pope", "scienceqa_img", "mmbench", "mme", "textvqa"}


def test_every_benchmark_states_its_published_setup() -> None:
    assert sorted(PUBLISHED_MAX_NEW_TOKENS) == benchmark_names()
    for name in benchmark_names():
        cls = benchmark_class(name)
        assert cls.max_new_tokens == PUBLISHED_MAX_NEW_TOKENS[name], name
        assert cls.prompt_source.startswith("LLaVA-1.5" if name in LLAVA_PROMPTS else "lmms-eval"), name
        assert cls.prompt_template and cls.reference and cls.scorer_version >= 1, name


def test_identity_holds_what_changes_results() -> None:
    cls = benchmark_class("pope")
    ident = cls.identity()
    assert ident == {
        "benchmark": "pope",
        "prompt": "{question}\nAnswer the question using a single word or phrase.",
        "scorer": {"reference": "LLaVA llava/eval/eval_pope.py", "version": cls.scorer_version},
        "generation": {"max_new_tokens": 128, "do_sample": False},
        "options": {"categories": ["adversarial", "popular", "random"], "headline": "accuracy"},
    }
    json.dumps(ident)  # JSON-able, for the job id
    # Paths are not part of it; result-changing options and the generation budget are.
    assert cls.identity(root="/elsewhere", annotations="other", images="imgs") == ident
    assert cls.identity(categories=["random"])["options"]["categories"] == ["random"]
    assert cls.identity(max_new_tokens=4)["generation"]["max_new_tokens"] == 4
    assert benchmark_class("textvqa").identity(ocr_tokens=False)["options"] == {"ocr_tokens": False}
    assert benchmark_class("gqa").identity()["options"] == {}


def test_identity_rejects_bad_options() -> None:
    with pytest.raises(SweepError, match="bad options"):
        benchmark_class("gqa").identity(nonsense=1)
    with pytest.raises(SweepError, match="max_new_tokens"):
        benchmark_class("gqa").identity(max_new_tokens=0)
    with pytest.raises(SweepError, match="max_new_tokens"):
        benchmark_class("gqa").identity(max_new_tokens="16")

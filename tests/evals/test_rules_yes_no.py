"""Yes/no rules against their references' verdicts, worked out by hand from the reference code.

- POPE: LLaVA ``llava/eval/eval_pope.py`` (text before the first ".", commas dropped,
  ``split(' ')``, "no" when a word is exactly ``No``, ``no`` or ``not``, else "yes");
- MME: the official ``eval_tool/calculation.py`` (``parse_pred_ans`` on the lower-cased
  reply: exactly yes/no, else "yes" / "no" inside its first four characters, else other).
"""

from __future__ import annotations

import pytest

from sweep.evals.benchmarks.mme import acc_plus, mme_answer
from sweep.evals.benchmarks.pope import binary_metrics, pope_says_yes, pope_unread


@pytest.mark.parametrize(
    ("reply", "says_yes"),
    [
        ("Yes", True),
        ("No", False),
        ("no.", False),
        ("not.", False),
        ("There is not a dog in the image.", False),
        ("Yes, there is a dog. No cat though.", True),  # only the first sentence counts
        ("No, there is no dog", False),
        ("Nope", True),  # not the word "no": POPE reads it as yes
        ("NO", True),  # case matters
        ("Not", True),
        ("No\n", True),  # "No\n" is one word after split(' ')
        ("no\tdog", True),
        ("No,there", True),  # the comma is dropped: "Nothere"
        ("cannot", True),
        ("I see a dog", True),
        ("", True),
        ("The answer is no", False),
    ],
)
def test_pope_like_llava(reply: str, says_yes: bool) -> None:
    assert pope_says_yes(reply) is says_yes


@pytest.mark.parametrize(
    ("reply", "unread"),
    [("Yes", False), ("YES.", False), ("No", False), ("not really", False), ("I see a dog", True), ("NO", True), ("", True)],
)
def test_pope_unread_means_yes_by_default(reply: str, unread: bool) -> None:
    assert pope_unread(reply) is unread


def test_binary_metrics_hand_computed() -> None:
    pred = [True, True, False, False, True]
    gold = [True, False, False, True, True]
    # TP=2 FP=1 TN=1 FN=1
    m = binary_metrics(pred, gold)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["yes_ratio"] == pytest.approx(3 / 5)
    never = binary_metrics([False, False], [True, False])
    assert never["precision"] == 0.0 and never["f1"] == 0.0 and never["accuracy"] == 0.5


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("Yes", "yes"),
        ("yes.", "yes"),
        ("YES!", "yes"),
        ("No", "no"),
        ("No.", "no"),
        ("Yes, there is a dog.", "yes"),
        ("No, there is not.", "no"),
        ("Not really", "no"),  # "no" within the first four characters
        ("nope", "no"),
        ("know", "no"),  # "know"[:4] holds "no"
        ("eyes", "yes"),  # "eyes"[:4] holds "yes"
        (" yes", "yes"),
        ("  yes", "other"),  # "  ye": the word starts too late
        ("\nno", "no"),
        ("Y", "other"),  # a lone letter is neither
        ("n", "other"),
        ("There is no dog", "other"),
        ("Maybe", "other"),
        ("", "other"),
    ],
)
def test_mme_like_the_official_tool(reply: str, answer: str) -> None:
    assert mme_answer(reply) == answer


def test_acc_plus_pairs() -> None:
    pairs = {"img1": [True, True], "img2": [True, False], "img3": [False, False], "img4": [True, True]}
    acc, plus = acc_plus(pairs)
    assert acc == pytest.approx(5 / 8)
    assert plus == pytest.approx(2 / 4)

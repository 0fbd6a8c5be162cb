"""The VQA answer normalisation (EvalAI / TextVQA evaluator rules), used by VQA accuracy.

``normalize_vqa_answer("Two dogs!")`` -> ``"2 dogs"``. The steps, in the order the
official evaluators apply them:

1. lower-case; drop ``,`` and ``?``; split a possessive ``'s`` off its word
   (``"man's"`` -> ``"man 's"``); newlines and tabs become spaces;
2. punctuation: each mark in ``_PUNCTUATION`` is deleted where it touches a space
   (``"hi !"``) and replaced by a space elsewhere (``"t-shirt"`` -> ``"t shirt"``);
   a period is deleted unless a digit follows it (``"3.5"`` keeps its point),
   every such period: the reference passes ``re.UNICODE`` (32) where ``re.sub``
   takes its count, so it stops after 32 periods, a bug we do not copy;
3. per word: number words up to ten become digits (``"none"`` is ``"0"``),
   the articles ``a``/``an``/``the`` are dropped, and apostrophe-less
   contractions get their apostrophe back (``"dont"`` -> ``"don't"``).

This is the processor (``EvalAIAnswerProcessor`` of TextVQA's m4c evaluator, as
LLaVA's ``llava/eval/m4c_evaluator.py`` copies it) that the TextVQA evaluator and
lmms-eval apply to both the prediction and the ten human answers. (The original VQA v2 script applies the
punctuation step to the human answers only when they disagree; for the answers in
these data sets the two give the same scores.)
"""

from __future__ import annotations

import re

_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")

# A comma between digits ("1,000") makes the punctuation step delete marks instead
# of spacing them, as the reference processor does.
_COMMA_BETWEEN_DIGITS = re.compile(r"(?<=\d),+(?=\d)")
# A period not followed by a digit ("end." but not "3.5"). The reference pattern
# reads "(?!<=\d)", a typo for a look-behind that in effect only checks what follows.
_PERIOD = re.compile(r"\.(?!\d)")

_NUMBERS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})

# The contractions the reference table knows, written with their apostrophes. The
# table maps each spelling with exactly one apostrophe missing back to the full form
# ("couldnt've" and "couldn'tve" -> "couldn't've"); it is built from this list below.
# Entries with capitals ("I'm") are left out: words are lower-cased before the lookup,
# so the reference table's capitalised keys never match anything.
_CONTRACTIONS_FULL = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've
hasn't haven't he'd he'd've he's how'd how'll how's isn't it'd it'd've it'll ma'am
mightn't mightn't've might've mustn't must've needn't not've o'clock oughtn't 'ow's'at
shan't she'd've should've shouldn't shouldn't've somebody'd've somebody'll somebody's
someone'd someone'd've someone'll someone's something'd something'd've something'll
that's there'd there'd've there're there's they'd they'd've they'll they're they've
'twas wasn't we'd've we've weren't what'll what're what's what've when's where'd where's
where've who'd who'd've who'll who's who've why'll why're why's won't would've wouldn't
wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've
""".split()


def _one_apostrophe_missing(word: str) -> list[str]:
    """Every spelling of ``word`` with exactly one of its apostrophes removed."""
    cuts = [i for i, ch in enumerate(word) if ch == "'"]
    return [word[:i] + word[i + 1 :] for i in cuts]


CONTRACTIONS: dict[str, str] = {
    short: full for full in _CONTRACTIONS_FULL for short in _one_apostrophe_missing(full)
}
# The reference table maps this one the other way round; kept so scores match it.
CONTRACTIONS["somebody'd"] = "somebodyd"


def _punctuation(text: str) -> str:
    out = text
    delete = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for mark in _PUNCTUATION:
        # Whether a mark touches a space is decided on the input text, as the
        # reference does, so a mark's fate does not depend on earlier replacements.
        if delete or f"{mark} " in text or f" {mark}" in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out)


def _words(text: str) -> str:
    words = [_NUMBERS.get(w, w) for w in text.lower().split()]
    words = [CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES]
    return " ".join(words)


def normalize_vqa_answer(answer: str) -> str:
    """Normalise one answer (prediction or human answer) for VQA accuracy."""
    text = answer.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _words(_punctuation(text))

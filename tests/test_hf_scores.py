"""Every paper benchmark's score, end to end, against a hand-computed value.

A tiny Qwen2 is crafted (``helpers.save_fixed_answer_qwen``) so that greedy generation
answers "Yes" to every prompt, with or without an image; a few records per benchmark
are written in the benchmark's release format with gold answers chosen so that the
constant answer "Yes" earns a known, non-trivial score. ``python -m sweep +grid=paper``
then runs stage 1 (connector only, the LLM frozen), stage 2 (lr 1e-6: the grid refuses
lr 0, and Adam moves a weight by about lr per step, far below the logit margins) and
eval on the CPU, and MLflow must hold exactly the scores in ``EXPECTED``.

Why "Yes" and not a letter: a constant letter cannot score anything on MME (it is
neither yes nor no) nor on MMBench's CircularEval (rotating the options moves the
right letter, so a fixed letter misses some copy of every question); "Yes" earns
points on most benchmarks: yes/no benchmarks directly, MMBench through the
option-text rule of VLMEvalKit's ``can_infer``, VQA / relaxed / containment matches
on annotators' "yes" answers. Where the reference reads letters only (AI2D,
ScienceQA) it scores 0 and every reply counts as unparsed.

Besides the headline, MLflow must hold each benchmark's ``unparsed`` share and the
headline conventions (POPE's mean F1, MME's totals, OCRBench out of 1000, MMBench's
circular accuracy), each worked out by hand below.

Run: ``.venv/bin/pytest -m '' tests/test_hf_scores.py -q``
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from PIL import Image

from helpers import (TOKENIZER_TEXT, run_paper_cli, save_fixed_answer_qwen, save_tiny_clip, save_tiny_tokenizer, tiny_hf_parts,
                     write_llava_data)

ANSWER = "Yes"
REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("hf_offline")

# Headline score of each benchmark when every reply is "Yes" (fixtures below; rules in each module's docstring).
EXPECTED = {
    # exact match, case ignored: golds yes, no, red, yes, yes
    "gqa": 3 / 5,
    # "Yes" has no no/not, so it reads as yes; pooled accuracy = share of yes labels
    "pope": 4 / 6,
    # official rule (bare letter, "X. ...", "The answer is X."): "Yes" picks no letter, so all 4 are misses
    "scienceqa_img": 0.0,
    # circular, can_infer: "Yes" reads as the option "yes" in every rotation; only question 0 of 3 has yes as its answer
    "mmbench": 1 / 3,
    # mean over subtasks of (acc + acc+) / 2: existence (3/4 + 1/2) / 2, artwork and code_reasoning (1/2 + 0) / 2
    "mme": (0.625 + 0.25 + 0.25) / 3,
    # lmms-eval compares letters only: "yes" (lower-cased, no punctuation) is no option letter
    "ai2d": 0.0,
    # VQA accuracy min(k/3, 1) over leave-one-out: k = 10 -> 1, 3 ("Yes.", "YES", "yes") -> 0.9, 2 -> 0.6, 0 -> 0
    "textvqa": (1.0 + 0.9 + 0.6 + 0.0) / 4,
    # relaxed: a non-numeric gold needs an exact case-insensitive match: "Yes", "yes" of Yes, No, 57.3, yes, 0
    "chartqa": 2 / 5,
    # gold inside the reply: "YES" is; "stop" no; HME formula keeps case ("yes" not in "Yes"); "Yes." not in "yes"
    "ocrbench": 1 / 4,
    # ANLS: "Yes" 1; "yes." 1 - 1/4; "no" 1 - 3/3 = 0; "yen" 1 - 1/3; "1999" below 0.5 -> 0
    "docvqa": (1 + 0.75 + 0 + 2 / 3 + 0) / 5,
    # MC: a one-word "Yes" parses to no letter (option text counts only past 5 words), so the seeded draws decide:
    # B for Physics_2 (gold A), A for Art_Theory_12 (gold A). Open: gold ['yes', 'Yes'] is inside "yes"; 1848, eyes not
    "mmmu": 2 / 5,
    # MC: "Yes" is a choice of [Yes*, No] and of [Yes, No*]; otherwise the closest choice by edit distance:
    # red (2) < blue, green (4) < yellow (5), gold red. Integer gold 3: no number in the reply
    "mathvista": 2 / 4,
}
# The share of replies no rule could read, per benchmark.
EXPECTED_UNPARSED = {
    "gqa": 0.0, "textvqa": 0.0, "chartqa": 0.0, "ocrbench": 0.0, "docvqa": 0.0,  # free form: no reply is blank
    "pope": 0.0, "mme": 0.0,  # "Yes" is a yes
    "scienceqa_img": 1.0, "ai2d": 1.0,  # no letter anywhere
    # question 2 (green, red, blue): no letter word and no option text in "yes", in all 3 of its copies; 2 + 2 + 3 copies
    "mmbench": 3 / 7,
    "mmmu": 2 / 5,  # both multiple-choice replies fell to the draw; open replies are read whole
    "mathvista": 2 / 4,  # the colour question (only the closest-choice fallback) and the integer one (no number)
}  # fmt: skip
# The headline conventions logged beside the headline.
EXPECTED_CONVENTIONS = {
    # F1 per category: random TP1 FP1 -> 2/3, popular TP2 -> 1, adversarial TP1 FP1 -> 2/3
    "pope/f1_mean": (2 / 3 + 1 + 2 / 3) / 3,
    # 100 * (acc + acc+): existence 100 * (3/4 + 1/2), artwork 100 * (1/2 + 0); code_reasoning 100 * (1/2 + 0)
    "mme/perception_total": 125.0 + 50.0,
    "mme/cognition_total": 50.0,
    "ocrbench/final_score": 1000 * 1 / 4,
    "mmbench/circular": 1 / 3,
}
# MME subtasks written below (the default, all 14, would need every folder).
MME_SUBTASKS = ["existence", "artwork", "code_reasoning"]


# ---- fixtures in the release formats ------------------------------------------------------


def _image(path: Path, rgb: tuple[int, int, int] = (220, 20, 20)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), rgb).save(path)


def _json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def write_gqa(root: Path) -> None:
    golds = {"201": ("Is the square red?", "yes"), "202": ("Is the square blue?", "no"),
             "203": ("What color is the square?", "red"), "204": ("Is there a square?", "yes"),
             "205": ("Is the square on the left?", "yes")}  # fmt: skip
    _json(root / "testdev_balanced_questions.json", {
        qid: {"question": q, "answer": a, "imageId": "n1", "fullAnswer": a, "isBalanced": True,
              "types": {"structural": "verify" if a in ("yes", "no") else "query", "semantic": "attr", "detailed": "x"}}
        for qid, (q, a) in golds.items()})  # fmt: skip
    _image(root / "images" / "n1.jpg")


def write_pope(root: Path) -> None:
    labels = {"random": ["yes", "no"], "popular": ["yes", "yes"], "adversarial": ["no", "yes"]}
    for cat, labs in labels.items():
        rows = [{"question_id": i + 1, "image": "COCO_val2014_000000000001.jpg", "text": f"Is there a {obj} in the image?",
                 "label": lab} for i, (lab, obj) in enumerate(zip(labs, ("square", "cat")))]  # fmt: skip
        (root / "coco").mkdir(parents=True, exist_ok=True)
        (root / "coco" / f"coco_pope_{cat}.json").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    _image(root / "val2014" / "COCO_val2014_000000000001.jpg")


def write_scienceqa(root: Path) -> None:
    def prob(question: str, choices: list[str], answer: int, image: str | None, split: str = "test") -> dict:
        return {"question": question, "choices": choices, "answer": answer, "hint": "", "image": image,
                "task": "closed choice", "grade": "grade4", "subject": "natural science", "split": split}  # fmt: skip

    _json(root / "problems.json", {
        "1": prob("Is the square red?", ["yes", "no"], 0, "image.png"),
        "2": prob("Is the square blue?", ["no", "yes"], 1, "image.png"),
        "3": prob("Is it a circle?", ["yes", "no"], 1, "image.png"),
        "4": prob("Which state of matter is the square?", ["solid", "liquid", "gas"], 0, "image.png"),
        "5": prob("Is this text-only?", ["yes", "no"], 0, None),  # no image: not in the IMG subset
        "6": prob("Is this in train?", ["yes", "no"], 0, "image.png", split="train"),  # not in the test split
    })  # fmt: skip
    _json(root / "pid_splits.json", {"train": ["6"], "val": [], "test": ["1", "2", "3", "4", "5"]})
    for pid in ("1", "2", "3", "4"):
        _image(root / "images" / "test" / pid / "image.png")


def write_mmbench(root: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (20, 200, 20)).save(buf, format="PNG")
    image = base64.b64encode(buf.getvalue()).decode()
    columns = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source", "l2-category", "split"]
    rows = [
        {"index": 0, "question": "Is the square green?", "A": "yes", "B": "no", "answer": "A"},
        {"index": 1, "question": "Is the square red?", "A": "yes", "B": "no", "answer": "B"},
        {"index": 2, "question": "What color is the square?", "A": "green", "B": "red", "C": "blue", "answer": "A"},
    ]
    root.mkdir(parents=True, exist_ok=True)
    with (root / "mmbench_dev_20230712.tsv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, delimiter="\t")
        writer.writeheader()
        for row in rows:
            full = {"hint": "nan", "C": "nan", "D": "nan", "category": "attribute_recognition", "image": image,
                    "source": "fixture", "l2-category": "fine-grained_perception", "split": "dev", **row}  # fmt: skip
            writer.writerow({c: full[c] for c in columns})


def write_mme(root: Path) -> None:
    ask = "in this image? Please answer yes or no."
    # existence (image and questions side by side). The release pairs one Yes with one No per image;
    # image 2 has two Yes questions so that acc+ is not 0.
    for stem, golds in {"000000000001": ("Yes", "No"), "000000000002": ("Yes", "Yes")}.items():
        _image(root / "existence" / f"{stem}.jpg")
        (root / "existence" / f"{stem}.txt").write_text(
            f"Is there a square {ask}\t{golds[0]}\nIs there a circle {ask}\t{golds[1]}\n", encoding="utf-8")
    # artwork (images/ and questions_answers_YN/).
    _image(root / "artwork" / "images" / "10002.jpg")
    (root / "artwork" / "questions_answers_YN").mkdir(parents=True)
    (root / "artwork" / "questions_answers_YN" / "10002.txt").write_text(
        "Is this artwork a painting? Please answer yes or no.\tYes\n"
        "Is this artwork a sculpture? Please answer yes or no.\tNo\n", encoding="utf-8")
    # code_reasoning (cognition; side by side, .png images).
    _image(root / "code_reasoning" / "0020.png")
    (root / "code_reasoning" / "0020.txt").write_text(
        "Will this code print 3? Please answer yes or no.\tNo\nWill this code print 2? Please answer yes or no.\tYes\n",
        encoding="utf-8")


def write_ai2d(root: Path) -> None:
    def diagram(image_id: int, questions: dict[str, tuple[list[str], int]]) -> None:
        _json(root / "questions" / f"{image_id}.png.json", {"imageName": f"{image_id}.png", "questions": {
            text: {"abcLabel": False, "answerTexts": options, "correctAnswer": answer, "questionId": f"{image_id}.png-{k}"}
            for k, (text, (options, answer)) in enumerate(questions.items())}})  # fmt: skip
        _image(root / "images" / f"{image_id}.png")

    diagram(1, {"Is the sun the source of energy?": (["yes", "no", "only at night", "cannot tell"], 0),
                "Does the arrow point to the cow?": (["no", "yes", "both", "neither"], 1)})  # fmt: skip
    diagram(2, {"Which stage comes after the egg?": (["adult", "larva", "pupa", "egg"], 1),
                "Is label B the moon?": (["no", "sometimes", "never", "yes"], 3)})  # fmt: skip
    diagram(3, {"Is this diagram in the test split?": (["yes", "no", "maybe", "never"], 0)})
    (root / "ai2d_test_ids.csv").write_text("1\n2\n", encoding="utf-8")


def write_textvqa(root: Path) -> None:
    answers = [["yes"] * 10, ["Yes.", "YES", "yes"] + ["no"] * 7, ["yes"] * 2 + ["stop"] * 8, ["exit"] * 10]
    data = [{"question_id": 100 + i, "question": "is there text on the sign?", "image_id": f"img{i}", "answers": a,
             "set_name": "val"} for i, a in enumerate(answers)]  # fmt: skip
    _json(root / "TextVQA_0.5.1_val.json", {"dataset_name": "textvqa", "dataset_version": "0.5.1", "data": data})
    # The Rosetta OCR tokens LLaVA-1.5's prompt lists.
    _json(root / "TextVQA_Rosetta_OCR_v0.2_val.json",
          {"data": [{"image_id": f"img{i}", "ocr_tokens": ["STOP"] if i % 2 else []} for i in range(len(answers))]})
    for i in range(len(answers)):
        _image(root / "train_images" / f"img{i}.jpg")


def write_chartqa(root: Path) -> None:
    _json(root / "test" / "test_human.json", [
        {"imgname": "a.png", "query": "Is the red bar the highest?", "label": "Yes"},
        {"imgname": "a.png", "query": "Is the blue bar the highest?", "label": "No"},
        {"imgname": "a.png", "query": "What is the peak value?", "label": "57.3"},
    ])  # fmt: skip
    _json(root / "test" / "test_augmented.json", [
        {"imgname": "b.png", "query": "Does the line rise?", "label": "yes"},
        {"imgname": "b.png", "query": "What is the gap?", "label": "0"},
    ])  # fmt: skip
    _image(root / "test" / "png" / "a.png")
    _image(root / "test" / "png" / "b.png")


def write_ocrbench(root: Path) -> None:
    rows = [
        {"dataset_name": "IIIT5K", "id": 0, "image_path": "IIIT5K/1.png", "question": "what is written in the image?",
         "answers": ["YES"], "type": "Regular Text Recognition"},
        {"dataset_name": "textVQA", "id": 1, "image_path": "textVQA/2.jpg", "question": "what does the sign say?",
         "answers": ["stop", "stop sign"], "type": "Scene Text-centric VQA"},
        {"dataset_name": "HME100k", "id": 2, "image_path": "HME100k/3.jpg", "question": "Write the formula in LaTeX.",
         "answers": "y e s", "type": "Handwritten Mathematical Expression Recognition"},
        {"dataset_name": "FUNSD", "id": 3, "image_path": "FUNSD/4.png", "question": "Is the form signed?",
         "answers": ["Yes."], "type": "Key Information Extraction"},
    ]  # fmt: skip
    _json(root / "OCRBench.json", rows)
    for row in rows:
        _image(root / "OCRBench_Images" / row["image_path"])


def write_docvqa(root: Path) -> None:
    golds = [["Yes"], ["yes.", "Yes, signed"], ["no"], ["yen"], ["1999"]]
    data = [{"questionId": 49153 + i, "question": f"question {i} about the page?", "question_types": ["form"],
             "image": f"documents/doc{i}.png", "docId": 14465 + i, "ucsf_document_id": "x", "ucsf_document_page_no": "1",
             "answers": a, "data_split": "val"} for i, a in enumerate(golds)]  # fmt: skip
    _json(root / "val_v1.0.json", {"dataset_name": "docvqa", "dataset_split": "val", "dataset_version": "1.0", "data": data})
    for row in data:
        _image(root / row["image"])


def write_mmmu(root: Path) -> None:
    def row(qid: str, question: str, options: list[str], answer: str, image: bool) -> dict:
        return {"id": qid, "question": question, "options": repr(options), "answer": answer, "explanation": "",
                "image_1": f"images/{qid}_1.png" if image else None, "image_2": None, "img_type": "['Diagrams']",
                "question_type": "multiple-choice" if options else "open", "subfield": "x", "topic_difficulty": "Easy"}  # fmt: skip

    rows = [
        row("validation_Physics_2", "<image 1> Is the block at rest?", ["yes", "no"], "A", True),
        row("validation_Art_Theory_12", "<image 1> Which style is shown?", ["Baroque", "Gothic", "Cubist", "Rococo"], "A", True),
        row("validation_Math_3", "Is 7 a prime number?", [], "['yes', 'Yes']", False),
        row("validation_History_4", "In which year did the revolutions happen?", [], "1848", False),
        row("validation_Biology_5", "<image 1> Which organ is shown?", [], "eyes", True),
    ]
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for r in rows:
        if r["image_1"]:
            _image(root / r["image_1"])


def write_mathvista(root: Path) -> None:
    def prob(pid: str, question: str, choices: list[str] | None, answer: str, answer_type: str) -> dict:
        qtype = "multi_choice" if choices else "free_form"
        return {"pid": pid, "question": question, "image": f"images/{pid}.jpg", "choices": choices, "unit": None,
                "precision": None, "answer": answer, "question_type": qtype, "answer_type": answer_type,
                "metadata": {"task": "figure question answering", "category": "math-targeted-vqa"},
                "query": "the official query, which the lmms-eval prompt does not use"}  # fmt: skip

    problems = [
        prob("1", "Is the red bar taller than the blue one?", ["Yes", "No"], "Yes", "text"),
        prob("2", "Is the line decreasing?", ["Yes", "No"], "No", "text"),
        prob("3", "What color is the largest region?", ["blue", "yellow", "red", "green"], "red", "text"),
        prob("4", "How many squares are there?", None, "3", "integer"),
    ]
    _json(root / "testmini.json", {p["pid"]: p for p in problems})
    for p in problems:
        _image(root / p["image"])


FIXTURES: dict[str, Callable[[Path], None]] = {
    "gqa": write_gqa, "pope": write_pope, "scienceqa_img": write_scienceqa, "mmbench": write_mmbench,
    "mme": write_mme, "ai2d": write_ai2d, "textvqa": write_textvqa, "chartqa": write_chartqa, "ocrbench": write_ocrbench,
    "docvqa": write_docvqa, "mmmu": write_mmmu, "mathvista": write_mathvista,
}  # fmt: skip


def paper_families() -> dict[str, list[str]]:
    return {str(k): list(v) for k, v in yaml.safe_load((REPO / "conf" / "eval" / "paper.yaml").read_text())["families"].items()}


# ---- the model and the run --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_scores")
    llm = root / "qwen"
    tokenizer = save_tiny_tokenizer(llm, [*TOKENIZER_TEXT, ANSWER])
    save_fixed_answer_qwen(llm, tokenizer, ANSWER)
    torch.manual_seed(0)
    clip = save_tiny_clip(root / "clip")
    data = write_llava_data(root / "llava")
    for name, write in FIXTURES.items():
        write(root / "eval" / name)
    return {"llm": llm, "clip": clip, "data": data, "eval": root / "eval"}


def test_crafted_llm_answers_yes_to_anything(tiny: dict[str, Path]) -> None:
    """Through the eval job's own path (build_hf_vlm, prompt_ids, HFVLM.generate), any connector, any prompt."""
    from sweep.models.hf_vlm import build_hf_vlm, prompt_ids

    torch.manual_seed(1)
    parts = tiny_hf_parts(tiny)
    vlm = build_hf_vlm(parts["llm"], parts["compressor"], parts["vision"], 1).eval()
    assert len(vlm.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]) == 1  # "Yes" is one token here
    prompts = ["Is there a square in the image?", "What color is the square?\nA. red\nB. blue\nAnswer with the letter.",
               "Yes", "Say no.", "a red square Yes Yes"]  # fmt: skip
    red, blue = Image.new("RGB", (32, 32), (220, 20, 20)), Image.new("RGB", (40, 24), (20, 20, 220))
    images = [red, None, blue, red, None]
    ids = [prompt_ids(vlm.tokenizer, p, img is not None) for p, img in zip(prompts, images)]
    assert vlm.generate(ids, images, max_new_tokens=8) == [ANSWER] * len(prompts)
    # The same after the connector changes (stage 1 trains it): the LLM never reads the image.
    with torch.no_grad():
        for p in vlm.projector.parameters():
            p.mul_(-3.0).add_(0.5)
    assert vlm.generate(ids[:2], images[:2], max_new_tokens=8) == [ANSWER] * 2


TRAIN_YAML = """kind: llava
stages:
  - {name: stage1, data: stage1, epochs: 10, global_batch_size: 4, micro_batch_size: 2, lr: 5.0e-2, warmup: 0.0,
     schedule: constant, trainable: connector, precision: bf16, checkpoint_every: 0, log_every: 1, max_length: 64}
  - {name: stage2, data: stage2, epochs: 1, global_batch_size: 4, micro_batch_size: 2, lr: 1.0e-6, warmup: 0.0,
     schedule: constant, trainable: all, precision: bf16, checkpoint_every: 0, log_every: 1, max_length: 64}
text_tokens_per_sample: 20
"""


@pytest.mark.slow
def test_paper_grid_cli_logs_every_benchmark_score(tiny: dict[str, Path], tmp_path: Path) -> None:
    families = paper_families()
    benches = sorted({b for members in families.values() for b in members})
    assert benches == sorted(FIXTURES) == sorted(EXPECTED), "write a fixture and an expected score for each paper benchmark"
    conf = yaml.safe_load((REPO / "conf" / "eval" / "paper.yaml").read_text())
    conf["benchmarks"] = {**(conf.get("benchmarks") or {}), "mme": {"subtasks": MME_SUBTASKS}}
    conf.update({"max_items": 0, "batch_size": 8, "max_new_tokens": 4, "samples_per_cell": 4, "text_tokens_per_sample": 20})

    jobs = run_paper_cli(tmp_path, tiny, TRAIN_YAML, yaml.safe_dump(conf))
    assert sorted(jobs) == ["eval", "train"] and len(jobs["train"]) == 2 and len(jobs["eval"]) == 1

    # Every reply was the crafted answer: the stage-2 LLM is the written one (to far below the margins).
    pred_files = sorted((tmp_path / "out").rglob("predictions/*.jsonl"))
    assert sorted(p.stem for p in pred_files) == benches
    for path in pred_files:
        assert {json.loads(line)["prediction"] for line in path.read_text().splitlines()} == {ANSWER}, path.name

    m = jobs["eval"][0].data.metrics
    assert {b: m[f"bench/{b}/score"] for b in benches} == pytest.approx(EXPECTED, abs=1e-9)
    assert {b: m[f"bench/{b}/unparsed"] for b in benches} == pytest.approx(EXPECTED_UNPARSED, abs=1e-9)
    assert {k: m[f"bench/{k}"] for k in EXPECTED_CONVENTIONS} == pytest.approx(EXPECTED_CONVENTIONS, abs=1e-9)
    errors = {fam: 1 - sum(EXPECTED[b] for b in members) / len(members) for fam, members in families.items()}
    assert {fam: m[f"error/{fam}"] for fam in families} == pytest.approx(errors, abs=1e-9)
    assert m["bench/mmbench/n"] == 3.0 and m["bench/mme/n"] == 8.0 and m["bench/scienceqa_img/n"] == 4.0

    # Stage 1 trains only the connector, and its loss goes down.
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    stage1 = [r for r in jobs["train"] if r.data.params.get("stage.name") == "stage1"]
    assert len(stage1) == 1
    losses = [x.value for x in sorted(client.get_metric_history(stage1[0].info.run_id, "train/loss"), key=lambda x: x.step)]
    assert len(losses) == 10 and losses[-1] < losses[0] - 0.1, losses

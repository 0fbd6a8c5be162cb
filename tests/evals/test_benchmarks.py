"""Each benchmark loader on a tiny fixture in its real file format, then its scorer
against hand-computed values. Fixtures are written into tmp_path; nothing is downloaded."""

from __future__ import annotations

import base64
import csv
import io
import json
import random
from pathlib import Path

import pytest
from PIL import Image

from evals.fixtures import docvqa_row, mathvista_problem, mmmu_row, write_docvqa, write_mathvista, write_mmmu
from sweep.errors import SweepError
from sweep.evals import benchmark_names, build_benchmark
from sweep.evals.benchmarks.mmbench import COPY_OFFSET


def _png(path: Path, color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), color).save(path)
    return path


def _b64_png(color: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (5, 5), color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_registry_lists_every_benchmark_and_suggests_names(tmp_path: Path) -> None:
    assert benchmark_names() == [
        "ai2d", "chartqa", "docvqa", "gqa", "mathvista", "mmbench", "mme", "mmmu", "ocrbench", "pope",
        "scienceqa_img", "textvqa",
    ]  # fmt: skip
    with pytest.raises(SweepError, match="Did you mean textvqa"):
        build_benchmark("textvq", tmp_path)
    with pytest.raises(SweepError, match="bad options"):
        build_benchmark("gqa", tmp_path, nonsense=1)
    with pytest.raises(SweepError, match="is not a folder"):
        build_benchmark("gqa", tmp_path / "nowhere")


# ---- GQA -----------------------------------------------------------------------------------


def test_gqa(tmp_path: Path) -> None:
    def q(question: str, answer: str, image: str, structural: str, semantic: str) -> dict:
        return {"question": question, "answer": answer, "imageId": image, "fullAnswer": "...",
                "isBalanced": True, "types": {"structural": structural, "semantic": semantic, "detailed": "x"}}  # fmt: skip

    _write_json(tmp_path / "testdev_balanced_questions.json", {
        "201": q("Is the cup white?", "yes", "n1", "verify", "attr"),
        "202": q("Which side is the dog on?", "right", "n1", "query", "rel"),
        "203": q("What is on the table?", "cup", "n2", "query", "obj"),
        "204": q("What color is the car?", "blue", "n2", "query", "attr"),
    })  # fmt: skip
    _png(tmp_path / "images" / "n1.jpg")
    bench = build_benchmark("gqa", tmp_path)
    items = bench.load()
    assert [it.id for it in items] == ["201", "202", "203", "204"]
    assert items[0].prompt == "Is the cup white?\nAnswer the question using a single word or phrase."
    assert items[0].image_path == tmp_path / "images" / "n1.jpg"
    assert items[0].load_image().size == (8, 6)
    with pytest.raises(SweepError, match="does not exist"):
        items[2].load_image()  # n2.jpg was never written

    preds = {"201": "Yes.", "202": "left", "203": "The cup", "204": "Blue"}
    scores = bench.score(items, preds)
    assert scores["score"] == pytest.approx(0.5)
    assert scores["n"] == 4 and scores["unparsed"] == 0.0
    assert scores["structural/verify"] == 1.0
    assert scores["structural/query"] == pytest.approx(1 / 3)
    assert scores["semantic/attr"] == 1.0 and scores["semantic/rel"] == 0.0
    # Predictions may also come as a list in item order; a missing one is an error.
    assert bench.score(items, ["yes", "right", "cup", "red"])["score"] == pytest.approx(0.75)
    with pytest.raises(SweepError, match="no prediction"):
        bench.score(items, {"201": "yes"})


def test_gqa_bad_record_names_the_field(tmp_path: Path) -> None:
    _write_json(tmp_path / "testdev_balanced_questions.json", {"7": {"question": "q?", "imageId": "n1"}})
    with pytest.raises(SweepError, match=r"\['7'\].*no 'answer' field"):
        build_benchmark("gqa", tmp_path).load()


def test_missing_file_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="testdev_balanced_questions.json is missing"):
        build_benchmark("gqa", tmp_path).load()


# ---- POPE ----------------------------------------------------------------------------------


def test_pope(tmp_path: Path) -> None:
    rows = {
        "random": [("yes", "Yes"), ("no", "No, there is not."), ("yes", "No"), ("no", "Yes")],
        "adversarial": [("yes", "Yes, there is."), ("no", "There is no car."), ("no", "I see one"), ("yes", "yes")],
    }
    for cat, pairs in rows.items():
        lines = [
            json.dumps({"question_id": i + 1, "image": "COCO_val2014_000000000001.jpg", "text": f"Is there a thing {i}?", "label": gold})
            for i, (gold, _) in enumerate(pairs)
        ]
        (tmp_path / "coco").mkdir(exist_ok=True)
        (tmp_path / "coco" / f"coco_pope_{cat}.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _png(tmp_path / "val2014" / "COCO_val2014_000000000001.jpg")

    bench = build_benchmark("pope", tmp_path, categories=["adversarial", "random"])
    items = bench.load()
    assert [it.id for it in items][:2] == ["adversarial/1", "adversarial/2"]
    assert items[0].prompt.startswith("Is there a thing 0?\n")
    assert items[0].load_image() is not None
    preds = {f"{cat}/{i + 1}": reply for cat, pairs in rows.items() for i, (_, reply) in enumerate(pairs)}
    scores = bench.score(items, preds)
    # random: TP1 TN1 FN1 FP1; adversarial: TP2 TN1 FP1 -> pooled TP3 TN2 FP2 FN1.
    assert scores["random/accuracy"] == pytest.approx(0.5)
    assert scores["adversarial/accuracy"] == pytest.approx(0.75)
    assert scores["adversarial/f1"] == pytest.approx(0.8)
    assert scores["accuracy"] == pytest.approx(5 / 8)
    assert scores["precision"] == pytest.approx(3 / 5)
    assert scores["recall"] == pytest.approx(3 / 4)
    assert scores["f1"] == pytest.approx(2 / 3)
    assert scores["yes_ratio"] == pytest.approx(5 / 8)
    assert scores["score"] == scores["accuracy"]
    # LLaVA-1.5's POPE number: the mean of the categories' F1 (random 0.5, adversarial 0.8).
    assert scores["f1_mean"] == pytest.approx(0.65)
    assert scores["unparsed"] == pytest.approx(1 / 8)  # "I see one" says neither yes nor no
    assert build_benchmark("pope", tmp_path, categories=["random"], headline="f1").score(
        [it for it in items if it.meta["category"] == "random"], preds
    )["score"] == pytest.approx(0.5)


def test_pope_rejects_a_bad_label(tmp_path: Path) -> None:
    (tmp_path / "coco").mkdir()
    row = {"question_id": 1, "image": "x.jpg", "text": "Is there a cat?", "label": "maybe"}
    (tmp_path / "coco" / "coco_pope_random.json").write_text(json.dumps(row) + "\n")
    with pytest.raises(SweepError, match="line 1.label"):
        build_benchmark("pope", tmp_path, categories=["random"]).load()


# ---- ScienceQA-IMG -------------------------------------------------------------------------


def test_scienceqa_img(tmp_path: Path) -> None:
    def prob(question: str, choices: list[str], answer: int, image: str | None, subject: str, hint: str = "") -> dict:
        return {"question": question, "choices": choices, "answer": answer, "hint": hint, "image": image,
                "task": "closed choice", "grade": "grade4", "subject": subject, "split": "test"}  # fmt: skip

    _write_json(tmp_path / "problems.json", {
        "1": prob("Which is a mammal?", ["shark", "whale"], 1, "image.png", "natural science", hint="Look closely."),
        "2": prob("Which word is a noun?", ["run", "dog", "fast"], 1, None, "language science"),
        "3": prob("Which state is farthest north?", ["Ohio", "Maine", "Texas", "Utah"], 1, "image.png", "social science"),
        "4": prob("Which is hotter?", ["ice", "fire"], 1, "image.png", "natural science"),
        "5": prob("Train question", ["a", "b"], 0, "image.png", "natural science"),
    })  # fmt: skip
    _write_json(tmp_path / "pid_splits.json", {"train": ["5"], "val": [], "test": ["1", "2", "3", "4"]})
    _png(tmp_path / "images" / "test" / "1" / "image.png")

    bench = build_benchmark("scienceqa_img", tmp_path)
    items = bench.load()
    assert [it.id for it in items] == ["1", "3", "4"]  # the text-only problem 2 is left out
    assert items[0].prompt == (
        "Context: Look closely.\nWhich is a mammal?\nA. shark\nB. whale\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert items[0].target == "B"
    assert items[0].image_path == tmp_path / "images" / "test" / "1" / "image.png"
    scores = bench.score(items, {"1": "B", "3": "The answer is C.", "4": "fire"})
    # 1: right; 3: picks C (Texas), gold B; 4: the option text "fire" alone is a miss under the official rule.
    assert scores["score"] == pytest.approx(1 / 3)
    assert scores["subject/social science"] == 0.0
    assert scores["unparsed"] == pytest.approx(1 / 3)  # "fire" names no choice; C is one
    # "B. ..." and "The answer is B." are picks; "(B)" is not (LLaVA's eval_science_qa.py).
    assert bench.score(items, {"1": "B. whale", "3": "The answer is B.", "4": "(B)"})["score"] == pytest.approx(2 / 3)


# ---- MMBench -------------------------------------------------------------------------------

_MMB_COLUMNS = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "source", "l2-category", "split"]


def _write_tsv(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_MMB_COLUMNS, delimiter="\t")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in _MMB_COLUMNS})


def test_mmbench_rotates_options_and_scores_circularly(tmp_path: Path) -> None:
    red = _b64_png((255, 0, 0))
    _write_tsv(tmp_path / "mmbench_dev_20230712.tsv", [
        {"index": 0, "question": "What color is the square?", "hint": "nan", "A": "blue", "B": "red", "C": "green",
         "D": "nan", "answer": "B", "category": "attribute", "image": red, "l2-category": "perception"},
        {"index": 1, "question": "Is it bright?", "hint": "Think about light.", "A": "yes", "B": "no",
         "answer": "A", "category": "reasoning", "image": red, "l2-category": "logic"},
    ])  # fmt: skip
    bench = build_benchmark("mmbench", tmp_path)
    items = bench.load()
    by_id = {it.id: it for it in items}
    assert sorted(by_id) == sorted(["0", str(COPY_OFFSET), str(2 * COPY_OFFSET), "1", str(1 + COPY_OFFSET)])
    assert by_id["0"].prompt == (
        "What color is the square?\nA. blue\nB. red\nC. green\n"
        "Answer with the option's letter from the given choices directly."
    )
    # Copy k shifts the options left by k: [red, green, blue] then [green, blue, red].
    assert by_id[str(COPY_OFFSET)].meta["options"] == {"A": "red", "B": "green", "C": "blue"}
    assert [by_id[str(k * COPY_OFFSET)].target for k in range(3)] == ["B", "A", "C"]
    assert by_id["1"].prompt.startswith("Think about light.\nIs it bright?\nA. yes\nB. no\n")
    assert by_id[str(1 + COPY_OFFSET)].target == "B"
    assert by_id["0"].load_image().getpixel((0, 0)) == (255, 0, 0)

    preds = {
        "0": "B", str(COPY_OFFSET): "The answer is A.", str(2 * COPY_OFFSET): "red",  # all right (can_infer)
        "1": "A", str(1 + COPY_OFFSET): "A",  # right, then wrong after rotation
    }  # fmt: skip
    scores = bench.score(items, preds)
    assert scores["score"] == scores["circular"] == pytest.approx(0.5)
    assert scores["vanilla"] == 1.0  # both originals right
    assert scores["unparsed"] == 0.0
    assert scores["n"] == 2
    assert scores["category/attribute"] == 1.0 and scores["category/reasoning"] == 0.0
    assert scores["l2_category/logic"] == 0.0
    assert build_benchmark("mmbench", tmp_path, circular=False).score(
        [by_id["0"], by_id["1"]], {"0": "B", "1": "A"}
    )["score"] == 1.0


def test_mmbench_legacy_tsv_with_rotated_rows_and_image_references(tmp_path: Path) -> None:
    green = _b64_png((0, 255, 0))
    base = {"question": "Which?", "category": "c", "l2-category": "l2"}
    _write_tsv(tmp_path / "dev.tsv", [
        {**base, "index": 5, "A": "x", "B": "y", "answer": "A", "image": green},
        {**base, "index": 5 + COPY_OFFSET, "A": "y", "B": "x", "answer": "B", "image": "5"},
    ])  # fmt: skip
    items = build_benchmark("mmbench", tmp_path, tsv="dev.tsv").load()
    assert [it.id for it in items] == ["5", str(5 + COPY_OFFSET)]  # no extra rotations
    assert items[1].load_image().getpixel((0, 0)) == (0, 255, 0)  # image taken from row 5
    bench = build_benchmark("mmbench", tmp_path, tsv="dev.tsv")
    assert bench.score(items, ["A", "B"])["score"] == 1.0
    assert bench.score(items, ["A", "A"])["score"] == 0.0


def test_mmbench_test_split_without_answers_cannot_be_scored(tmp_path: Path) -> None:
    _write_tsv(tmp_path / "test.tsv", [{"index": 0, "question": "q", "A": "x", "B": "y", "image": _b64_png((0, 0, 0))}])
    bench = build_benchmark("mmbench", tmp_path, tsv="test.tsv")
    items = bench.load()
    with pytest.raises(SweepError, match="no answers"):
        bench.score(items, ["A"] * len(items))


# ---- MME -------------------------------------------------------------------------------------


def test_mme_flat_and_split_folders(tmp_path: Path) -> None:
    root = tmp_path / "MME_Benchmark_release_version"
    # existence: images and question files side by side.
    for stem, answers in {"000001": ("Yes", "No"), "000002": ("Yes", "No")}.items():
        _png(root / "existence" / f"{stem}.jpg")
        (root / "existence" / f"{stem}.txt").write_text(
            f"Is there a dog in this image? Please answer yes or no.\t{answers[0]}\n"
            f"Is there a cat in this image? Please answer yes or no.\t{answers[1]}\n\n",
            encoding="utf-8",
        )
    # artwork: images/ and questions_answers_YN/.
    _png(root / "artwork" / "images" / "10002.png")
    (root / "artwork" / "questions_answers_YN").mkdir(parents=True)
    (root / "artwork" / "questions_answers_YN" / "10002.txt").write_text(
        "Is this a painting? Please answer yes or no.\tYes\nIs this glassware? Please answer yes or no.\tNo\n",
        encoding="utf-8",
    )
    bench = build_benchmark("mme", root, subtasks=["existence", "artwork"])
    items = bench.load()
    assert [it.id for it in items] == [
        "existence/000001/0", "existence/000001/1", "existence/000002/0", "existence/000002/1",
        "artwork/10002/0", "artwork/10002/1",
    ]  # fmt: skip
    # LLaVA-1.5 replaces the release's "Please answer yes or no." by its short-answer line.
    assert items[0].prompt == "Is there a dog in this image?\nAnswer the question using a single word or phrase."
    assert items[4].image_path == root / "artwork" / "images" / "10002.png"
    preds = {
        "existence/000001/0": "Yes", "existence/000001/1": "No.",  # both right
        "existence/000002/0": "Yes, there is.", "existence/000002/1": "I think so",  # one right
        "artwork/10002/0": "yes", "artwork/10002/1": "no",  # both right
    }  # fmt: skip
    scores = bench.score(items, preds)
    assert scores["existence/acc"] == pytest.approx(0.75)
    assert scores["existence/acc_plus"] == pytest.approx(0.5)
    assert scores["existence/score"] == pytest.approx(125.0)
    assert scores["artwork/score"] == pytest.approx(200.0)
    assert scores["perception_total"] == pytest.approx(325.0)  # the official scale, out of 2000 for all 10
    assert scores["unparsed"] == pytest.approx(1 / 6)  # "I think so" is other
    assert scores["perception"] == pytest.approx(325.0 / 400.0)
    assert "cognition" not in scores
    assert scores["score"] == pytest.approx((125.0 / 200.0 + 1.0) / 2)


def test_mme_rejects_unknown_subtask_and_bad_lines(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="Did you mean existence"):
        build_benchmark("mme", tmp_path, subtasks=["existance"])
    _png(tmp_path / "count" / "1.jpg")
    (tmp_path / "count" / "1.txt").write_text("How many? Please answer yes or no.\tMaybe\n", encoding="utf-8")
    with pytest.raises(SweepError, match=r"count/1.txt line 1"):
        build_benchmark("mme", tmp_path, subtasks=["count"]).load()


# ---- AI2D ------------------------------------------------------------------------------------


def test_ai2d_test_split(tmp_path: Path) -> None:
    def diagram(image_id: int, questions: dict) -> None:
        _write_json(tmp_path / "questions" / f"{image_id}.png.json", {"imageName": f"{image_id}.png", "questions": questions})
        _png(tmp_path / "images" / f"{image_id}.png")

    diagram(10, {
        "Which stage comes after the egg?": {"abcLabel": False, "answerTexts": ["adult", "larva", "pupa", "egg"],
                                             "correctAnswer": 1, "questionId": "10.png-0"},
        "What is label B?": {"abcLabel": True, "answerTexts": ["sun", "moon", "earth", "mars"],
                             "correctAnswer": 2, "questionId": "10.png-1"},
    })  # fmt: skip
    diagram(11, {"What eats grass?": {"abcLabel": False, "answerTexts": ["cow", "lion", "hawk", "snake"],
                                      "correctAnswer": 0, "questionId": "11.png-0"}})  # fmt: skip
    (tmp_path / "ai2d_test_ids.csv").write_text("10\n", encoding="utf-8")

    bench = build_benchmark("ai2d", tmp_path)
    items = bench.load()
    assert [it.id for it in items] == ["10.png-0", "10.png-1"]  # diagram 11 is not a test diagram
    assert items[0].prompt == (
        "Which stage comes after the egg?\nA. adult\nB. larva\nC. pupa\nD. egg\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert items[1].target == "C"
    scores = bench.score(items, ["B", "A"])
    assert scores["score"] == pytest.approx(0.5) and scores["unparsed"] == 0.0
    # lmms-eval's rules: "c" is right, "The answer is B." is wrong and read as no letter.
    both = bench.score(items, ["The answer is B.", "c"])
    assert both["score"] == pytest.approx(0.5) and both["unparsed"] == pytest.approx(0.5)
    assert scores["abc_label/false"] == 1.0 and scores["abc_label/true"] == 0.0
    assert len(build_benchmark("ai2d", tmp_path, split="all").load()) == 3


# ---- TextVQA ---------------------------------------------------------------------------------


def test_textvqa(tmp_path: Path) -> None:
    data = [
        {"question_id": 34602, "question": "what is the brand of this camera?", "image_id": "003a8ae2ef43b901",
         "answers": ["nous les gosses"] * 2 + ["dakota"] * 5 + ["clos culombu"] * 3, "set_name": "val"},
        {"question_id": 34603, "question": "how many cups?", "image_id": "003a8ae2ef43b902",
         "answers": ["two", "2", "2", "three", "3", "3", "3", "4", "4", "4"], "set_name": "val"},
        {"question_id": 34604, "question": "what does it say?", "image_id": "003a8ae2ef43b903",
         "answers": ["stop"] * 10, "set_name": "val", "ocr_tokens": ["STOP", "sign"]},  # a row with its own tokens
    ]  # fmt: skip
    _write_json(tmp_path / "TextVQA_0.5.1_val.json", {"dataset_name": "textvqa", "dataset_version": "0.5.1", "data": data})
    with pytest.raises(SweepError, match="ocr_tokens=false"):
        build_benchmark("textvqa", tmp_path).load()  # LLaVA-1.5's prompt needs the OCR tokens
    _write_json(tmp_path / "TextVQA_Rosetta_OCR_v0.2_val.json", {"data": [
        {"image_id": "003a8ae2ef43b901", "ocr_tokens": ["DAKOTA", "DIGITAL"]},
        {"image_id": "003a8ae2ef43b902", "ocr_tokens": []},
        {"image_id": "003a8ae2ef43b903", "ocr_tokens": ["ignored"]},
    ]})  # fmt: skip
    bench = build_benchmark("textvqa", tmp_path)
    items = bench.load()
    assert items[0].id == "34602"
    assert items[0].image_path == tmp_path / "train_images" / "003a8ae2ef43b901.jpg"
    assert [it.prompt for it in items] == [
        "what is the brand of this camera?\nReference OCR token: DAKOTA, DIGITAL\n"
        "Answer the question using a single word or phrase.",
        "how many cups?\nReference OCR token: \nAnswer the question using a single word or phrase.",
        "what does it say?\nReference OCR token: STOP, sign\nAnswer the question using a single word or phrase.",
    ]
    plain = build_benchmark("textvqa", tmp_path, ocr_tokens=False).load()
    assert plain[0].prompt == "what is the brand of this camera?\nAnswer the question using a single word or phrase."
    # "Clos Culombu." matches 3 humans -> 0.9; "Two" matches 3 ("two", "2", "2") -> 0.9; "STOP" all 10 -> 1.
    scores = bench.score(items, ["Clos Culombu.", "Two", "STOP"])
    assert scores["score"] == pytest.approx((0.9 + 0.9 + 1.0) / 3) and scores["unparsed"] == 0.0
    # "nous les gosses" (2 humans) -> 0.6; "five" -> 0; a blank reply -> 0, and unparsed.
    scores = bench.score(items, ["Nous les gosses", "five", " "])
    assert scores["score"] == pytest.approx(0.6 / 3) and scores["unparsed"] == pytest.approx(1 / 3)


# ---- ChartQA ---------------------------------------------------------------------------------


def test_chartqa_both_splits(tmp_path: Path) -> None:
    _write_json(tmp_path / "test" / "test_human.json", [
        {"imgname": "a.png", "query": "What is the peak value?", "label": "57.3"},
        {"imgname": "a.png", "query": "Which country is highest?", "label": "Spain"},
    ])  # fmt: skip
    _write_json(tmp_path / "test" / "test_augmented.json", {"data": [
        {"imgname": "b.png", "query": "What share is blue?", "label": "12%"},
        {"imgname": "b.png", "query": "What is the gap?", "label": "0"},
    ]})  # fmt: skip
    _png(tmp_path / "test" / "png" / "a.png")
    bench = build_benchmark("chartqa", tmp_path)
    items = bench.load()
    assert [it.id for it in items] == ["human/0", "human/1", "augmented/0", "augmented/1"]
    assert items[0].image_path == tmp_path / "test" / "png" / "a.png"
    scores = bench.score(items, ["59", "spain", "0.125", "0.01"])
    # 59 vs 57.3: 2.97% off, right; Spain right; 0.125 vs 0.12: 4.2%, right; 0.01 vs 0: wrong.
    assert scores["score"] == pytest.approx(0.75)
    assert scores["human"] == 1.0 and scores["augmented"] == 0.5
    assert scores["unparsed"] == 0.0
    # "57.3 " reads as a number (float takes the space), "Spain " is compared untrimmed, every % of "12%%" goes.
    assert bench.score(items, ["57.3 ", "Spain ", "12%%", "0"])["score"] == pytest.approx(0.75)


# ---- OCRBench --------------------------------------------------------------------------------


def test_ocrbench(tmp_path: Path) -> None:
    rows = [
        {"dataset_name": "IIIT5K", "id": 0, "image_path": "IIIT5K/1.png", "question": "what is written in the image?",
         "answers": ["CHAIR"], "type": "Regular Text Recognition"},
        {"dataset_name": "textVQA", "id": 1, "image_path": "textVQA/2.jpg", "question": "what brand is this?",
         "answers": ["coca cola", "coke"], "type": "Scene Text-centric VQA"},
        {"dataset_name": "HME100k", "id": 2, "image_path": "HME100k/3.jpg", "question": "Write the formula in LaTeX.",
         "answers": "\\frac { a } { b }", "type": "Handwritten Mathematical Expression Recognition"},
        {"dataset_name": "docVQA", "id": 3, "image_path": "docVQA/4.png", "question": "what is the date?",
         "answers": ["May 5"], "type": "Doc-oriented VQA"},
    ]  # fmt: skip
    _write_json(tmp_path / "OCRBench.json", rows)
    bench = build_benchmark("ocrbench", tmp_path)
    items = bench.load()
    assert items[2].target == ["\\frac { a } { b }"]
    assert items[0].image_path == tmp_path / "OCRBench_Images" / "IIIT5K" / "1.png"
    scores = bench.score(items, ["The word is chair.", "It is a Coke can", "\\frac{a}{b}", "June 1"])
    assert scores["score"] == pytest.approx(0.75)
    assert scores["final_score"] == pytest.approx(750.0)  # the official scale: out of 1000
    assert scores["text_recognition"] == 1.0
    assert scores["type/Doc-oriented VQA"] == 0.0
    assert scores["type/Handwritten Mathematical Expression Recognition"] == 1.0


# ---- DocVQA ----------------------------------------------------------------------------------


def test_docvqa(tmp_path: Path) -> None:
    write_docvqa(tmp_path, [
        docvqa_row(49153, "What is the date?", ["May 5, 1975", "5 May 1975"], types=["form"]),
        docvqa_row(49154, "Who signed the letter?", ["Dr. Lobo"], types=["handwritten", "layout"],
                   image="documents/doc_2.png"),
        docvqa_row(49155, "What is the total?", ["$ 1,250"], types=["table/list"]),
    ])  # fmt: skip
    bench = build_benchmark("docvqa", tmp_path)
    items = bench.load()
    assert [it.id for it in items] == ["49153", "49154", "49155"]
    assert items[0].prompt == "What is the date?\nAnswer the question using a single word or phrase."
    assert items[1].image_path == tmp_path / "documents" / "doc_2.png"
    assert items[1].load_image().size == (8, 6)
    assert items[0].target == ["May 5, 1975", "5 May 1975"]

    # 1: " 5 MAY 1975 " matches the second answer exactly -> 1; 2: "Dr Lobo" -> 1 - 1/8;
    # 3: "1250" vs "$ 1,250": 3 edits of 7 -> 0.571, above 0.5, partial credit.
    scores = bench.score(items, [" 5 MAY 1975 ", "Dr Lobo", "1250"])
    assert scores["score"] == pytest.approx((1 + 0.875 + 4 / 7) / 3)
    assert scores["n"] == 3
    assert scores["question_type/form"] == 1.0
    assert scores["question_type/handwritten"] == scores["question_type/layout"] == pytest.approx(0.875)
    assert scores["question_type/table/list"] == pytest.approx(4 / 7)
    # "Lobo" (4 edits of 8 -> 0.5) still counts; "June" and "12" (5 edits of 7) fall below 0.5 and score 0.
    assert bench.score(items, ["June", "Lobo", "12"])["score"] == pytest.approx(0.5 / 3)


def test_docvqa_validation_and_test_split(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="val_v1.0.json is missing"):
        build_benchmark("docvqa", tmp_path).load()
    write_docvqa(tmp_path, [docvqa_row(1, "q?", ["a"]), {**docvqa_row(2, "q?", ["a"]), "answers": "a"}])
    with pytest.raises(SweepError, match=r"data\[1\]\.answers.*is str, expected list"):
        build_benchmark("docvqa", tmp_path).load()
    row = docvqa_row(3, "q?", ["a"])
    del row["question"]
    write_docvqa(tmp_path, [row])
    with pytest.raises(SweepError, match=r"data\[0\].*no 'question' field"):
        build_benchmark("docvqa", tmp_path).load()

    write_docvqa(tmp_path, [docvqa_row(4, "q?", None)], annotations="test_v1.0.json")
    bench = build_benchmark("docvqa", tmp_path, annotations="test_v1.0.json")
    items = bench.load()
    assert items[0].target is None
    with pytest.raises(SweepError, match="no answers"):
        bench.score(items, ["x"])


# ---- MMMU ------------------------------------------------------------------------------------

_MMMU_FALLBACK_ID = "validation_Math_4"
# What the official random pick draws for this item here (seeded by the item id).
_MMMU_DRAWN = random.Random(f"mmmu/{_MMMU_FALLBACK_ID}").choice("ABCD")


def _mmmu_rows() -> list[dict]:
    return [
        mmmu_row("validation_Art_Theory_1", "Who painted <image 1>?", "B", ["Monet", "Manet", "Degas", "Renoir"],
                 subfield="Painting"),
        mmmu_row("validation_Math_2", "Which is prime?", "C", "['4', '6', '7', '9']", image_1=None),
        mmmu_row("validation_Physics_3", "What is the ratio of <image 1> to <image 2>?", "3.14",
                 image_2="images/validation_Physics_3_2.png"),
        mmmu_row(_MMMU_FALLBACK_ID, "Which curve is steepest?", _MMMU_DRAWN, ["w", "x", "y", "z"]),
        mmmu_row("validation_History_5", "In which year did the war start?", "1914"),
    ]  # fmt: skip


def test_mmmu_jsonl(tmp_path: Path) -> None:
    write_mmmu(tmp_path, _mmmu_rows())
    bench = build_benchmark("mmmu", tmp_path)
    items = bench.load()
    by_id = {it.id: it for it in items}
    assert list(by_id) == [r["id"] for r in _mmmu_rows()]
    art = by_id["validation_Art_Theory_1"]
    assert art.prompt == (
        "Who painted <image 1>?\nA. Monet\nB. Manet\nC. Degas\nD. Renoir\n\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert art.image_path == tmp_path / "images" / "validation_Art_Theory_1_1.png"
    assert art.load_image().size == (8, 6)
    assert art.meta["subject"] == "Art_Theory" and art.meta["subfield"] == "Painting"
    assert by_id["validation_Math_2"].meta["options"] == ["4", "6", "7", "9"]  # the hub's stringified list
    assert by_id["validation_Math_2"].load_image() is None
    physics = by_id["validation_Physics_3"]
    assert physics.prompt == (
        "What is the ratio of <image 1> to <image 2>?\n\nAnswer the question using a single word or phrase."
    )
    assert physics.target == ["3.14"]
    assert physics.image_path.name == "validation_Physics_3_1.png"  # image_1 only

    preds = {
        "validation_Art_Theory_1": "(B)",
        "validation_Math_2": "The answer is C.",
        "validation_Physics_3": "So the ratio is 3.14159",
        _MMMU_FALLBACK_ID: "I cannot tell",  # no option parses: the seeded draw, which is the gold here
        "validation_History_5": "It started in 1915",
    }
    scores = bench.score(items, preds)
    assert scores["score"] == pytest.approx(4 / 5)
    assert scores["n"] == 5
    assert scores["unparsed"] == pytest.approx(1 / 5)  # one reply of five fell to the draw
    assert scores["question_type/multiple-choice"] == 1.0
    assert scores["question_type/open"] == pytest.approx(0.5)
    assert scores["subject/Math"] == 1.0 and scores["subject/History"] == 0.0
    assert scores["discipline/Science"] == 1.0  # Math and Physics
    assert scores["discipline/Humanities and Social Science"] == 0.0
    assert scores["discipline/Art and Design"] == 1.0
    assert bench.score(items, preds) == scores  # the draw is the same every time

    # The draw depends on the item id only: with any other gold letter the same reply is wrong.
    other = next(letter for letter in "ABCD" if letter != _MMMU_DRAWN)
    rows = [r if r["id"] != _MMMU_FALLBACK_ID else {**r, "answer": other} for r in _mmmu_rows()]
    write_mmmu(tmp_path, rows)
    bench = build_benchmark("mmmu", tmp_path)
    assert bench.score(bench.load(), preds)["score"] == pytest.approx(3 / 5)


def test_mmmu_unparsable_replies_draw_the_documented_seeded_option(tmp_path: Path) -> None:
    ids = [f"validation_Math_{k}" for k in range(10, 22)]
    drawn = {qid: random.Random(f"mmmu/{qid}").choice("ABCDE") for qid in ids}
    assert len(set(drawn.values())) > 1  # the draw does depend on the id
    write_mmmu(tmp_path, [mmmu_row(qid, "Which?", drawn[qid], ["p", "q", "r", "s", "t"]) for qid in ids])
    bench = build_benchmark("mmmu", tmp_path)
    items = bench.load()
    scores = bench.score(items, ["no idea"] * len(items))
    assert scores["unparsed"] == 1.0
    assert scores["score"] == 1.0  # every draw lands on the gold written from the same seed


def test_mmmu_hub_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    written = write_mmmu(tmp_path, _mmmu_rows(), fmt="parquet")
    assert tmp_path / "Art_Theory" / "validation-00000-of-00001.parquet" in written
    items = build_benchmark("mmmu", tmp_path).load()
    by_id = {it.id: it for it in items}
    assert sorted(by_id) == sorted(r["id"] for r in _mmmu_rows())
    art = by_id["validation_Art_Theory_1"]
    assert art.image_path is None and art.image_b64  # the image comes inline from the parquet file
    assert art.load_image().getpixel((0, 0)) == (200, 30, 30)
    assert art.meta["options"] == ["Monet", "Manet", "Degas", "Renoir"]  # written as "['Monet', ...]"
    assert art.target == "B"
    assert by_id["validation_Math_2"].load_image() is None


def test_mmmu_rejects_bad_rows(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="validation.jsonl is missing"):
        build_benchmark("mmmu", tmp_path).load()
    write_mmmu(tmp_path, [mmmu_row("validation_Art_1", "q", "E", ["a", "b", "c", "d"])])
    with pytest.raises(SweepError, match=r"line 1\.answer.*'E', not one of the 4 option letters"):
        build_benchmark("mmmu", tmp_path).load()
    write_mmmu(tmp_path, [{**mmmu_row("validation_Art_1", "q", "A", ["a", "b"]), "question_type": "essay"}])
    with pytest.raises(SweepError, match=r"line 1\.question_type"):
        build_benchmark("mmmu", tmp_path).load()
    write_mmmu(tmp_path, [mmmu_row("validation_Art_1", "q", "A", "['a', 'b'")])
    with pytest.raises(SweepError, match=r"line 1\.options"):
        build_benchmark("mmmu", tmp_path).load()


# ---- MathVista -------------------------------------------------------------------------------


def _mathvista_problems() -> list[dict]:
    return [
        mathvista_problem("1", "What is the angle?", "150°", choices=["145°", "150°", "155°"],
                          query="Hint: Please answer the question and provide the correct option letter, e.g., A, "
                                "B, C, D, at the end.\nQuestion: What is the angle?\n"
                                "Choices:\n(A) 145°\n(B) 150°\n(C) 155°",
                          task="geometry problem solving"),
        mathvista_problem("2", "How many bars are there?", "12"),
        mathvista_problem("3", "How long is the rod?", "1.2", answer_type="float", precision=1.0, unit="cm"),
        mathvista_problem("4", "What is the slope?", "3.14", answer_type="float", precision=2.0),
        mathvista_problem("5", "Which color is the largest slice?", "dark red", choices=["red", "dark red", "blue"]),
    ]  # fmt: skip


def test_mathvista(tmp_path: Path) -> None:
    write_mathvista(tmp_path, _mathvista_problems())
    bench = build_benchmark("mathvista", tmp_path)
    items = bench.load()
    assert [it.id for it in items] == ["1", "2", "3", "4", "5"]
    # lmms-eval's format-prompt, not the record's own (official) query.
    assert items[0].prompt == (
        "What is the angle?\nA. 145°\nB. 150°\nC. 155°\nAnswer with the option's letter from the given choices directly."
    )
    assert items[1].prompt == "How many bars are there?\nAnswer the question using a single integer number."
    assert items[2].prompt == (
        "How long is the rod? (Unit: cm)\n"
        "Answer the question using a single floating-point number with one decimal place."
    )
    assert items[3].prompt.endswith("with two decimal places.")
    assert items[0].image_path == tmp_path / "images" / "1.jpg"
    assert items[0].load_image().size == (8, 6)
    assert items[2].meta["precision"] == 1

    preds = {
        "1": "The answer is B.",  # can_infer reads B -> "150°"
        "2": "I count 12 bars.",  # last number
        "3": "The rod is 1.24 cm long.",  # rounded to one decimal: 1.2
        "4": "The slope is 3.1",  # at two decimals 3.1 is not 3.14
        "5": "The largest slice is dark red.",  # two option texts inside: no rule reads it; closest choice
    }
    scores = bench.score(items, preds)
    assert scores["score"] == pytest.approx(4 / 5)
    assert scores["n"] == 5
    assert scores["unparsed"] == pytest.approx(1 / 5)
    assert scores["question_type/multi_choice"] == 1.0
    assert scores["question_type/free_form"] == pytest.approx(2 / 3)
    assert scores["task/geometry problem solving"] == 1.0
    assert scores["task/figure question answering"] == pytest.approx(3 / 4)
    wrong = bench.score(items, {"1": "A", "2": "12.9 is not it, 13", "3": "1.25", "4": "3.141", "5": "C"})
    # 1: A -> 145°; 2: 13; 3: round(1.25, 1) = 1.2 (right); 4: 3.14 (right); 5: C -> blue.
    assert wrong["score"] == pytest.approx(2 / 5) and wrong["unparsed"] == 0.0


def test_mathvista_list_file_and_validation(tmp_path: Path) -> None:
    write_mathvista(tmp_path, _mathvista_problems()[:2], as_list=True)
    assert [it.id for it in build_benchmark("mathvista", tmp_path).load()] == ["1", "2"]

    write_mathvista(tmp_path, [mathvista_problem("7", "q", "1.5", answer_type="float")])  # no precision
    with pytest.raises(SweepError, match=r"\['7'\]\.precision"):
        build_benchmark("mathvista", tmp_path).load()
    write_mathvista(tmp_path, [mathvista_problem("8", "q", "purple", choices=["red", "blue"])])
    with pytest.raises(SweepError, match=r"\['8'\]\.answer.*not one of the choices"):
        build_benchmark("mathvista", tmp_path).load()
    write_mathvista(tmp_path, [{**mathvista_problem("9", "q", "3"), "answer_type": "number"}])
    with pytest.raises(SweepError, match=r"\['9'\]\.answer_type"):
        build_benchmark("mathvista", tmp_path).load()
    (tmp_path / "testmini.json").unlink()
    with pytest.raises(SweepError, match="testmini.json is missing"):
        build_benchmark("mathvista", tmp_path).load()

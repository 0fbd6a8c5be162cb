"""Each benchmark loader on a tiny fixture in its real file format, then its scorer
against hand-computed values. Fixtures are written into tmp_path; nothing is downloaded."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

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
        "ai2d", "chartqa", "gqa", "mmbench", "mme", "ocrbench", "pope", "scienceqa_img", "textvqa",
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
    assert scores["n"] == 4
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
    # 1: right; 3: picks C (Texas), gold B; 4: option text "fire" -> B, right.
    assert scores["score"] == pytest.approx(2 / 3)
    assert scores["subject/natural science"] == 1.0
    assert scores["subject/social science"] == 0.0


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
        "0": "B", str(COPY_OFFSET): "The answer is A.", str(2 * COPY_OFFSET): "red",  # all right
        "1": "A", str(1 + COPY_OFFSET): "A",  # right, then wrong after rotation
    }  # fmt: skip
    scores = bench.score(items, preds)
    assert scores["score"] == pytest.approx(0.5)
    assert scores["vanilla"] == 1.0  # both originals right
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
    assert items[0].prompt == "Is there a dog in this image? Please answer yes or no."
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
    assert scores["perception_raw"] == pytest.approx(325.0)
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
    assert scores["score"] == pytest.approx(0.5)
    assert scores["abc_label/false"] == 1.0 and scores["abc_label/true"] == 0.0
    assert len(build_benchmark("ai2d", tmp_path, split="all").load()) == 3


# ---- TextVQA ---------------------------------------------------------------------------------


def test_textvqa(tmp_path: Path) -> None:
    data = [
        {"question_id": 34602, "question": "what is the brand of this camera?", "image_id": "003a8ae2ef43b901",
         "answers": ["nous les gosses"] * 2 + ["dakota"] * 5 + ["clos culombu"] * 3, "set_name": "val"},
        {"question_id": 34603, "question": "how many cups?", "image_id": "003a8ae2ef43b902",
         "answers": ["two", "2", "2", "three", "3", "3", "3", "4", "4", "4"], "set_name": "val"},
    ]  # fmt: skip
    _write_json(tmp_path / "TextVQA_0.5.1_val.json", {"dataset_name": "textvqa", "dataset_version": "0.5.1", "data": data})
    bench = build_benchmark("textvqa", tmp_path)
    items = bench.load()
    assert items[0].id == "34602"
    assert items[0].image_path == tmp_path / "train_images" / "003a8ae2ef43b901.jpg"
    assert items[0].prompt == "what is the brand of this camera?\nAnswer the question using a single word or phrase."
    # "Clos Culombu." matches 3 humans -> 0.9; "Two" matches 3 ("two", "2", "2") -> 0.9.
    assert bench.score(items, ["Clos Culombu.", "Two"])["score"] == pytest.approx(0.9)
    # "nous les gosses" (2 humans) -> 0.6; "five" -> 0.
    assert bench.score(items, ["Nous les gosses", "five"])["score"] == pytest.approx(0.3)


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
    assert scores["text_recognition"] == 1.0
    assert scores["type/Doc-oriented VQA"] == 0.0
    assert scores["type/Handwritten Mathematical Expression Recognition"] == 1.0

"""Helpers shared by tests: probe plans, a runtime for workers, an event recorder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import wait_until

# A mini grid small enough for a CLI test (two LLMs, tiny data, 20 steps); add grid.visual_tokens.
TINY_MINI = [
    "grid.llm=[xs,s]",
    "vision.pretrain.steps=30", "data.train_images=300", "data.test_images=100",
    "train.stages.0.steps=20", "train.stages.0.checkpoint_every=10", "train.stages.0.log_every=5", "eval.max_questions=100",
    "fit.n_boot=50",
]


def sweep_env(cwd: Path, env: Mapping[str, str] | None = None, drop: Sequence[str] = (), inherit: bool = True) -> dict[str, str]:
    """The environment of a CLI run in ``cwd``: outputs in cwd/outputs, MLflow's default store in cwd, ``env`` laid over.

    ``drop``: variables of this process's environment to leave out; ``inherit=False``: start from nothing but ``env``.
    """
    full = {**(os.environ if inherit else {}), "SWEEP_ROOT": str(cwd / "outputs")}
    for key in ("MLFLOW_TRACKING_URI", *drop):
        full.pop(key, None)
    full.update(env or {})
    return full


def sweep_cli(*args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 300, drop: Sequence[str] = (),
              inherit: bool = True) -> subprocess.CompletedProcess:
    """``python -m sweep ARGS`` in ``cwd`` as a user runs it (``sweep_env``); stdout and stderr captured as text."""
    return subprocess.run([sys.executable, "-m", "sweep", *args], cwd=cwd, env=sweep_env(cwd, env, drop, inherit),
                          capture_output=True, text=True, timeout=timeout)


def start_sweep(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """``python -m sweep ARGS`` started in ``cwd`` in a session of its own (to signal it), output piped as text."""
    return subprocess.Popen([sys.executable, "-m", "sweep", *args], cwd=cwd, env=sweep_env(cwd, env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def probe_plan(nodes: Mapping[str, tuple[Sequence[str], Mapping[str, Any]]], name: str = "probe",
               resources: Mapping[str, Any] | None = None) -> Any:
    """A plan of probe jobs; ``nodes`` maps a name to (upstream names, ProbeSpec fields), in topological order."""
    from sweep.plan import Job, Plan, make_id
    from sweep.specs.jobs import ProbeSpec

    ids: dict[str, str] = {}
    jobs = []
    for key, (deps, fields) in nodes.items():
        upstream = {d: ids[d] for d in deps}
        spec = ProbeSpec(name=key, **fields)
        ids[key] = make_id("probe", key, spec, upstream)
        jobs.append(Job(id=ids[key], kind="probe", spec=spec, upstream=upstream, resources=dict(resources or {"gpus": 0, "cpus": 1})))
    return Plan(name=name, jobs=tuple(jobs), cells=())


def make_runtime(root: Path, uri: str, name: str = "probe") -> Any:
    from sweep.runner import Runtime
    from sweep.tracking import Tracker

    tracker = Tracker(uri)
    exp = tracker.experiment(name)
    parent = tracker.parent_run(exp, name, {})
    return Runtime(store_root=str(root), tracking_uri=tracker.uri, experiment_id=exp, parent_run_id=parent,
                   sweep_name=name, lease_s=5.0)


class Recorder:
    """An Events sink that remembers what happened."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, int]] = []
        self.ends: list[tuple[str, str, bool]] = []
        self.waits: list[tuple[str, str]] = []

    def started(self, job: Any, attempt: int) -> None:
        self.starts.append((job.id, attempt))

    def finished(self, job: Any, outcome: Any, final: bool = True) -> None:
        self.ends.append((job.id, outcome.state, final))

    def waiting(self, job: Any, holder: str) -> None:
        self.waits.append((job.id, holder))


def tiny_hf_parts(tiny: Mapping[str, Path], compressor: str = "avgpool", visual_tokens: int = 1) -> dict[str, Any]:
    """Typed spec parts for the tiny HF models and LLaVA data of a test: cell, llm, compressor, vision, data."""
    import yaml

    from sweep.specs.data import LlavaData
    from sweep.specs.jobs import Cell
    from sweep.specs.models import HFLLM, ClipVision, CompressorEntry

    entry = yaml.safe_load((Path(__file__).resolve().parent.parent / "conf" / "compressor" / f"{compressor}.yaml").read_text())
    files = {"images": "images", "samples": 4}
    return {
        "cell": Cell(llm="tiny", visual_tokens=visual_tokens, compressor=compressor, seed=0),
        "llm": HFLLM(name="tiny", path=str(tiny["llm"]), params_b=1e-6, non_embedding_params_b=1e-6, resource_class="cpu"),
        "compressor": CompressorEntry.parse(entry[compressor], f"compressor.{compressor}"),
        "vision": ClipVision(path=str(tiny["clip"]), image_size=28, patch_size=14, feature_layers=(2, 3), params_b=1e-6),
        "data": LlavaData.parse({"root": str(tiny.get("data", "")), "stage1": {"json": "stage1.json", **files},
                                 "stage2": {"json": "stage2.json", **files}}, "data"),
    }


def bench_eval_spec(parts: Mapping[str, Any], conf: Mapping[str, Any]) -> Any:
    """A ``BenchEvalSpec`` from typed parts and an eval config (as in conf/eval/paper.yaml), resolved as the plan does."""
    from sweep.specs.data import BenchmarkEval
    from sweep.specs.jobs import BenchEvalSpec, bench_runs

    ev = BenchmarkEval.parse(dict(conf), "eval")
    return BenchEvalSpec(cell=parts["cell"], llm=parts["llm"], compressor=parts["compressor"], vision=parts["vision"],
                         families=ev.families, benchmarks=bench_runs(ev), max_items=ev.max_items, batch_size=ev.batch_size)


def save_tiny_clip(folder: Path, layers: int = 4) -> Path:
    """A tiny CLIP vision tower (28 px, 14 px patches: a 2x2 grid) and its processor, via save_pretrained."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=layers,
                                     num_attention_heads=2, image_size=28, patch_size=14)).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(folder)
    return folder


# ---- tiny Hugging Face models and LLaVA data for the paper-grid (HF) path --------------------

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
COLORS = {"red": (220, 20, 20), "blue": (20, 20, 220), "green": (20, 200, 20), "white": (250, 250, 250)}
TOKENIZER_TEXT = [f"a {c} square" for c in COLORS] + ["Is there a square in the image? yes no user assistant"]


def save_tiny_tokenizer(folder: Path, texts: Sequence[str] = TOKENIZER_TEXT) -> Any:
    """A byte-level BPE tokenizer (300 ids: the bytes, 3 specials, merges learned from ``texts``) with a
    ChatML template; ``<|endoftext|>`` (0) pads, ``<|im_end|>`` (2) ends a turn. Saved and returned."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(list(texts), trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<|endoftext|>", eos_token="<|im_end|>")
    tok.chat_template = CHATML
    tok.save_pretrained(folder)
    return tok


def _tiny_qwen_config(tokenizer: Any, tie: bool, hidden: int = 32) -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                       tie_word_embeddings=tie, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def save_tiny_qwen(folder: Path, tokenizer: Any) -> Path:
    """A randomly initialised tiny Qwen2 (tied embeddings), next to its tokenizer; seed the RNG first."""
    from transformers import Qwen2ForCausalLM

    Qwen2ForCausalLM(_tiny_qwen_config(tokenizer, tie=True)).save_pretrained(folder)
    return folder


def save_fixed_answer_qwen(folder: Path, tokenizer: Any, answer: str, margin: float = 4.0, seed: int = 0) -> Path:
    """A real tiny ``Qwen2ForCausalLM`` whose greedy reply to any chat prompt is ``answer`` then ``<|im_end|>``.

    Every layer's ``o_proj`` and ``down_proj`` are zero, so attention and MLP add nothing to the
    residual stream: a position's last hidden state is RMSNorm(its own input embedding), whatever
    the prompt and the image. With the answer's tokens t1..tk (distinct ids), every other token
    embeds along axis 0 and t_i along axis i; the untied LM head maps axis 0 to t1, axis i to
    t_(i+1) and axis k to EOS with logit margin * sqrt(hidden) against exactly 0 for every other
    token. The prompt ends with the template's "assistant\\n", never with a t_i (checked here), so
    generation reads t1..tk, EOS. The head's remaining columns are random: only the visual tokens
    (the connector's output, which stage 1 trains) reach them, so the connector has something to learn.
    """
    import torch
    from transformers import Qwen2ForCausalLM

    chain = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    eos = int(tokenizer.eos_token_id)
    cue = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True)
    last = tokenizer(cue, add_special_tokens=False)["input_ids"][-1]
    if len(set(chain)) != len(chain) or eos in chain or last in chain:
        raise ValueError(f"answer {answer!r} has ids {chain}: they must be distinct, not EOS, and not end a prompt ({last})")
    torch.manual_seed(seed)
    config = _tiny_qwen_config(tokenizer, tie=False)
    hidden, vocab, k = config.hidden_size, config.vocab_size, len(chain)
    if k + 1 >= hidden:
        raise ValueError(f"answer {answer!r} has {k} tokens; the tiny model spells at most {hidden - 2}")
    model = Qwen2ForCausalLM(config)
    embed, head = torch.zeros(vocab, hidden), torch.zeros(vocab, hidden)
    embed[:, 0] = 1.0
    for i, t in enumerate(chain):
        embed[t] = 0.0
        embed[t, i + 1] = 1.0
    for i, t in enumerate([*chain, eos]):
        head[t, i] = margin
    head[:, k + 1 :] = torch.randn(vocab, hidden - k - 1)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.get_input_embeddings().weight.copy_(embed)
        model.get_output_embeddings().weight.copy_(head)
    model.save_pretrained(folder)
    return folder


def write_llava_data(folder: Path) -> Path:
    """LLaVA JSON for both stages over four solid-colour squares: stage1.json (captions), stage2.json (chat)."""
    import json

    from PIL import Image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    for c, rgb in COLORS.items():
        Image.new("RGB", (32, 32), rgb).save(folder / "images" / f"{c}.png")
    caps = [{"id": c, "image": f"{c}.png", "conversations": [{"from": "human", "value": "<image>\nDescribe."},
                                                             {"from": "gpt", "value": f"a {c} square"}]} for c in COLORS]
    chat = [{"id": f"q{c}", "image": f"{c}.png", "conversations": [
        {"from": "human", "value": "<image>\nIs there a square in the image?"}, {"from": "gpt", "value": "yes"}]} for c in COLORS]
    chat.append({"id": "text", "conversations": [{"from": "human", "value": "Is there a square?"}, {"from": "gpt", "value": "no"}]})
    (folder / "stage1.json").write_text(json.dumps(caps))
    (folder / "stage2.json").write_text(json.dumps(chat))
    return folder


def write_pope_textvqa(ev: Path, colors: Mapping[str, tuple[int, int, int]] = COLORS) -> Path:
    """POPE (random split) and TextVQA fixtures in their release formats under ``ev``: one solid-colour
    image per colour, POPE labels yes/no/yes/no, TextVQA asking for the colour (ten identical answers)."""
    import json

    from PIL import Image

    (ev / "pope" / "coco").mkdir(parents=True, exist_ok=True)
    (ev / "pope" / "val2014").mkdir(exist_ok=True)
    (ev / "textvqa" / "train_images").mkdir(parents=True, exist_ok=True)
    labels = ["yes", "no", "yes", "no"]
    rows = [{"question_id": i + 1, "image": f"COCO_val2014_{i}.jpg", "text": "Is there a square in the image?", "label": lab}
            for i, lab in enumerate(labels)]
    (ev / "pope" / "coco" / "coco_pope_random.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    vqa = [{"question_id": i, "question": "what color is the square?", "image_id": c, "answers": [c] * 10,
            "ocr_tokens": []} for i, c in enumerate(colors)]
    (ev / "textvqa" / "TextVQA_0.5.1_val.json").write_text(json.dumps({"data": vqa}))
    for i, (c, rgb) in enumerate(colors.items()):
        Image.new("RGB", (32, 32), rgb).save(ev / "pope" / "val2014" / f"COCO_val2014_{i}.jpg")
        Image.new("RGB", (32, 32), rgb).save(ev / "textvqa" / "train_images" / f"{c}.jpg")
    return ev


def conf_with_tiny_paths(tmp_path: Path, tiny: Mapping[str, Path]) -> Path:
    """A copy of conf/ (for ``SWEEP_CONFIG_DIR``) whose qwen15-0p5b and CLIP entries point at the tiny model dirs."""
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(Path(__file__).resolve().parent.parent / "conf", conf, dirs_exist_ok=True)  # a rerun in the same folder
    llm = conf / "llm" / "qwen15-0p5b.yaml"
    llm.write_text(llm.read_text().replace("path: Qwen/Qwen1.5-0.5B", f"path: {tiny['llm']}"))
    vision = conf / "vision" / "clip-vit-l-336.yaml"
    vision.write_text(vision.read_text().replace("path: openai/clip-vit-large-patch14-336", f"path: {tiny['clip']}"))
    return conf


def paper_cli_args(extra: Sequence[str] = ()) -> list[str]:
    """The overrides ``run_paper_cli`` runs the paper grid with (CPU ranks, the tiny data's files), ``extra`` last."""
    return ["+grid=paper", "grid.llm=[qwen15-0p5b]", "grid.heldout_llm=[]", "grid.visual_tokens=[1]",
            "resources.gpu4.gpus=0", "resources.gpu8.gpus=0", "vision.feature_layers=[2,3]",
            "data.stage1.json=stage1.json", "data.stage1.images=images", "data.stage2.json=stage2.json", "data.stage2.images=images",
            *extra]


def llava_train_yaml(*, epochs: float, micro_batch_size: int, lrs: tuple[float, float], max_length: tuple[int, int],
                     checkpoint_every: int = 0, stage2_extra: str = "") -> str:
    """conf/train/paper.yaml for a test: the paper's two stages (connector, then all) on 4-sample batches."""
    common = f"epochs: {epochs}, global_batch_size: 4, micro_batch_size: {micro_batch_size}, warmup: 0.0, schedule: cosine"
    return f"""kind: llava
stages:
  - {{name: stage1, data: stage1, {common}, lr: {lrs[0]:.1e}, trainable: connector, precision: bf16,
     checkpoint_every: {checkpoint_every}, log_every: 1, max_length: {max_length[0]}}}
  - {{name: stage2, data: stage2, {common}, lr: {lrs[1]:.1e}, trainable: all, precision: bf16,
     checkpoint_every: 0, log_every: 1, max_length: {max_length[1]}{stage2_extra}}}
text_tokens_per_sample: 20
"""


def bench_eval_yaml(*, batch_size: int, max_new_tokens: int) -> str:
    """conf/eval/paper.yaml for a test: POPE (random split) and TextVQA, two items each."""
    return f"""kind: benchmarks
root: ${{oc.env:SWEEP_EVAL_DATA,/data/eval}}
families: {{reasoning: [pope], ocr: [textvqa]}}
benchmarks: {{pope: {{categories: [random]}}}}
max_items: 2
batch_size: {batch_size}
max_new_tokens: {max_new_tokens}
samples_per_cell: 4
text_tokens_per_sample: 20
"""


def run_paper_cli(tmp_path: Path, tiny: Mapping[str, Path], train_yaml: str, eval_yaml: str, extra: Sequence[str] = (),
                  expect_rc: int = 0, timeout: float = 600, env_extra: Mapping[str, str] | None = None) -> Any:
    """``python -m sweep +grid=paper`` in a subprocess, one cell (qwen15-0p5b, V=1) pointed at the tiny
    models (``tiny["llm"]``, ``tiny["clip"]``), LLaVA data (``tiny["data"]``) and eval root (``tiny["eval"]``),
    with conf/train/paper.yaml and conf/eval/paper.yaml replaced by the given texts in a copied conf dir.
    Runs in ``tmp_path`` (so MLflow goes to ``tmp_path/mlflow.db``, job folders to ``tmp_path/out``);
    ``extra`` overrides go last (a repeated key: the last one wins), ``env_extra`` joins the environment.
    Returns the job runs of the "paper" experiment as ``{sweep_kind: [run, ...]}``, or, when ``expect_rc``
    is not 0, the finished process."""

    from mlflow import MlflowClient

    conf = conf_with_tiny_paths(tmp_path, tiny)
    (conf / "train" / "paper.yaml").write_text(train_yaml)
    (conf / "eval" / "paper.yaml").write_text(eval_yaml)
    env = {"SWEEP_ROOT": str(tmp_path / "out"), "SWEEP_CONFIG_DIR": str(conf), "SWEEP_DATA": str(tiny["data"]),
           "SWEEP_EVAL_DATA": str(tiny["eval"]), "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    run = sweep_cli(*paper_cli_args(extra), cwd=tmp_path, env=env, timeout=timeout)
    assert run.returncode == expect_rc, run.stdout[-3000:] + run.stderr[-3000:]
    if expect_rc:
        return run

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("paper").experiment_id], max_results=100)
    jobs: dict[str, list[Any]] = {}
    for r in runs:
        if r.data.tags.get("sweep_role") == "job":
            jobs.setdefault(r.data.tags["sweep_kind"], []).append(r)
    return jobs


def features_dir(root: Path) -> Path | None:
    """The features job's folder under a store root (``sweep.root``), once it exists."""
    found = list((root / "jobs").glob("features-*"))
    return found[0] if found else None


def wait_for_features_checkpoint(proc: subprocess.Popen, root: Path) -> None:
    """Wait until the run ``proc`` wrote its features job's first checkpoint under ``root``; fail if it ends first."""
    def checkpointed() -> bool:
        d = features_dir(root)
        return d is not None and any((d / "ckpt").glob("step_*.pt"))

    wait_until(lambda: checkpointed() or proc.poll() is not None, 600, "the features job's first checkpoint")
    if proc.poll() is not None:
        out, err = proc.communicate()
        raise AssertionError(f"the run ended before its first checkpoint ({proc.returncode}):\n{out[-2000:]}\n{err[-2000:]}")


def runs_by_role(uri: str, experiment: str = "mini") -> dict[str, list[Any]]:
    """The experiment's MLflow runs grouped by their ``sweep_role`` tag (parent, job, fit, ...)."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    out: dict[str, list[Any]] = {}
    for run in client.search_runs([exp.experiment_id], max_results=1000):
        out.setdefault(run.data.tags.get("sweep_role"), []).append(run)
    return out

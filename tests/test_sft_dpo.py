"""Causal-LM tasks on the tiny Llama (SmolLM2's config and real tokenizer/chat template):
SFT on chat messages and on prompt/completion pairs, DPO on preference pairs, and generation
(chat template, sampling settings, streaming through `serve`)."""

from __future__ import annotations

import io
import json
import math

import pytest
from conftest import run_in_process, tiny_config


def llama_config(tiny_llama, data: str, task: str = "sft", **data_opts) -> dict:
    cfg = tiny_config(tiny_llama, data, task=task, method={"name": "lora"},
                      data={"path": data, "max_length": 64, "max_train_samples": 64, "max_eval_samples": 16,
                            "label_column": None, **data_opts})
    cfg["training"].update(learning_rate=1e-2, max_steps=6, eval_steps=6)
    return cfg


def losses(run_id):
    from tuitune.history import History

    evals = {e["phase"]: e["metrics"] for e in History().evaluations(run_id)}
    return evals["baseline"], evals["final"]


@pytest.fixture(scope="module")
def prompt_completion_file(tmp_path_factory):
    rows = [{"prompt": f"Question {i}: what colour is the sky?", "completion": " The sky is blue."} for i in range(40)]
    path = tmp_path_factory.mktemp("pc") / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_sft_on_chat_messages_learns_and_generates(tiny_llama):
    from tuitune.engine.predict import Predictor

    run_id = run_in_process(llama_config(tiny_llama, "demo:chat", messages_column="messages"))
    base, final = losses(run_id)
    assert math.isfinite(final["eval_loss"]) and final["eval_loss"] < base["eval_loss"]
    assert "eval_perplexity" in final

    pred = Predictor.for_run(run_id)
    pieces: list[str] = []
    out = pred.predict("What is your name?", max_new_tokens=8, do_sample=False, on_token=pieces.append)
    assert out["new_tokens"] >= 1 and pieces
    assert "".join(pieces).strip() == out["generated"]
    # Sampling follows its seed: the same seed answers the same, different seeds differ.
    sample = [pred.predict("Hello", max_new_tokens=8, temperature=1.5, top_p=1.0, seed=s)["generated"]
              for s in (1, 1, 2, 3, 4)]
    assert sample[0] == sample[1] and sample[0]
    assert len(set(sample)) >= 2, sample
    base_pred = Predictor.for_run(run_id, base=True)
    assert base_pred.predict("Hello", max_new_tokens=3, do_sample=False)["new_tokens"] >= 1


def test_sft_prompt_completion_trains_on_the_completion_only(tiny_llama, prompt_completion_file):
    from tuitune.engine.runner import Run
    from tuitune import paths
    from tuitune.config import validate_config
    from tuitune.history import History

    cfg = llama_config(tiny_llama, str(prompt_completion_file))
    run_id = run_in_process(cfg)
    base, final = losses(run_id)
    assert final["eval_loss"] < base["eval_loss"]

    # The collated labels ignore the prompt and keep the completion.
    h = History()
    rid = h.create_run(validate_config(cfg).model_dump(mode="json"), run_dir_for=paths.run_dir)
    run = Run(rid, history=h)
    trainer = run.build()
    row = trainer.train_dataset[0]
    prompt = run.dataset["train"][0]["prompt"]  # TRL tokenizes the rows in order: the same row
    prompt_ids = run.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert row["input_ids"][:len(prompt_ids)] == prompt_ids
    batch = trainer.data_collator([row])
    labels = batch["labels"][0].tolist()
    assert all(v == -100 for v in labels[:len(prompt_ids)])
    learned = run.tokenizer.decode([v for v in labels if v != -100], skip_special_tokens=True)
    assert learned.strip() == "The sky is blue."
    assert run.counter.tokens > 0  # the token counter wraps TRL's collator


def test_sft_packing_runs(tiny_llama):
    cfg = llama_config(tiny_llama, "demo:chat", messages_column="messages", packing=True,
                       completion_only_loss=False)
    cfg["training"]["max_steps"] = 3
    run_id = run_in_process(cfg)
    assert math.isfinite(losses(run_id)[1]["eval_loss"])


def test_dpo_prefers_the_chosen_answer(tiny_llama):
    from tuitune.engine.predict import Predictor
    from tuitune.history import History

    cfg = llama_config(tiny_llama, "demo:chat-pairs", task="dpo")
    cfg["training"].update(beta=0.2, learning_rate=2e-2)
    run_id = run_in_process(cfg)
    base, final = losses(run_id)
    assert abs(base["eval_loss"] - math.log(2)) < 0.05  # policy == reference before training
    assert final["eval_loss"] < base["eval_loss"]
    assert final["eval_rewards/accuracies"] >= base["eval_rewards/accuracies"]
    # TRL's reward figures are part of every evaluation (shown by `tuitune show` and the Evaluation screen)
    assert {f"eval_rewards/{k}" for k in ("chosen", "rejected", "accuracies", "margins")} <= set(final)
    keys = {m["key"] for m in History().metrics(run_id)}
    assert "train/loss" in keys and any(k.startswith("train/rewards/") for k in keys)
    out = Predictor.for_run(run_id).predict("How are you?", max_new_tokens=4, do_sample=False)
    assert out["new_tokens"] >= 1


def test_serve_streams_generated_tokens_as_json_lines(tiny_llama, monkeypatch, capsys):
    from tuitune.engine import predict

    run_id = run_in_process(dict(llama_config(tiny_llama, "demo:chat", messages_column="messages"),
                                 training={"max_steps": 1, "use_cpu": True, "logging_steps": 1,
                                           "per_device_train_batch_size": 4, "eval_steps": 1}))
    requests = [{"id": 1, "text": "Hi there", "stream": True, "max_new_tokens": 6, "do_sample": False},
                {"id": 2, "text": "Hi there", "base": True, "max_new_tokens": 3, "do_sample": False},
                {"id": 3, "text": "Hi", "temperature": 0, "max_new_tokens": 3}]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(json.dumps(r) for r in requests) + "\n"))
    assert predict.serve(run_id) == 0
    lines = []
    for x in capsys.readouterr().out.splitlines():
        try:
            lines.append(json.loads(x))
        except ValueError:
            pass  # Trainer's own printed dicts from the tiny run above
    assert lines[0] == {"ready": True}
    streamed = [x for x in lines if x.get("id") == 1 and "token" in x]
    final = next(x for x in lines if x.get("id") == 1 and x.get("done"))
    assert streamed and "".join(x["token"] for x in streamed).strip() == final["generated"]
    assert next(x for x in lines if x.get("id") == 2)["base"] is True
    assert "temperature must be > 0" in next(x for x in lines if x.get("id") == 3)["error"]

    from tuitune.engine.__main__ import main

    assert main(["predict", str(run_id), "Hi there", "--max-new-tokens", "2", "--greedy", "--seed", "1"]) == 0
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert answer["task"] == "sft" and 1 <= answer["new_tokens"] <= 2

    # The real `tuitune predict` passes the generation flags through and prints the answer.
    import subprocess

    from conftest import tuitune_cmd

    cli = subprocess.run(tuitune_cmd() + ["predict", str(run_id), "Hi there", "--max-new-tokens", "2", "--greedy",
                                          "--seed", "1"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == answer["generated"]


def test_chat_data_on_a_model_without_chat_template_says_what_to_do(tiny_llama):
    from tuitune.engine.tasks import get_task
    from tuitune.config import validate_config
    from tuitune.errors import TuituneError

    task = get_task(validate_config(llama_config(tiny_llama, "demo:chat", messages_column="messages")))

    class NoTemplate:
        chat_template = None

    with pytest.raises(TuituneError, match="no chat template.*prompt/completion"):
        task._check_chat_template(NoTemplate(), [{"messages": [{"role": "user", "content": "hi"}]}])


def test_prefix_tuned_generation_uses_the_prefix(tiny_llama):
    """transformers 5's generate() drops prefix tuning's cache; our decoding loop keeps it."""
    import torch
    from peft import PrefixTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuitune.engine.predict import Predictor

    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_llama)),
                           PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    with torch.no_grad():
        for p in model.prompt_encoder.parameters():
            p.mul_(50)  # a prefix strong enough to change the answer
    meta = {"task": "sft", "method": "prefix_tuning", "peft": True}
    tuned = Predictor(model, tok, meta)
    base = Predictor(model.base_model, tok, {"task": "sft"})
    pieces: list[str] = []
    a = tuned.predict("Hello there, how are you?", max_new_tokens=6, do_sample=False, on_token=pieces.append)
    b = base.predict("Hello there, how are you?", max_new_tokens=6, do_sample=False)
    assert a["generated"] != b["generated"]
    assert "".join(pieces).strip() == a["generated"]
    sampled = tuned.predict("Hi", max_new_tokens=3, temperature=0.7, top_p=0.9, seed=0)
    assert 1 <= sampled["new_tokens"] <= 3

"""The memory estimate's sequence length: token lengths of the real rows (tokenizer.json and chat
template, without torch), the expected longest row a run draws, and the estimate using it."""

from __future__ import annotations

import asyncio
import csv
import json
import random
import subprocess
import sys
from statistics import mean

import pytest

from conftest import ROOT, tiny_config
from tuitune.dataset_info import batch_length, typical_longest


def test_typical_longest_is_the_median_longest_row_of_random_draws():
    assert typical_longest([1, 2, 3, 4], 1) == 2  # the (lower) median row
    assert typical_longest([4, 1, 3, 2], 2) == 3  # P(longest ≤ 3) = 9/16 ≥ ½ > P(longest ≤ 2) = 4/16
    assert typical_longest([4, 1, 3, 2], 4) == 4 == typical_longest([4, 1, 3, 2], 99)  # every row drawn
    rng = random.Random(0)
    xs = [rng.randint(5, 200) for _ in range(300)]
    for draws in (1, 8, 40):
        longest = sorted(max(rng.choice(xs) for _ in range(draws)) for _ in range(4001))
        assert abs(typical_longest(xs, draws) - longest[2000]) <= 2


def _ceil8(x: int) -> int:
    return -(-x // 8) * 8


def test_batch_length_counts_the_rows_tokens_with_the_model_tokenizer(tiny_bert, tiny_csv, tmp_path):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_bert / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    with open(tiny_csv, encoding="utf-8") as fh:
        texts = [r["text"] for r in csv.DictReader(fh)]
    # a tenth of the rows twice as long: most batches of 4 miss them (0.9⁴ > ½), a run of 20 steps does not
    texts = [t + (" " + t if i % 10 == 0 else "") for i, t in enumerate(texts)]
    f = tmp_path / "rows.csv"
    with open(f, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([t, "a"] for t in texts)
    counts = [len(e.ids) for e in tok.encode_batch(texts)]
    data = {"path": str(f), "text_column": "text", "max_length": 64, "validation_size": 0.1}
    bl = batch_length(data, "classification", 4, training={"max_steps": 1}, model_path=str(tiny_bert), pad_multiple=8)
    assert bl.how == "tokenizer" and bl.rows == len(texts) and bl.drawn == 4
    assert bl.mean == pytest.approx(mean(counts))
    assert bl.length == typical_longest([_ceil8(c) for c in counts], 4)
    assert bl.length <= _ceil8(max(counts))
    assert bl.longest == _ceil8(max(counts))
    # more steps draw more rows: the run's longest batch is longer; a whole epoch meets the longest row
    assert batch_length(data, "classification", 4, training={"max_steps": 20}, model_path=str(tiny_bert),
                        pad_multiple=8).length > bl.length
    epoch = batch_length(data, "classification", 4, training={"num_train_epochs": 1}, model_path=str(tiny_bert),
                         pad_multiple=8)
    assert epoch.drawn == len(texts) - 24 and epoch.length == _ceil8(max(counts))
    # max_length truncates; without a tokenizer.json the lengths are approximated, and say so
    assert batch_length({**data, "max_length": 8}, "classification", 4, model_path=str(tiny_bert)).length == 8
    assert batch_length(data, "classification", 4, model_path=None).how.startswith("approx.")
    # data that cannot be read here (a hub name, a missing file): unknown, the estimate uses max_length
    assert batch_length({"path": "someone/hub-dataset"}, "classification", 4) is None
    assert batch_length({"path": str(tmp_path / "missing.csv")}, "classification", 4) is None


def test_chat_and_preference_rows_are_measured_as_the_chat_template_renders_them(tiny_llama, tmp_path):
    from transformers import AutoTokenizer

    from tuitune.datasources import _chat, _chat_pairs

    tok = AutoTokenizer.from_pretrained(str(tiny_llama))

    def n_tokens(messages) -> int:
        return len(tok(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"])

    convs = _chat()["messages"][:60]
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs), encoding="utf-8")
    sft = batch_length({"path": str(chat), "messages_column": "messages", "max_length": 256}, "sft", 8,
                       training={"max_steps": 1}, model_path=str(tiny_llama))
    assert sft.how == "tokenizer" and sft.mean == pytest.approx(mean(n_tokens(c) for c in convs))
    assert sft.mean > mean(len(m["content"].split()) for c in convs for m in c) + 20  # the template's system turn
    # DPO: a pair is padded to the longer of prompt+chosen and prompt+rejected
    p = _chat_pairs()
    pairs = [{"prompt": p["prompt"][i], "chosen": p["chosen"][i], "rejected": p["rejected"][i]} for i in range(60)]
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in pairs), encoding="utf-8")
    dpo = batch_length({"path": str(f), "max_length": 256}, "dpo", 4, training={"max_steps": 1},
                       model_path=str(tiny_llama))
    longer = [max(n_tokens(r["prompt"] + r["chosen"]), n_tokens(r["prompt"] + r["rejected"])) for r in pairs]
    assert dpo.mean == pytest.approx(mean(longer))
    short = batch_length({"path": str(f), "max_length": 16}, "dpo", 4, model_path=str(tiny_llama))
    assert short.length == short.longest == 16


def test_the_estimate_uses_the_datas_batch_length_and_falls_back_to_max_length(tiny_bert, tiny_csv):
    from tuitune.config import validate_config
    from tuitune.model_info import config_estimate, inspect_model

    cfg = validate_config(tiny_config(tiny_bert, tiny_csv, data={"max_length": 64}))
    info = inspect_model(str(tiny_bert))
    assert info.tokenizer_path == str(tiny_bert)
    est, bl = config_estimate(info, cfg)
    assert bl is not None and bl.length < 64
    assert est == info.estimate("full", 8, bl.length, task="classification")
    assert est["activations"] < info.estimate("full", 8, 64)["activations"]
    unknown = validate_config(tiny_config(tiny_bert, "someone/hub-dataset", data={"max_length": 64}))
    est, bl = config_estimate(info, unknown)
    assert bl is None and est == info.estimate("full", 8, 64)


def test_batch_length_loads_no_ml_library(tiny_bert, tiny_csv):
    code = (f"from tuitune.config import validate_config\n"
            f"from tuitune.model_info import config_estimate, inspect_model\n"
            f"import json\n"
            f"cfg = validate_config(json.loads({json.dumps(json.dumps(tiny_config(tiny_bert, tiny_csv)))}))\n"
            f"est, bl = config_estimate(inspect_model({str(tiny_bert)!r}), cfg)\n"
            f"assert bl is not None and bl.how == 'tokenizer'\n"
            "import sys\n"
            "print(','.join(m for m in ('torch', 'transformers', 'peft', 'trl', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""


def test_model_screen_says_which_length_its_estimate_counts(tiny_bert, tiny_csv):
    from ui_helpers import wait_for

    from textual.screen import Screen

    from tuitune.app import make_app
    from tuitune.screens.wizard import ModelScreen

    async def go():
        app = make_app()
        async with app.run_test(size=(100, 40)) as pilot:
            app.draft = tiny_config(tiny_bert, tiny_csv, data={"max_length": 64})
            await app.push_screen(ModelScreen())
            info = app.screen.query_one("#model-info")
            await wait_for(pilot, lambda: "rows the run draws" in str(info.render()), 20, "estimate with data")
            assert "typical longest of the 48" in str(info.render())  # 6 steps × 8 rows
            # the Dataset step changes the data, then back: the estimate follows it
            await app.push_screen(Screen())
            app.draft["data"] = {"path": "someone/hub-dataset", "max_length": 64}
            app.pop_screen()
            await wait_for(pilot, lambda: "no data read" in str(info.render()), 20, "estimate without data")
            assert "length 64" in str(info.render())

    asyncio.run(go())

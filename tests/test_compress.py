"""Compress and ship (issue 12), on tiny real models trained a few steps: every variant folder reloads
with its loader and predicts; pruning reaches its sparsity; clustering keeps ≤ k values per layer;
refusals are one line and the other variants still run; an interrupted variant leaves no complete-
looking folder; the history migration; the model card's front matter; the GGUF round trip."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import run_in_process, tiny_config, tuitune_cmd


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("compress-home")


@pytest.fixture
def shared_home(home, monkeypatch):
    monkeypatch.setenv("TUITUNE_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def cls_run(home, tiny_bert, tiny_csv):
    """A tiny classification run (full fine-tuning) in the module's history."""
    old = os.environ.get("TUITUNE_HOME")
    os.environ["TUITUNE_HOME"] = str(home)
    try:
        return run_in_process(tiny_config(tiny_bert, tiny_csv))
    finally:
        os.environ["TUITUNE_HOME"] = old or ""


@pytest.fixture(scope="module")
def bpe_llama(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide Llama with a 512-token byte-level BPE vocabulary trained here on the demo chat
    text, with a ChatML template: the shape of SmolLM2 (tied embeddings, GQA) at a fraction of its
    49k-token vocabulary, which the GGUF writer and transformers' GGUF reader would walk several times."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from conftest import _pretrain_a_little
    from tuitune.datasources import _chat

    out = tmp_path_factory.mktemp("bpe-llama")
    texts = [m["content"] for conv in _chat()["messages"][:200] for m in conv]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    tok.chat_template = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
                         "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    _pretrain_a_little(model, tok)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def _cli(*args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([*tuitune_cmd(), *args], capture_output=True, text=True, env=env, timeout=300)


def test_every_variant_reloads_predicts_and_is_recorded(shared_home, cls_run):
    import torch

    from tuitune import paths
    from tuitune.compress_cli import VARIANTS
    from tuitune.engine import compress
    from tuitune.history import History

    model_dir = paths.run_dir(cls_run) / "model"
    before = _digest(model_dir)
    rows = compress.compress(cls_run, recover_steps=2, isolate=False)
    assert _digest(model_dir) == before, "compress changed the run's own saved model"
    by = {r["variant"]: r for r in rows}
    assert set(by) == {"fp32", *VARIANTS}
    assert all(r["status"] == "done" for r in rows), [(r["variant"], r.get("reason")) for r in rows]

    src = compress.Source(cls_run)
    inputs = src.eval_inputs()
    ref = src.load()
    with torch.no_grad():
        ref_logits = ref(**inputs["single"][0]).logits
    for name, row in by.items():
        path = Path(row["path"])
        assert path.parent.name == "compressed" and not any(p.name.startswith(".") for p in path.parent.iterdir())
        model = compress.load_variant(path)
        with torch.no_grad():
            logits = model(**inputs["single"][0]).logits
        assert logits.shape == ref_logits.shape and torch.isfinite(logits).all(), name
        assert 0 <= row["metrics"]["accuracy"] <= 1 and row["size_bytes"] > 0 and row["latency_p50_ms"] > 0
        if name.startswith("prune-") and not name.startswith("prune-ffn"):
            want = int(name.split("-")[1]) / 100
            assert abs(compress.sparsity(model, src.task) - want) < 0.01, name
        if name.startswith("cluster-"):
            k = int(name.split("-")[1])
            layers = compress._clusterable(model, src.task)
            assert layers
            assert all(m.weight.unique().numel() <= k for _, m in layers), name
        if name == "prune-ffn-50":
            assert model.config.intermediate_size == 32  # 64 → 32 neurons: the compute is gone
            assert model.bert.encoder.layer[0].intermediate.dense.weight.shape[0] == 32
    assert torch.allclose(compress.load_variant(by["fp32"]["path"])(**inputs["single"][0]).logits, ref_logits)
    assert by["int8-dynamic"]["size_bytes"] < by["fp32"]["size_bytes"] / 2
    assert by["cluster-16"]["size_bytes"] < by["cluster-256"]["size_bytes"] < by["fp32"]["size_bytes"] / 3

    stored = {r["variant"]: r for r in History().compressions(cls_run)}
    assert stored["int8-dynamic"]["status"] == "done"
    assert stored["int8-dynamic"]["metrics"] == by["int8-dynamic"]["metrics"]
    assert stored["prune-50"]["recover_steps"] == 2 and stored["prune-50"]["info"]["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_cli_compress_measures_in_its_own_process_and_prints_the_table(shared_home, cls_run):
    out = _cli("compress", str(cls_run), "--variant", "int8-dynamic", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    by = {r["variant"]: r for r in data["variants"]}
    assert by["int8-dynamic"]["status"] == "done" and by["int8-dynamic"]["peak_rss"] > 50 * 2**20
    text = _cli("compress", str(cls_run), "--show")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split()[:3] == ["variant", "MB", "×size"] and any(ln.startswith("int8-dynamic ") for ln in lines)


def test_a_failing_variant_gets_one_line_and_an_interrupted_one_leaves_nothing(shared_home, cls_run, monkeypatch):
    from tuitune import paths
    from tuitune.engine import compress
    from tuitune.history import History

    out_dir = paths.run_dir(cls_run) / "compressed"

    def dies_half_way(src, out, recover_steps, progress):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt  # Ctrl-C (or SIGTERM turned into an exception) while writing

    monkeypatch.setitem(compress.BUILDERS, "prune-70", dies_half_way)
    src = compress.Source(cls_run)
    with pytest.raises(KeyboardInterrupt):
        compress._write_variant(src, "prune-70", 0, None)
    assert not any(p.name.startswith(".prune-70") for p in out_dir.iterdir())
    # A killed process leaves its temporary folder: the next compress removes it; it never looks complete.
    stale = out_dir / ".cluster-16.tmp-999999"
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    h = History()
    batch = h.start_compression(cls_run, ["cluster-16"])
    h.conn.execute("UPDATE compressions SET pid=999999, status='building' WHERE batch=?", (batch,))
    assert {r["variant"]: r for r in h.compressions(cls_run)}["cluster-16"]["status"] == "interrupted"

    def boom(src, out, recover_steps, progress):
        raise RuntimeError("no room for this variant\nsecond line")

    monkeypatch.setitem(compress.BUILDERS, "prune-30", boom)
    rows = compress.compress(cls_run, ["prune-30", "prune-50"], isolate=False)
    assert not stale.exists()
    by = {r["variant"]: r for r in rows}
    assert by["prune-30"]["status"] == "failed" and by["prune-30"]["reason"] == "RuntimeError: no room for this variant"
    assert by["prune-50"]["status"] == "done" and by["fp32"]["status"] == "done"


def test_impossible_variants_get_one_line_from_the_cli_and_the_others_still_run(tmp_path, tiny_csv):
    """A DistilBERT with odd widths (30 in, 37 feed-forward): structured pruning does not know its
    feed-forward block (one line, failed); bitsandbytes 4-bit builds and runs on a CPU without
    AVX512-BF16, and is refused in one line, naming a layer, where its fused kernel would fail;
    8-bit builds. The CLI exits 0 because a variant was built, 1 when none was."""
    import copy

    import torch
    from bitsandbytes.functional import _convert_weight_packed_for_cpu
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForMaskedLM

    from tuitune import demo, paths
    from tuitune.engine import compress

    tok = AutoTokenizer.from_pretrained(str(demo.path("demo:minilm")))
    torch.manual_seed(0)
    cfg = DistilBertConfig(vocab_size=tok.vocab_size, dim=30, n_layers=1, n_heads=2, hidden_dim=37,
                           max_position_embeddings=64)
    DistilBertForMaskedLM(cfg).save_pretrained(tmp_path / "distil")
    tok.save_pretrained(tmp_path / "distil")
    run_id = run_in_process(tiny_config(tmp_path / "distil", tiny_csv, training={"max_steps": 2}))
    env = {"TUITUNE_COMPRESS_IN_PROCESS": "1"}
    out = _cli("compress", str(run_id), "--variant", "prune-ffn-50", "--variant", "bnb-4bit-nf4",
               "--variant", "bnb-8bit", env_extra=env)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    ffn = [ln for ln in lines if ln.startswith("prune-ffn-50 ")]
    assert len(ffn) == 1 and "failed: structured pruning needs a BERT- or Llama-style feed-forward block" in ffn[0]
    rows = {r["variant"]: r for r in json.loads(_cli("compress", str(run_id), "--show", "--json").stdout)["variants"]}
    assert rows["bnb-8bit"]["status"] == "done" and rows["fp32"]["status"] == "done"
    nf4 = rows["bnb-4bit-nf4"]
    if compress.bnb4_fused_cpu():
        assert nf4["status"] == "failed" and "AVX512-BF16" in nf4["reason"] and "30→30" in nf4["reason"]
        assert not (paths.run_dir(run_id) / "compressed" / "bnb-4bit-nf4").exists()
    else:
        assert nf4["status"] == "done", nf4.get("reason")
        assert 0 <= nf4["metrics"]["accuracy"] <= 1
        # The rule the refusal applies is bitsandbytes' own: its fused-kernel repacking fails on these
        # layers and works on a layer that fits.
        model = compress.load_variant(nf4["path"])
        layers = [m for m in model.modules() if type(m).__name__ == "Linear4bit"]
        assert layers and compress.bnb4_misfit(compress.Source(run_id).load(), compress.BNB_SKIP)
        for m in layers:
            with pytest.raises((AssertionError, RuntimeError)):
                _convert_weight_packed_for_cpu(m.weight.data.clone(), copy.deepcopy(m.weight.quant_state))
        import bitsandbytes as bnb

        fits = bnb.nn.Linear4bit(64, 32, quant_type="nf4")
        fits.weight = bnb.nn.Params4bit(torch.randn(32, 64), requires_grad=False, quant_type="nf4").to("cpu")
        _convert_weight_packed_for_cpu(fits.weight.data.clone(), copy.deepcopy(fits.weight.quant_state))

    none_built = _cli("compress", str(run_id), "--variant", "prune-ffn-50", env_extra=env)
    assert none_built.returncode == 1, none_built.stdout + none_built.stderr
    assert not (Path(rows["fp32"]["path"]).parent / "prune-ffn-50").exists()


def test_a_killed_or_interrupted_compress_leaves_no_complete_looking_folder(shared_home, cls_run, monkeypatch):
    """`kill -9` of the engine mid-build leaves only a dot-named temporary folder (never read as a
    variant; the row reads `interrupted`); Ctrl-C (here: an exception in the progress callback) makes
    the engine unwind and remove its folder; the next compress removes what a killed one left."""
    import signal
    import sys

    from tuitune import compress_cli, paths
    from tuitune.history import History

    out_dir = paths.run_dir(cls_run) / "compressed"

    def prune_30():
        """The visible prune-30 folder's digest (None when absent); every visible folder is complete."""
        if not out_dir.exists():
            return None
        shown = [p for p in out_dir.iterdir() if not p.name.startswith(".")]
        assert all((p / "tuitune.json").is_file() for p in shown), [p.name for p in shown]
        return _digest(out_dir / "prune-30") if (out_dir / "prune-30").exists() else None

    before = prune_30()
    proc = subprocess.Popen([sys.executable, "-m", "tuitune.engine", "compress", str(cls_run), "--variant", "prune-30",
                             "--recover-steps", "400", "--in-process"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    for line in proc.stdout:
        if "recovery step" in line:  # step 100 of 400: the variant is being built
            break
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    proc.stdout.close()
    assert prune_30() == before
    assert [p.name for p in out_dir.iterdir() if p.name.startswith(".prune-30.tmp-")] == [f".prune-30.tmp-{proc.pid}"]
    assert {r["variant"]: r for r in History().compressions(cls_run)}["prune-30"]["status"] == "interrupted"

    def ctrl_c(msg):
        if "recovery step" in msg:
            raise KeyboardInterrupt

    monkeypatch.setenv("TUITUNE_COMPRESS_IN_PROCESS", "1")  # fp32 measured in the engine: no extra process
    with pytest.raises(KeyboardInterrupt):
        compress_cli.run_compress(cls_run, ["prune-30"], 400, on_progress=ctrl_c)
    assert prune_30() == before
    assert [p.name for p in out_dir.iterdir() if p.name.startswith(".")] == []
    assert {r["variant"]: r for r in History().compressions(cls_run)}["prune-30"]["status"] == "interrupted"


def test_speed_is_against_the_fp32_of_the_same_compress_call(tuitune_home):
    """Re-running one variant on a busier machine re-measures fp32 too: the other variants keep the
    speed-up measured against their own call's fp32, not the new, slower one."""
    from tuitune.compress_cli import table_rows
    from tuitune.history import History

    h = History()
    rid = h.create_run({"name": "c", "task": "classification", "model": {"name_or_path": "m"},
                        "data": {"path": "d"}, "method": {"name": "full"}})

    def call(latencies: dict) -> None:
        batch = h.start_compression(rid, list(latencies), 0)
        ref = latencies["fp32"]
        for v, ms in latencies.items():
            h.update_compression(batch, v, status="done", size_bytes=100, latency_p50_ms=ms, latency_p95_ms=ms,
                                 throughput=1.0, peak_rss=1, metrics=json.dumps({"accuracy": 0.9}),
                                 info=json.dumps({"speedup_b1": round(ref / ms, 3), "size_ratio": 1.0}))

    call({"fp32": 50.0, "int8-dynamic": 30.0, "prune-30": 50.0})
    call({"fp32": 900.0, "prune-30": 1200.0})  # a later call under load
    headers, cells = table_rows(h.compressions(rid), "classification")
    speed = {c[0]: c[headers.index("×speed")] for c in cells}
    assert speed == {"fp32": "1.00", "int8-dynamic": "1.67", "prune-30": "0.75"}


def test_history_migration_adds_compressions_to_an_old_database(tmp_path):
    from tuitune import history

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(history.MIGRATIONS[0] + ";PRAGMA user_version=1;")
    conn.execute("INSERT INTO runs (name, status, config, created_at) VALUES ('old', 'completed', '{}', 1)")
    conn.commit()
    conn.close()
    h = history.History(path)
    assert h.conn.execute("PRAGMA user_version").fetchone()[0] == len(history.MIGRATIONS) >= 2
    assert h.get_run(1)["name"] == "old"
    batch = h.start_compression(1, ["fp32", "cluster-16"], recover_steps=3)
    h.update_compression(batch, "fp32", status="done", size_bytes=10, metrics=json.dumps({"accuracy": 0.5}))
    rows = h.compressions(1)
    assert [r["variant"] for r in rows] == ["fp32", "cluster-16"] and rows[0]["metrics"] == {"accuracy": 0.5}
    assert rows[1]["status"] == "pending" and rows[1]["recover_steps"] == 3  # this process is alive
    h.delete_run(1)
    assert h.compressions(1) == []


def test_export_model_writes_model_tokenizer_labels_and_a_card(shared_home, cls_run, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    from tuitune.engine.export_model import parse_front_matter
    from tuitune.history import History

    out = tmp_path / "export"
    res = _cli("export-model", str(cls_run), "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "tuitune.json"} <= names
    model = AutoModelForSequenceClassification.from_pretrained(str(out))
    assert sorted(model.config.id2label.values()) == ["negative", "neutral", "positive"]
    assert json.loads((out / "tuitune.json").read_text())["label_names"] == ["negative", "neutral", "positive"]
    with torch.no_grad():
        assert model(input_ids=torch.tensor([[101, 2307, 102]])).logits.shape == (1, 3)

    card = (out / "README.md").read_text()
    meta = parse_front_matter(card)
    final = {e["phase"]: e["metrics"] for e in History().evaluations(cls_run)}["final"]
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert "tuitune" in meta["tags"] and meta["datasets"] and meta["base_model"]
    values = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert values["accuracy"] == pytest.approx(final["eval_accuracy"], abs=1e-6)
    assert values["f1"] == pytest.approx(final["eval_f1"], abs=1e-6)
    assert "## Compression" in card and "| int8-dynamic |" in card and "## Training configuration" in card

    refused = _cli("export-model", str(cls_run), "--out", str(tmp_path / "g"), "--format", "gguf")
    assert refused.returncode == 2 and "causal LM" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "g").exists()
    offline = _cli("export-model", str(cls_run), "--out", str(tmp_path / "p"), "--push-to-hub", "me/model",
                   env_extra={"HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 2 and "HF_HUB_OFFLINE" in offline.stderr
    assert len(offline.stderr.strip().splitlines()) == 1 and not (tmp_path / "p").exists()


def test_gguf_round_trip_of_a_merged_llama_lora_run(bpe_llama, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from tuitune.engine import compress, export_model

    cfg = tiny_config(bpe_llama, "demo:chat", task="sft", method={"name": "lora"},
                      data={"path": "demo:chat", "max_length": 48, "max_train_samples": 32, "max_eval_samples": 16,
                            "label_column": None, "messages_column": "messages"})
    cfg["training"].update(learning_rate=1e-2, max_steps=3, eval_steps=3)
    run_id = run_in_process(cfg)
    res = export_model.export(run_id, str(tmp_path / "out"), merge=True, fmt="gguf")
    src = compress.Source(run_id)
    ref = src.load()
    ids = src.tokenizer("Hello, how are you today?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = ref(input_ids=ids).logits
    files = {Path(g).name.rsplit("-", 1)[1]: Path(g) for g in res["gguf"]}
    assert set(files) == {"f16.gguf", "q8_0.gguf"}
    scale = float(want.abs().max())
    for kind, tol in (("f16.gguf", 0.01 * scale), ("q8_0.gguf", 0.05 * scale)):
        g = files[kind]
        model = AutoModelForCausalLM.from_pretrained(str(g.parent), gguf_file=g.name, dtype=torch.float32)
        with torch.no_grad():
            got = model(input_ids=ids).logits
        assert (got - want).abs().max() < tol, (kind, (got - want).abs().max(), scale)
        prob_gap = (got.softmax(-1) - want.softmax(-1)).abs().max()
        assert prob_gap < (0.01 if kind == "f16.gguf" else 0.05), (kind, prob_gap)
    assert files["q8_0.gguf"].stat().st_size < files["f16.gguf"].stat().st_size
    meta = export_model.parse_front_matter((tmp_path / "out" / "README.md").read_text())
    assert meta["pipeline_tag"] == "text-generation" and "loss" in meta["metrics"]

    # A causal-LM run compresses too: quality is the eval loss.
    rows = {r["variant"]: r for r in compress.compress(run_id, ["prune-ffn-50", "cluster-16"], isolate=False)}
    assert rows["prune-ffn-50"]["status"] == "done", rows["prune-ffn-50"].get("reason")
    assert rows["fp32"]["metrics"]["loss"] > 0 and rows["cluster-16"]["status"] == "done"


def test_compress_view_at_80x24_runs_a_variant_in_the_engine(shared_home, cls_run, monkeypatch):
    import asyncio

    from tuitune.app import make_app
    from tuitune.compress_cli import ORDER
    from tuitune.history import History
    from ui_helpers import wait_for

    before = {r["variant"]: r for r in History().compressions(cls_run)}
    # The engine measures in its own process here (a fresh process per variant, which the CLI test covers,
    # costs a torch + transformers import each: most of this test's time).
    monkeypatch.setenv("TUITUNE_COMPRESS_IN_PROCESS", "1")

    async def go():
        app = make_app(poll_s=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.screen.query_one("#runs").row_count >= 1, 20, "runs listed")
            await pilot.press("enter")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "MonitorScreen" and app.screen._done, 20)
            await pilot.press("c")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "CompressScreen", 10, "compress view")
            screen = app.screen
            table = screen.query_one("#cx-table")
            await wait_for(pilot, lambda: table.row_count == len(ORDER), 20, "variants listed")
            assert table.virtual_size.width <= 80, "the table needs no horizontal scrolling at 80 columns"
            await pilot.press(*["down"] * ORDER.index("prune-ffn-50"))
            assert "feed-forward" in str(screen.query_one("#cx-detail").render())
            await pilot.press("t")  # recovery steps 0 → 20
            assert screen.recover_steps == 20
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen.running or "finished" in screen.progress_text, 10, "started")
            await wait_for(pilot, lambda: not screen.running, 240, "compress finished")
            assert "finished" in screen.progress_text, screen.progress_text
            await pilot.pause(0.5)
            row = table.get_row("prune-ffn-50")
            assert row[1] != "not run" and float(row[1]) > 0  # MB
            await pilot.press("escape")
            assert type(app.screen).__name__ == "MonitorScreen"

    asyncio.run(go())
    after = {r["variant"]: r for r in History().compressions(cls_run)}
    assert after["prune-ffn-50"]["status"] == "done" and after["prune-ffn-50"]["recover_steps"] == 20
    assert after["prune-ffn-50"]["batch"] != (before.get("prune-ffn-50") or {}).get("batch")


def test_compress_cli_and_view_import_no_torch():
    import sys

    code = ("import sys, tuitune.cli, tuitune.compress_cli, tuitune.screens.compress, tuitune.runstore\n"
            "heavy = [m for m in ('torch','transformers','peft','bitsandbytes','gguf') if m in sys.modules]\n"
            "print(heavy); sys.exit(1 if heavy else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

"""Shipping a run's model: the model (adapter folded in, or the adapter alone) with its tokenizer and
label names, a model card (`README.md` with the hub's front matter), GGUF files for Llama-architecture
causal LMs (f16 and q8_0, written with the `gguf` package), and an optional push to the hub.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional

from tuitune import demo
from tuitune.errors import TuituneError
from tuitune.history import History

PIPELINE_TAGS = {"classification": "text-classification", "mlm": "fill-mask", "sft": "text-generation",
                 "dpo": "text-generation"}
MODEL_FILES = (".safetensors", ".bin", ".json", ".txt", ".model", ".jinja", ".gguf")


def _hub_name(name: Optional[str]) -> Optional[str]:
    """A demo name becomes the hub id of the model it packages; a local path stays a path."""
    if not name:
        return None
    if demo.is_demo(name):
        return {"demo:minilm": "sentence-transformers/all-MiniLM-L6-v2",
                "demo:smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}.get(name, name)
    return name


def _dataset_name(name: Optional[str]) -> Optional[str]:
    """As configured: a hub id stays one; a demo set or a local file keeps its tuitune name."""
    return name or None


# -- the model card ----------------------------------------------------------------------------------

def _evaluations(h: History, run_id: int) -> dict[str, dict[str, float]]:
    by_phase: dict[str, dict[str, float]] = {}
    for e in h.evaluations(run_id):
        by_phase[e["phase"]] = {k: v for k, v in e["metrics"].items() if isinstance(v, (int, float))
                                and not k.endswith(("runtime", "per_second", "epoch")) and "preparation" not in k}
    return by_phase


def _clean(metrics: dict[str, float]) -> dict[str, float]:
    """eval_accuracy → accuracy."""
    out = {}
    for k, v in metrics.items():
        for prefix in ("eval_", "test_", "eval/", "test/"):
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = float(v)
    return out


def front_matter(run, evals: dict[str, dict[str, float]], *, adapter: bool) -> dict[str, Any]:
    """The hub's model card metadata, with the run's final (and test) metrics as model-index values."""
    cfg = run.config
    task = run.task
    final = _clean(evals.get("final") or evals.get("eval") or {})
    test = _clean(evals.get("test") or {})
    base = _hub_name(cfg["model"]["name_or_path"])
    dataset = _dataset_name(cfg["data"]["path"])
    shown = [k for k in final if k in ("accuracy", "f1", "loss", "perplexity")]
    results = []
    for split, values in (("validation", final), ("test", test)):
        ms = [{"type": k, "value": round(values[k], 6), "name": f"{split} {k}"} for k in shown if k in values]
        if ms:
            results.append({"task": {"type": PIPELINE_TAGS.get(task, task)},
                            "dataset": {"name": dataset, "type": dataset, "split": split}, "metrics": ms})
    meta: dict[str, Any] = {
        "base_model": base,
        "datasets": [dataset] if dataset else [],
        "library_name": "peft" if adapter else "transformers",
        "pipeline_tag": PIPELINE_TAGS.get(task, "text-generation"),
        "tags": ["tuitune", task, cfg["method"]["name"]] + (["lora"] if cfg["method"]["name"] in ("lora", "qlora") else []),
        "metrics": shown,
        "model-index": [{"name": run.name or f"run-{run.id}", "results": results}],
    }
    return meta


def model_card(h: History, run, *, adapter: bool, gguf_files: list[str] = (), label_names: list[str] = ()) -> str:
    import yaml

    from tuitune.compress_cli import markdown_table

    evals = _evaluations(h, run.id)
    meta = front_matter(run, evals, adapter=adapter)
    cfg = run.config
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {run.name or 'run ' + str(run.id)}", "",
             f"{meta['base_model']} fine-tuned with tuitune ({cfg['method']['name']}) for "
             f"{run.task} on {meta['datasets'][0] if meta['datasets'] else 'its data'}."
             + (" This folder holds the adapter; load it on the base model with peft." if adapter else ""), ""]
    if label_names:
        lines += [f"Labels: {', '.join(label_names)}.", ""]
    lines += ["## Evaluation", ""]
    phases = [p for p in ("baseline", "final", "test") if p in evals]
    keys = sorted({k for p in phases for k in _clean(evals[p])})
    if keys:
        lines += ["| metric | " + " | ".join("before fine-tuning" if p == "baseline" else p for p in phases) + " |",
                  "|---|" + "---|" * len(phases)]
        for k in keys:
            cells = [f"{_clean(evals[p]).get(k):.4f}" if k in _clean(evals[p]) else "-" for p in phases]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
    else:
        lines.append("No evaluation was recorded.")
    rows = h.compressions(run.id)
    if any(r["status"] == "done" for r in rows):
        lines += ["", "## Compression", "",
                  "Measured by `tuitune compress` on the evaluation split, CPU, batch 1 latency and batch 32 "
                  "throughput (×size and ×speed against the fp32 model):", "",
                  markdown_table(rows, run.task)]
    if gguf_files:
        lines += ["", "## GGUF", "", "Files for llama.cpp and transformers (`gguf_file=`): "
                  + ", ".join(f"`{g}`" for g in gguf_files) + "."]
    lines += ["", "## Training configuration", "", "```yaml",
              yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True).rstrip(), "```", ""]
    return "\n".join(lines)


def parse_front_matter(text: str) -> dict[str, Any]:
    import yaml

    if not text.startswith("---\n"):
        raise ValueError("no front matter")
    body = text[4:]
    return yaml.safe_load(body[: body.index("\n---\n")])


# -- GGUF ----------------------------------------------------------------------------------------------

LLAMA_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}


def _gguf_name(hf: str) -> str:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")
    if parts[:2] == ["model", "layers"]:
        layer, rest = parts[2], ".".join(parts[3:-1])
        if rest in LLAMA_NAMES:
            return f"blk.{layer}.{LLAMA_NAMES[rest]}.{parts[-1]}"
    raise TuituneError(f"GGUF export does not know the weight {hf}: only plain Llama layers are supported")


def _permute(w, n_head: int, n_head_kv: int):
    """HF's rotary layout → GGML's (llama.cpp's convert_hf_to_gguf `permute`)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _check_llama(model) -> None:
    cfg = model.config
    if cfg.model_type != "llama":
        raise TuituneError(f"GGUF export supports Llama-architecture causal LMs; this model is "
                           f"{cfg.model_type!r}: use --format safetensors")


def _tokenizer_kv(writer, tok) -> None:
    import gguf

    backend = json.loads(tok.backend_tokenizer.to_str()) if hasattr(tok, "backend_tokenizer") else {}
    model = backend.get("model") or {}
    pre = json.dumps(backend.get("pre_tokenizer") or {})
    if model.get("type") != "BPE" or "ByteLevel" not in pre:
        raise TuituneError("GGUF export supports byte-level BPE tokenizers (SmolLM2, Llama 3, GPT-2 style); "
                           "this model's tokenizer is not one: use --format safetensors")
    vocab = tok.get_vocab()
    n = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]
    for t, i in vocab.items():
        tokens[i] = t
    special = set(tok.all_special_ids)
    added = {i for i in vocab.values() if i in getattr(tok, "added_tokens_decoder", {})}
    types = [gguf.TokenType.CONTROL if i in special else
             gguf.TokenType.USER_DEFINED if i in added else gguf.TokenType.NORMAL for i in range(n)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for setter, tid in ((writer.add_bos_token_id, tok.bos_token_id), (writer.add_eos_token_id, tok.eos_token_id),
                        (writer.add_pad_token_id, tok.pad_token_id), (writer.add_unk_token_id, tok.unk_token_id)):
        if tid is not None:
            setter(int(tid))
    if getattr(tok, "chat_template", None):
        writer.add_chat_template(tok.chat_template)


def write_gguf(model, tok, path: Path, qtype: str, name: str = "model") -> Path:
    """One GGUF file: `qtype` "f16" (2-D weights f16) or "q8_0" (2-D weights q8_0 where rows split
    into 32-value blocks, f16 otherwise); 1-D tensors (norms) stay f32."""
    import gguf
    import numpy as np

    _check_llama(model)
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    n_kv = cfg.num_key_value_heads or cfg.num_attention_heads
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(int(cfg.max_position_embeddings))
    writer.add_embedding_length(int(cfg.hidden_size))
    writer.add_block_count(int(cfg.num_hidden_layers))
    writer.add_feed_forward_length(int(cfg.intermediate_size))
    writer.add_head_count(int(cfg.num_attention_heads))
    writer.add_head_count_kv(int(n_kv))
    writer.add_rope_dimension_count(int(head_dim))
    writer.add_key_length(int(head_dim))
    writer.add_value_length(int(head_dim))
    rope = getattr(cfg, "rope_theta", None) or (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    writer.add_rope_freq_base(float(rope))
    writer.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    writer.add_vocab_size(int(cfg.vocab_size))
    ftype = gguf.LlamaFileType.MOSTLY_Q8_0 if qtype == "q8_0" else gguf.LlamaFileType.MOSTLY_F16
    writer.add_file_type(int(ftype))
    _tokenizer_kv(writer, tok)
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    for hf, t in model.state_dict().items():
        if hf == "lm_head.weight" and tied:
            continue
        if hf.endswith("rotary_emb.inv_freq"):
            continue
        data = t.detach().float().cpu().numpy()
        gname = _gguf_name(hf)
        if gname.endswith("attn_q.weight"):
            data = _permute(data, cfg.num_attention_heads, cfg.num_attention_heads)
        elif gname.endswith("attn_k.weight"):
            data = _permute(data, cfg.num_attention_heads, n_kv)
        data = np.ascontiguousarray(data)
        if data.ndim == 1:
            writer.add_tensor(gname, data.astype(np.float32))
        elif qtype == "q8_0" and data.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(gname, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(gname, data.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# -- the export -----------------------------------------------------------------------------------------

def _load_meta(run) -> tuple[Path, dict]:
    model_dir = Path(run.run_dir or "") / "model"
    if not (model_dir / "tuitune.json").exists():
        raise TuituneError(f"run {run.id} has no saved model (status {run.status}): export needs a completed run")
    return model_dir, json.loads((model_dir / "tuitune.json").read_text())


def export(run_id: int, out: str, *, merge: bool = False, fmt: str = "safetensors",
           push_to_hub: Optional[str] = None) -> dict[str, Any]:
    """Write the export into `out` (through a temporary sibling folder, renamed when complete)."""
    h = History()
    try:
        run = h.get_run(run_id)
        model_dir, meta = _load_meta(run)
        target = Path(out).expanduser()
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise TuituneError(f"--out {target} exists and is not empty: give a new or empty folder")
        if push_to_hub:
            _check_hub_reachable()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            adapter, gguf_files = _write_model(run, model_dir, meta, tmp, merge=merge, fmt=fmt)
            card = model_card(h, run, adapter=adapter, gguf_files=gguf_files, label_names=meta.get("label_names") or [])
            (tmp / "README.md").write_text(card, encoding="utf-8")
            if target.exists():
                target.rmdir()
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        result: dict[str, Any] = {"path": str(target), "files": sorted(str(p) for p in target.iterdir()),
                                  "adapter": adapter, "gguf": [str(target / g) for g in gguf_files]}
        if push_to_hub:
            result["pushed"] = push(target, push_to_hub)
        return result
    finally:
        h.close()


def _write_model(run, model_dir: Path, meta: dict, out: Path, *, merge: bool, fmt: str) -> tuple[bool, list[str]]:
    peft = bool(meta.get("peft"))
    if fmt == "gguf":
        if meta["task"] not in ("sft", "dpo"):
            raise TuituneError(f"GGUF export is for causal LMs (sft/dpo runs); run {run.id} is {meta['task']}: "
                               "use --format safetensors")
    if peft and not merge and fmt == "safetensors":
        for f in model_dir.iterdir():  # the adapter as trained, plus tokenizer and tuitune metadata
            if f.is_file() and f.suffix in MODEL_FILES and f.name != "training_args.json":
                shutil.copy(f, out / f.name)
        return True, []
    from tuitune.engine.compress import Source

    src = Source(run.id)
    model = src.load()  # fp32, adapter merged
    if fmt == "gguf":
        _check_llama(model)
        stem = (run.name or f"run-{run.id}").replace("/", "-")
        files = []
        for q in ("f16", "q8_0"):
            files.append(write_gguf(model, src.tokenizer, out / f"{stem}-{q}.gguf", q, name=stem).name)
        src.tokenizer.save_pretrained(str(out))
        model.config.save_pretrained(str(out))
    else:
        model.save_pretrained(str(out))
        src.tokenizer.save_pretrained(str(out))
        files = []
    (out / "tuitune.json").write_text(json.dumps(dict(meta, peft=False), indent=2), encoding="utf-8")
    if (model_dir / "tuitune.yaml").exists():
        shutil.copy(model_dir / "tuitune.yaml", out / "tuitune.yaml")
    return False, files


# -- the hub ----------------------------------------------------------------------------------------------

def _offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _check_hub_reachable() -> None:
    if _offline():
        raise TuituneError("--push-to-hub needs the internet, but HF_HUB_OFFLINE is set: unset it, or export "
                           "without --push-to-hub and upload the folder later")


def push(folder: Path, repo: str) -> str:
    _check_hub_reachable()
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo)
    except Exception as err:  # noqa: BLE001 - one line: no token, no network, no permission
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise TuituneError(f"push to {repo} failed ({first}): check the network and `huggingface-cli login`; "
                           f"the export is in {folder}") from None
    return f"https://huggingface.co/{repo}"

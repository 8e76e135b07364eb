"""Compressing a run's saved model: quantization, pruning and clustering side by side.

Every variant is built from a fresh fp32 copy of the run's model (an adapter is merged first), written
to a temporary folder and renamed into `runs/<id>/compressed/<variant>` only when complete, so an
interrupted compress never leaves a folder that looks finished. The run's own `model/` is only read.

Each folder loads with its library's documented loader (`load_variant` picks it from the folder's
`tuitune.json`):
- `fp32`, `prune-*`, `prune-ffn-*`: plain transformers folders (`AutoModelFor….from_pretrained`);
- `bnb-*`: transformers folders whose config holds the bitsandbytes quantization
  (`from_pretrained(dir, device_map="cpu")`);
- `int8-dynamic`: PyTorch's dynamic int8 (`torch.ao.quantization.quantize_dynamic`): the documented
  way to reload it is to build the fp32 architecture, quantize it the same way and
  `load_state_dict` the saved int8 state (`model_int8.pt`);
- `cluster-*`: a codebook per layer plus packed indices (`codebook.safetensors`), read back by
  `load_codebook` (the architecture from `config.json`, each weight = codebook[indices]).

Then each variant is measured the same way (`measure`): size on disk, CPU latency p50/p95 at batch 1,
throughput at batch 32, peak RSS (in its own process by default) and quality on the run's
evaluation split. Rows go to the history (`compressions` table).
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from tuitune.config import RunConfig
from tuitune.errors import TuituneError
from tuitune.history import History
from tuitune.tasks import task_spec

from tuitune.compress_cli import BASELINE, VARIANTS, describe  # noqa: F401 - one list of names for CLI, UI and engine

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx", ".gguf")
LATENCY_SAMPLES = 40
THROUGHPUT_BATCH = 32
THROUGHPUT_REPEATS = 4
MAX_EVAL = 512


def check_variant(name: str) -> str:
    if name != BASELINE and name not in VARIANTS:
        raise TuituneError(f"unknown variant {name!r}: choose from {', '.join(VARIANTS)}")
    return name


# -- the run's model and data ---------------------------------------------------------------------

class Source:
    """A completed run: its config, task, tokenizer, evaluation inputs, and fresh fp32 copies of its model."""

    def __init__(self, run_id, history: Optional[History] = None):
        from transformers import AutoTokenizer

        from tuitune.engine.predict import _run_model_dir
        from tuitune.engine.tasks import get_task

        run, model_dir = _run_model_dir(run_id)
        self.run, self.run_id, self.model_dir = run, int(run.id), model_dir
        self.meta = json.loads((model_dir / "tuitune.json").read_text())
        self.cfg = RunConfig.model_validate(run.config)
        self.task = get_task(self.cfg)
        self.task.label_names = self.meta.get("label_names") or []
        self.task_name = self.meta["task"]
        self.spec = task_spec(self.task_name)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self._data = None

    @property
    def out_dir(self) -> Path:
        return self.model_dir.parent / "compressed"

    def model_class(self):
        return self.task.model_class()

    def load(self):
        """A fresh fp32 model with the run's weights (an adapter merged into its base)."""
        import torch

        kw: dict[str, Any] = {"dtype": torch.float32}
        if self.spec.has_labels and self.task.label_names:
            kw.update(self.task.model_kwargs())
        if self.meta.get("peft"):
            from peft import PeftModel

            from tuitune.engine import models

            base = self.meta.get("base_model") or models.resolve(self.cfg.model.name_or_path)
            model = PeftModel.from_pretrained(self.model_class().from_pretrained(base, **kw), str(self.model_dir))
            if not hasattr(model, "merge_and_unload") or self.meta.get("method") in (
                    "prompt_tuning", "p_tuning", "prefix_tuning"):
                raise TuituneError(f"method {self.meta.get('method')} keeps virtual tokens that cannot be folded "
                                   "into the weights: compress needs a full model or a LoRA-family adapter")
            model = model.merge_and_unload()
        else:
            model = self.model_class().from_pretrained(str(self.model_dir), **kw)
        return model.eval()

    # -- data --------------------------------------------------------------------------------------
    def data(self):
        """(train, validation) datasets of token ids, tokenized the way the run was."""
        if self._data is None:
            if self.spec.is_causal:
                self._data = self._causal_data()
            else:
                ds = self.task.prepare(self.tokenizer)
                self._data = (ds["train"], ds["validation"])
        return self._data

    def _causal_data(self):
        """Chat or prompt/completion rows as whole token sequences (the loss covers every token)."""
        raw = self.task.prepare(self.tokenizer)
        tok, max_len = self.tokenizer, self.cfg.data.max_length

        def text(row) -> str:
            if "messages" in row:
                conv = row["messages"]
            else:
                second = row.get("completion", row.get("chosen"))
                conv = row["prompt"] + second if isinstance(row["prompt"], list) else None
                if conv is None:
                    return str(row["prompt"]) + str(second)
            return tok.apply_chat_template(conv, tokenize=False)

        def enc(batch):
            rows = [dict(zip(batch, vals)) for vals in zip(*batch.values())]
            return tok([text(r) for r in rows], truncation=True, max_length=max_len)

        return tuple(raw[s].map(enc, batched=True, remove_columns=raw[s].column_names) for s in ("train", "validation"))

    def eval_inputs(self) -> dict[str, Any]:
        """Fixed batches every variant sees: quality batches (labels included), 40 single examples for
        latency, one batch of 32 for throughput. Masked-LM masks are drawn once, with a fixed seed."""
        import torch

        _, val = self.data()
        n = min(len(val), MAX_EVAL)
        if n == 0:
            raise TuituneError(f"run {self.run_id} has an empty evaluation split: nothing to measure quality on")
        val = val.select(range(n))
        collate = self._collator()
        torch.manual_seed(0)
        rows = [val[i] for i in range(n)]
        quality = [collate(rows[i:i + THROUGHPUT_BATCH]) for i in range(0, n, THROUGHPUT_BATCH)]
        strip = lambda b: {k: v for k, v in b.items() if k not in ("labels", "special_tokens_mask")}  # noqa: E731
        single = [strip(collate([rows[i % n]])) for i in range(LATENCY_SAMPLES)]
        batch = strip(collate([rows[i % n] for i in range(THROUGHPUT_BATCH)]))
        return {"task": self.task_name, "quality": [dict(b) for b in quality], "single": single, "batch": batch}

    def _collator(self):
        from transformers import DataCollatorForLanguageModeling, DataCollatorWithPadding

        tok = self.tokenizer
        if self.spec.predicts == "fill-mask":
            base = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=self.cfg.data.mlm_probability)
        elif self.spec.is_causal:
            base = DataCollatorForLanguageModeling(tok, mlm=False)
        else:
            base = DataCollatorWithPadding(tok)

        def collate(rows):
            keep = [{k: v for k, v in r.items() if k in ("input_ids", "attention_mask", "token_type_ids", "labels",
                                                         "special_tokens_mask")} for r in rows]
            return dict(base(keep))

        return collate

    def train_batches(self, steps: int):
        """`steps` batches from the training split, for recovery fine-tuning."""
        import torch

        train, _ = self.data()
        if len(train) == 0:
            raise TuituneError("the training split is empty: --recover-steps needs training data")
        bs = self.cfg.training.per_device_train_batch_size
        collate = self._collator()
        g = torch.Generator().manual_seed(self.cfg.training.seed)
        order = torch.randperm(len(train), generator=g).tolist()
        for s in range(steps):
            idx = [order[(s * bs + j) % len(order)] for j in range(bs)]
            b = collate([train[i] for i in idx])
            b.pop("special_tokens_mask", None)
            yield b


# -- what a variant can and cannot touch ----------------------------------------------------------

def _head_names(model, task) -> set[str]:
    heads = set(task.head_modules) | {"classifier", "pooler", "lm_head", "score"}
    return {n for n, _ in model.named_modules() if n and set(n.split(".")) & heads}


def _prunable(model, task) -> list[tuple[str, Any]]:
    """The Linear layers outside the task head (classifier, pooler, lm head)."""
    import torch

    heads = _head_names(model, task)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n not in heads]


def _clusterable(model, task) -> list[tuple[str, Any]]:
    """Linear and Embedding layers outside the task head: every large weight matrix."""
    import torch

    heads = _head_names(model, task)
    seen, out = set(), []
    for n, m in model.named_modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)) and n not in heads and id(m.weight) not in seen:
            seen.add(id(m.weight))
            out.append((n, m))
    return out


def sparsity(model, task) -> float:
    layers = _prunable(model, task)
    total = sum(m.weight.numel() for _, m in layers)
    zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
    return zeros / total if total else 0.0


# -- recovery fine-tuning -------------------------------------------------------------------------

def recover(model, src: Source, steps: int, *, progress: Optional[Callable[[str], None]] = None,
            after_step: Optional[Callable[[], None]] = None) -> None:
    """A short fine-tune (AdamW, the run's learning rate, linear decay). Pruning masks stay applied
    (torch.nn.utils.prune keeps them as forward pre-hooks), so pruned weights stay zero."""
    import torch

    if steps <= 0:
        return
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    lr = src.cfg.training.learning_rate
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=src.cfg.training.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / steps)
    for i, batch in enumerate(src.train_batches(steps)):
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if after_step is not None:
            after_step()
        if progress and (i + 1) % max(1, steps // 4) == 0:
            progress(f"recovery step {i + 1}/{steps}, loss {loss.item():.4f}")
    model.eval()


# -- builders: each writes one variant into a folder ------------------------------------------------

@dataclass
class Built:
    format: str
    info: dict[str, Any] = field(default_factory=dict)


def _save_transformers(model, src: Source, out: Path) -> None:
    model.save_pretrained(str(out))


def build_fp32(src: Source, out: Path, recover_steps: int, progress) -> Built:
    _save_transformers(src.load(), src, out)
    return Built("transformers")


def build_int8_dynamic(src: Source, out: Path, recover_steps: int, progress) -> Built:
    import torch

    model = src.load()
    q = quantize_dynamic_int8(model)
    model.config.save_pretrained(str(out))
    torch.save(q.state_dict(), out / "model_int8.pt")
    return Built("torch-int8-dynamic")


def quantize_dynamic_int8(model):
    """PyTorch dynamic int8: Linear weights int8 per output channel with activations quantized on the fly
    (fbgemm kernels, AVX2 here), Embedding tables int8 per row (weight-only). Per-channel weights kept
    the BBC run's accuracy where one scale per tensor lost 0.9 points."""
    import warnings

    import torch
    from torch.ao.quantization import float_qparams_weight_only_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    spec = {torch.nn.Linear: per_channel_dynamic_qconfig}
    for _, m in model.named_modules():
        if isinstance(m, torch.nn.Embedding):
            spec[torch.nn.Embedding] = float_qparams_weight_only_qconfig
            break
    torch.backends.quantized.engine = "fbgemm" if "fbgemm" in torch.backends.quantized.supported_engines else \
        torch.backends.quantized.engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 deprecates the eager API for torchao (slower here: see README)
        return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=False)


BNB_SKIP = ["classifier", "pooler", "pooler.dense", "score", "lm_head"]  # the task head stays fp32
# bitsandbytes' fused 4-bit CPU kernel, which Linear4bit switches to in eval mode on CPUs with AVX512-BF16,
# repacks each weight in blocks of 32 output rows and keeps one scale per 64 inputs of a row
# (`bitsandbytes.functional._convert_weight_packed_for_cpu`): any other shape fails in the first forward.
# On other CPUs (AVX2, like the machine tuitune is tested on) bitsandbytes 0.50 quantizes and runs any
# Linear shape: checked FP4 and NF4 on 30→30, 37→37, 3→5, 63→65, 96→32 (outputs equal x @ dequantized
# weights; error against fp32 that of any 4-bit layer), and 8-bit on the same shapes (≤ 0.4% error).
BNB4_FUSED_ROWS, BNB4_BLOCK = 32, 64


def bnb4_fused_cpu() -> bool:
    """Whether this CPU runs bitsandbytes 4-bit inference through the fused AVX512-BF16 kernel."""
    try:
        from bitsandbytes.functional import has_avx512bf16
    except Exception:  # noqa: BLE001 - an older or broken bitsandbytes: the generic path
        return False
    return bool(has_avx512bf16())


def bnb_quantized_linears(model, skip: list[str]) -> list[tuple[str, Any]]:
    """The Linear layers transformers replaces with bitsandbytes layers, given `llm_int8_skip_modules`."""
    import torch

    try:
        from transformers.quantizers.quantizers_utils import should_convert_module
    except ImportError:  # its matching, simplified: a skip name matches a module path's end
        def should_convert_module(name, patterns):
            return not any(name == p or name.endswith("." + p) for p in patterns)
    patterns = list(skip) + list(getattr(model, "_keep_in_fp32_modules", None) or [])
    return [(n, m) for n, m in model.named_modules()
            if type(m) is torch.nn.Linear and should_convert_module(n, patterns)]


def bnb4_misfit(model, skip: list[str]) -> Optional[str]:
    """One line naming the first layer the fused 4-bit CPU kernel cannot run, or None when all fit."""
    for name, m in bnb_quantized_linears(model, skip):
        if m.out_features % BNB4_FUSED_ROWS or m.in_features % BNB4_BLOCK:
            return (f"bitsandbytes 4-bit on this CPU (AVX512-BF16 kernel) needs out_features a multiple of "
                    f"{BNB4_FUSED_ROWS} and in_features a multiple of {BNB4_BLOCK}; layer {name} is "
                    f"{m.in_features}→{m.out_features}: use bnb-8bit or int8-dynamic for this model")
    return None


def build_bnb(kind: str):
    def build(src: Source, out: Path, recover_steps: int, progress) -> Built:
        import torch
        from transformers import BitsAndBytesConfig

        try:
            import bitsandbytes  # noqa: F401
        except Exception as err:
            raise TuituneError(f"bitsandbytes failed to import ({str(err).splitlines()[0]})") from None
        model = src.load()
        if kind != "8bit" and bnb4_fused_cpu():
            why = bnb4_misfit(model, BNB_SKIP)
            if why:
                raise TuituneError(why)
        fp32 = out.parent / (out.name + ".src")
        model.save_pretrained(str(fp32))  # the merged fp32 model, for from_pretrained to quantize
        del model
        if kind == "8bit":
            qc = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=BNB_SKIP)
        else:
            qc = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=kind, bnb_4bit_compute_dtype=torch.float32,
                                    llm_int8_skip_modules=BNB_SKIP)
        try:
            model = src.model_class().from_pretrained(str(fp32), quantization_config=qc, device_map="cpu",
                                                      dtype=torch.float32)
            model.save_pretrained(str(out))
        finally:
            shutil.rmtree(fp32, ignore_errors=True)
        return Built("transformers", {"bnb": kind})

    return build


def build_prune(amount: float):
    def build(src: Source, out: Path, recover_steps: int, progress) -> Built:
        import torch
        from torch.nn.utils import prune

        model = src.load()
        layers = _prunable(model, src.task)
        if not layers:
            raise TuituneError("the model has no Linear layers outside its head to prune")
        prune.global_unstructured([(m, "weight") for _, m in layers], pruning_method=prune.L1Unstructured,
                                  amount=amount)
        recover(model, src, recover_steps, progress=progress)
        for _, m in layers:
            prune.remove(m, "weight")  # fold the mask in: plain weights with zeros
        _save_transformers(model, src, out)
        return Built("transformers", {"sparsity": round(sparsity(model, src.task), 4)})

    return build


# Feed-forward layouts whose neurons can be removed: (up-projections, down-projection, config field).
FFN_LAYOUTS = (
    (("intermediate.dense",), "output.dense", "intermediate_size"),  # BERT, RoBERTa, ELECTRA, MiniLM
    (("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj", "intermediate_size"),  # Llama, Mistral, Qwen2
)


def _ffn_blocks(model):
    """[(block module, up names, down name)] for the first layout this model has, or ([], None)."""
    mods = dict(model.named_modules())
    for ups, down, cfg_field in FFN_LAYOUTS:
        blocks = []
        for name in mods:
            prefix = name + "." if name else ""
            if all(prefix + u in mods for u in ups) and prefix + down in mods and \
                    (not down.startswith("output") or prefix + "intermediate.dense" in mods):
                blocks.append(name)
        if blocks:
            return blocks, (ups, down, cfg_field)
    return [], None


def prune_ffn(model, ratio: float) -> int:
    """Remove `ratio` of the feed-forward neurons of every layer (the same number per layer, the least
    important by |up row| × |down column|); returns the new intermediate size. Raises for an
    architecture whose feed-forward block tuitune does not know."""
    import torch

    blocks, layout = _ffn_blocks(model)
    if not blocks:
        raise TuituneError(f"structured pruning needs a BERT- or Llama-style feed-forward block; "
                           f"model type {model.config.model_type!r} has none tuitune knows")
    ups, down, cfg_field = layout
    mods = dict(model.named_modules())
    inter = getattr(model.config, cfg_field)
    keep_n = max(1, int(round(inter * (1 - ratio))))
    for b in blocks:
        p = b + "." if b else ""
        up_mods = [mods[p + u] for u in ups]
        down_mod = mods[p + down]
        score = torch.ones(inter)
        for u in up_mods:
            score = score * u.weight.detach().norm(dim=1)
        score = score * down_mod.weight.detach().norm(dim=0)
        keep = score.topk(keep_n).indices.sort().values
        for u, uname in zip(up_mods, ups):
            new = torch.nn.Linear(u.in_features, keep_n, bias=u.bias is not None)
            new.weight.data = u.weight.data[keep].clone()
            if u.bias is not None:
                new.bias.data = u.bias.data[keep].clone()
            _set_module(model, p + uname, new)
        new = torch.nn.Linear(keep_n, down_mod.out_features, bias=down_mod.bias is not None)
        new.weight.data = down_mod.weight.data[:, keep].clone()
        if down_mod.bias is not None:
            new.bias.data = down_mod.bias.data.clone()
        _set_module(model, p + down, new)
    setattr(model.config, cfg_field, keep_n)
    return keep_n


def _set_module(model, name: str, module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def build_prune_ffn(ratio: float):
    def build(src: Source, out: Path, recover_steps: int, progress) -> Built:
        model = src.load()
        before = sum(p.numel() for p in model.parameters())
        size = prune_ffn(model, ratio)
        recover(model, src, recover_steps, progress=progress)
        _save_transformers(model, src, out)
        after = sum(p.numel() for p in model.parameters())
        return Built("transformers", {"intermediate_size": size, "params_removed": before - after})

    return build


# -- weight clustering ------------------------------------------------------------------------------

def kmeans_1d(values, k: int, iters: int = 12):
    """1-D k-means on a tensor's values: (codebook[k'] sorted, indices int64), k' ≤ k distinct entries.
    Quantile initialisation, then Lloyd steps (assignment by the midpoints between sorted centroids)."""
    import torch

    x = values.detach().flatten().float()
    k = min(k, x.numel())
    q = torch.linspace(0, 1, k)
    sample = x if x.numel() <= 1_000_000 else x[torch.randperm(x.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]]
    centroids = torch.quantile(sample, q).unique()
    for _ in range(iters):
        idx = torch.bucketize(x, (centroids[1:] + centroids[:-1]) / 2)
        counts = torch.bincount(idx, minlength=len(centroids)).float()
        sums = torch.bincount(idx, weights=x, minlength=len(centroids))
        used = counts > 0
        new = torch.where(used, sums / counts.clamp(min=1), centroids)
        if torch.allclose(new, centroids):
            break
        centroids = new.sort().values
    idx = torch.bucketize(x, (centroids[1:] + centroids[:-1]) / 2)
    return centroids, idx


def _pack4(idx):
    import torch

    flat = idx.to(torch.uint8)
    if flat.numel() % 2:
        flat = torch.cat([flat, flat.new_zeros(1)])
    return flat[0::2] | (flat[1::2] << 4)


def _unpack4(packed, n: int):
    import torch

    out = torch.stack([packed & 0x0F, packed >> 4], dim=1).flatten()
    return out[:n].long()


def cluster_model(model, task, k: int) -> dict[str, tuple]:
    """Replace every large weight (Linear/Embedding outside the head) by its k-means codebook values.
    Returns {parameter name: (codebook, indices)}."""
    import torch

    names = {id(p): n for n, p in model.named_parameters()}
    books = {}
    with torch.no_grad():
        for _, m in _clusterable(model, task):
            cb, idx = kmeans_1d(m.weight, k)
            m.weight.copy_(cb[idx].view_as(m.weight))
            books[names[id(m.weight)]] = (cb, idx)
    return books


def refit_codebooks(model, books: dict[str, tuple]) -> None:
    """After recovery training, each codebook entry becomes the mean of the trained weights assigned
    to it (assignments fixed), and the weights are set back to the codebook: ≤ k values again."""
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, (cb, idx) in books.items():
            w = params[name].detach().flatten()
            counts = torch.bincount(idx, minlength=len(cb)).float()
            sums = torch.bincount(idx, weights=w, minlength=len(cb))
            cb.copy_(torch.where(counts > 0, sums / counts.clamp(min=1), cb))
            params[name].copy_(cb[idx].view_as(params[name]))


def save_codebook(model, books: dict[str, tuple], k: int, out: Path) -> None:
    """config.json + codebook.safetensors: for each clustered weight `name.codebook` (fp32) and
    `name.indices` (uint8; two 4-bit indices per byte when k ≤ 16); every other tensor as is."""
    import torch
    from safetensors.torch import save_file

    model.config.save_pretrained(str(out))
    tensors: dict[str, Any] = {}
    shapes: dict[str, list[int]] = {}
    for name, p in model.named_parameters():
        if name in books:
            cb, idx = books[name]
            tensors[name + ".codebook"] = cb.float().contiguous()
            tensors[name + ".indices"] = (_pack4(idx) if k <= 16 else idx.to(torch.uint8)).contiguous()
            shapes[name] = list(p.shape)
        else:
            tensors[name] = p.detach().contiguous()
    persistent = set(model.state_dict())
    for name, b in model.named_buffers():
        if name in persistent and name not in tensors:
            tensors[name] = b.detach().contiguous()
    meta = {"format": "tuitune-codebook", "bits": "4" if k <= 16 else "8", "shapes": json.dumps(shapes)}
    save_file(tensors, str(out / "codebook.safetensors"), metadata=meta)


def load_codebook(path: str | Path, model_class=None):
    """Load a `cluster-*` folder: the architecture from config.json, each clustered weight rebuilt as
    codebook[indices]. `model_class` (an Auto class) defaults to the one for the folder's task."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig

    path = Path(path)
    config = AutoConfig.from_pretrained(str(path))
    if model_class is None:
        model_class = _task_class(variant_meta(path)["task"])
    model = model_class.from_config(config, dtype=torch.float32)
    state: dict[str, Any] = {}
    with safe_open(str(path / "codebook.safetensors"), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != "tuitune-codebook":
            raise TuituneError(f"{path} is not a tuitune codebook folder")
        shapes = json.loads(meta["shapes"])
        bits = int(meta["bits"])
        keys = set(f.keys())
        for name, shape in shapes.items():
            cb = f.get_tensor(name + ".codebook")
            raw = f.get_tensor(name + ".indices")
            n = math.prod(shape)
            idx = _unpack4(raw, n) if bits == 4 else raw.long()
            state[name] = cb[idx].view(shape)
            keys -= {name + ".codebook", name + ".indices"}
        for k in keys:
            state[k] = f.get_tensor(k)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {n for n in missing if n.endswith(("lm_head.weight", "decoder.weight", "decoder.bias"))}
    if set(missing) - tied or unexpected:
        raise TuituneError(f"{path}: codebook file does not match its config ({(list(set(missing) - tied) + unexpected)[:3]})")
    model.tie_weights()
    return model.eval()


def build_cluster(k: int):
    def build(src: Source, out: Path, recover_steps: int, progress) -> Built:
        model = src.load()
        books = cluster_model(model, src.task, k)
        if not books:
            raise TuituneError("the model has no Linear or Embedding layers outside its head to cluster")
        if recover_steps:
            recover(model, src, recover_steps, progress=progress)
            refit_codebooks(model, books)
        save_codebook(model, books, k, out)
        return Built("codebook", {"layers": len(books), "max_distinct": max(len(cb) for cb, _ in books.values())})

    return build


BUILDERS: dict[str, Callable] = {
    BASELINE: build_fp32,
    "int8-dynamic": build_int8_dynamic,
    "bnb-8bit": build_bnb("8bit"),
    "bnb-4bit-fp4": build_bnb("fp4"),
    "bnb-4bit-nf4": build_bnb("nf4"),
    "prune-30": build_prune(0.3),
    "prune-50": build_prune(0.5),
    "prune-70": build_prune(0.7),
    "prune-ffn-50": build_prune_ffn(0.5),
    "cluster-16": build_cluster(16),
    "cluster-256": build_cluster(256),
}


# -- loading a variant folder -----------------------------------------------------------------------

def variant_meta(path: Path) -> dict[str, Any]:
    f = Path(path) / "tuitune.json"
    if not f.exists():
        raise TuituneError(f"{path} is not a tuitune model folder (no tuitune.json)")
    return json.loads(f.read_text())


def _task_class(task: str):
    """The Auto class for a task's models, from what the task predicts."""
    import transformers

    return {"labels": transformers.AutoModelForSequenceClassification,
            "fill-mask": transformers.AutoModelForMaskedLM}.get(task_spec(task).predicts,
                                                                transformers.AutoModelForCausalLM)


def load_variant(path: str | Path):
    """Load any variant folder with its documented loader. Returns an eval-mode model on CPU."""
    import torch

    path = Path(path)
    meta = variant_meta(path)
    fmt = (meta.get("compression") or {}).get("format", "transformers")
    cls = _task_class(meta["task"])
    if fmt == "transformers":
        kw: dict[str, Any] = {}
        if "quantization_config" in json.loads((path / "config.json").read_text()):
            kw["device_map"] = "cpu"
        else:
            kw["dtype"] = torch.float32
        return cls.from_pretrained(str(path), **kw).eval()
    if fmt == "torch-int8-dynamic":
        from transformers import AutoConfig

        model = cls.from_config(AutoConfig.from_pretrained(str(path)), dtype=torch.float32).eval()
        q = quantize_dynamic_int8(model)
        q.load_state_dict(torch.load(path / "model_int8.pt", weights_only=False))
        return q.eval()
    if fmt == "codebook":
        return load_codebook(path, cls)
    raise TuituneError(f"{path}: unknown variant format {fmt!r}")


# -- measuring --------------------------------------------------------------------------------------

def size_on_disk(path: Path) -> int:
    """Bytes of the weight files (the tokenizer and metadata are the same for every variant)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES)


def peak_rss_bytes() -> int:
    """This process's peak resident memory (VmHWM; ru_maxrss as a fallback)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def quality(model, inputs: dict[str, Any]) -> dict[str, float]:
    """Accuracy and macro F1 (classification), perplexity (masked LM), eval loss (causal LM)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    spec = task_spec(inputs["task"])
    preds, refs = [], []
    loss_sum, tokens = 0.0, 0
    with torch.inference_mode():
        for b in inputs["quality"]:
            feed = {k: v for k, v in b.items() if k not in ("labels", "special_tokens_mask")}
            logits = model(**feed).logits.float()
            labels = b["labels"]
            if spec.predicts == "labels":
                preds.append(logits.argmax(-1))
                refs.append(labels)
                continue
            if spec.is_causal:
                logits, labels = logits[:, :-1], labels[:, 1:]
            mask = labels != -100
            loss_sum += float(F.cross_entropy(logits[mask], labels[mask], reduction="sum"))
            tokens += int(mask.sum())
    if spec.predicts == "labels":
        from tuitune.engine.tasks import macro_f1

        p, r = torch.cat(preds).numpy(), torch.cat(refs).numpy()
        n = int(max(p.max(), r.max())) + 1
        return {"accuracy": float((p == r).mean()), "f1": macro_f1(np.asarray(p), np.asarray(r), n)}
    loss = loss_sum / max(tokens, 1)
    out = {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else float("inf")}
    return out


def timings(model, inputs: dict[str, Any]) -> dict[str, float]:
    """Latency p50/p95 at batch 1 over the same 40 examples and throughput at batch 32, warm."""
    import torch

    with torch.inference_mode():
        for b in inputs["single"][:3]:
            model(**b)
        lat = []
        for b in inputs["single"]:
            t0 = time.perf_counter()
            model(**b)
            lat.append((time.perf_counter() - t0) * 1000)
        batch = inputs["batch"]
        model(**batch)
        t0 = time.perf_counter()
        for _ in range(THROUGHPUT_REPEATS):
            model(**batch)
        elapsed = time.perf_counter() - t0
    lat.sort()
    n = batch["input_ids"].shape[0]
    return {"latency_p50_ms": statistics.median(lat), "latency_p95_ms": lat[min(len(lat) - 1, int(0.95 * len(lat)))],
            "throughput": n * THROUGHPUT_REPEATS / elapsed}


def measure_folder(path: Path, inputs: dict[str, Any]) -> dict[str, Any]:
    """Load a variant folder and measure it in this process."""
    model = load_variant(path)
    out = {"size_bytes": size_on_disk(path)}
    out["metrics"] = quality(model, inputs)
    out.update(timings(model, inputs))
    out["peak_rss"] = peak_rss_bytes()
    return out


def measure_isolated(path: Path, inputs_file: Path) -> dict[str, Any]:
    """Measure in a fresh process, one at a time: its peak RSS is this variant's alone."""
    from tuitune.launcher import call_engine

    return call_engine(["compress-measure", str(path), str(inputs_file)],
                       error_prefix=f"measuring {Path(path).name} failed")


def measure_main(path: str, inputs_file: str) -> int:
    """`python -m tuitune.engine compress-measure DIR INPUTS`: one JSON line."""
    import torch

    try:
        inputs = torch.load(inputs_file, weights_only=False)
        print(json.dumps(measure_folder(Path(path), inputs)), flush=True)
        return 0
    except TuituneError as err:
        print(json.dumps({"error": str(err)}), flush=True)
    except Exception as err:  # noqa: BLE001 - one line for the parent
        print(json.dumps({"error": f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"}), flush=True)
    return 2


# -- the whole compress -----------------------------------------------------------------------------

def _write_variant(src: Source, name: str, recover_steps: int, progress) -> tuple[Path, Built]:
    """Build into a temporary folder; rename it into place only when complete."""
    src.out_dir.mkdir(parents=True, exist_ok=True)
    final = src.out_dir / name
    tmp = src.out_dir / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        built = BUILDERS[name](src, tmp, recover_steps if name.startswith(("prune", "cluster")) else 0, progress)
        src.tokenizer.save_pretrained(str(tmp))
        meta = dict(src.meta, peft=False, variant=name,
                    compression={"variant": name, "format": built.format, "recover_steps": recover_steps
                                 if name.startswith(("prune", "cluster")) else 0, **built.info})
        (tmp / "tuitune.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        yaml_src = src.model_dir / "tuitune.yaml"
        if yaml_src.exists():
            shutil.copy(yaml_src, tmp / "tuitune.yaml")
        old = None
        if final.exists():
            old = src.out_dir / f".{name}.old-{os.getpid()}"
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return final, built
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _reason(err: BaseException) -> str:
    if isinstance(err, TuituneError):
        return str(err)
    text = (str(err).strip().splitlines() or [""])[0][:240]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


# What a compress process writes beside the variants: `.V.tmp-PID` (a variant being built), `.V.tmp-PID.src`
# (bnb's fp32 copy), `.V.old-PID` (the previous folder, while swapping), `.inputs-PID.pt` (evaluation inputs).
_TEMPORARY = re.compile(r"^\.(?:.+\.(?:tmp|old)|inputs)-(\d+)(?:\.src|\.pt)?$")


def cleanup_partial(out_dir: Path) -> None:
    """Remove what a killed compress left behind (temporary folders never look complete)."""
    if out_dir.exists():
        for p in out_dir.iterdir():
            m = _TEMPORARY.match(p.name)
            if m and not (int(m[1]) != os.getpid() and _alive(int(m[1]))):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    from tuitune.history import pid_alive

    return pid_alive(pid)


def compress(run_id, variants: Optional[list[str]] = None, *, recover_steps: int = 0, isolate: bool = True,
             history: Optional[History] = None, progress: Optional[Callable[[str], None]] = None) -> list[dict]:
    """Build and measure `variants` (all by default) plus the fp32 reference. Returns the rows (also
    written to the history). A variant that fails gets a one-line reason; the others still run."""
    import torch

    if recover_steps < 0:
        raise TuituneError("--recover-steps must be ≥ 0")
    names = [check_variant(v) for v in (variants or list(VARIANTS))]
    names = [BASELINE] + [n for n in dict.fromkeys(names) if n != BASELINE]
    h = history or History()
    src = Source(run_id)
    say = progress or (lambda msg: None)
    cleanup_partial(src.out_dir)
    batch_id = h.start_compression(src.run_id, names, recover_steps)

    def note(msg: str) -> None:
        say(msg)
        h.log_event(src.run_id, "compress", msg)

    note(f"compress: preparing evaluation inputs ({', '.join(names)})")
    inputs = src.eval_inputs()
    inputs_file = src.out_dir / f".inputs-{os.getpid()}.pt"
    src.out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(inputs, inputs_file)
    rows = []
    try:
        for i, name in enumerate(names, 1):
            row: dict[str, Any] = {"variant": name, "description": describe(name)}
            note(f"compress {i}/{len(names)}: building {name}")
            h.update_compression(batch_id, name, status="building")
            try:
                t0 = time.time()
                path, built = _write_variant(src, name, recover_steps, note)
                row["build_s"] = round(time.time() - t0, 2)
                row["path"] = str(path)
                row["info"] = built.info
                note(f"compress {i}/{len(names)}: measuring {name}")
                h.update_compression(batch_id, name, status="measuring", path=str(path))
                row.update(measure_isolated(path, inputs_file) if isolate else measure_folder(path, inputs))
                row["status"] = "done"
            except (Exception, torch.OutOfMemoryError) as err:  # noqa: BLE001 - a variant fails alone
                row["status"] = "failed"
                row["reason"] = _reason(err)
                note(f"compress {i}/{len(names)}: {name} not built: {row['reason']}")
            h.update_compression(batch_id, name, **_row_fields(row))
            rows.append(row)
    finally:
        inputs_file.unlink(missing_ok=True)
    _relative(rows)
    for row in rows:
        h.update_compression(batch_id, row["variant"], info=json.dumps(row.get("info") or {}))
    note(f"compress: done ({sum(r['status'] == 'done' for r in rows)}/{len(rows)} variants)")
    return rows


def _row_fields(row: dict) -> dict[str, Any]:
    keys = ("status", "reason", "path", "size_bytes", "latency_p50_ms", "latency_p95_ms", "throughput", "peak_rss")
    out = {k: row.get(k) for k in keys if k in row}
    if "metrics" in row:
        out["metrics"] = json.dumps(row["metrics"])
    return out


def _relative(rows: list[dict]) -> None:
    """Each row's size and speed against the fp32 reference."""
    ref = next((r for r in rows if r["variant"] == BASELINE and r["status"] == "done"), None)
    if ref is None:
        return
    for r in rows:
        if r["status"] != "done":
            continue
        r.setdefault("info", {})
        r["info"]["size_ratio"] = round(r["size_bytes"] / ref["size_bytes"], 4)
        r["info"]["speedup_b1"] = round(ref["latency_p50_ms"] / r["latency_p50_ms"], 3)

"""Querying a trained run: fill-mask for masked LMs, label probabilities for classifiers.

`Predictor.for_run(id)` loads the saved model (or adapter on its base); `base=True` loads the base
model as it was before fine-tuning, for side-by-side comparison. `serve()` keeps models loaded in
a long-lived process answering JSON lines (used by the UI, which never imports torch).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

from tuitune.config import RunConfig
from tuitune.errors import TuituneError
from tuitune.history import History


def _run_model_dir(run_id) -> tuple[dict, Path]:
    h = History()
    try:
        run = h.get_run(run_id)
    finally:
        h.close()
    out = Path(run["run_dir"] or "") / "model"
    if not (out / "tuitune.json").exists():
        raise TuituneError(
            f"run {run['id']} has no saved model (status {run['status']}): predict needs a completed run"
        )
    return run, out


class Predictor:
    def __init__(self, model, tokenizer, meta: dict[str, Any]):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.meta = meta
        self.task = meta["task"]
        self.n_virtual = int(meta.get("num_virtual_tokens") or 0)

    @classmethod
    def for_run(cls, run_id, *, base: bool = False) -> "Predictor":
        from transformers import AutoTokenizer

        from engine import models
        from engine.tasks import get_task

        run, out = _run_model_dir(run_id)
        meta = json.loads((out / "tuitune.json").read_text())
        cfg = RunConfig.model_validate(run["config"])
        task = get_task(cfg)
        task.label_names = meta.get("label_names") or []
        tokenizer = AutoTokenizer.from_pretrained(str(out))
        base_path = meta.get("base_model") or models.resolve(cfg.model.name_or_path)
        if base:
            model = task.load_model(base_path)
            meta = dict(meta, num_virtual_tokens=0)
        elif meta.get("peft"):
            from peft import PeftModel

            model = PeftModel.from_pretrained(task.load_model(base_path), str(out))
        else:
            model = models.load_model(cfg.model_copy(update={"quantization": cfg.quantization}), str(out),
                                      task.model_class(), **({"num_labels": len(task.label_names)}
                                                             if task.label_names else {}))
        return cls(model, tokenizer, meta)

    def predict(self, text: str, top_k: int = 5) -> dict[str, Any]:
        if not isinstance(text, str) or not text.strip():
            raise TuituneError("text is empty: type a sentence")
        if top_k <= 0:
            raise TuituneError("--top-k must be > 0")
        if self.task == "mlm":
            return self.fill_mask(text, top_k)
        if self.task == "classification":
            return self.classify(text)
        raise TuituneError(f"predict for task {self.task} is not available")

    def _device(self):
        return next(self.model.parameters()).device

    def fill_mask(self, text: str, top_k: int) -> dict[str, Any]:
        import torch

        tok = self.tokenizer
        masked = text.replace("[MASK]", tok.mask_token).replace("<mask>", tok.mask_token)
        if tok.mask_token not in masked:
            raise TuituneError(f"text has no [MASK]: write e.g. \"This is a [MASK] movie!\"")
        enc = tok(masked, return_tensors="pt", truncation=True).to(self._device())
        positions = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten().tolist()
        with torch.no_grad():
            logits = self.model(**enc).logits[0]
        masks = []
        for pos in positions:
            probs = logits[pos + self.n_virtual].float().softmax(-1)
            scores, ids = probs.topk(min(top_k, probs.numel()))
            masks.append([
                {"token": int(i), "token_str": tok.decode([int(i)]).strip(), "score": float(s)}
                for s, i in zip(scores.tolist(), ids.tolist())
            ])
        return {"task": "mlm", "text": text, "predictions": masks[0], "masks": masks}

    def classify(self, text: str) -> dict[str, Any]:
        import torch

        enc = self.tokenizer(text, return_tensors="pt", truncation=True).to(self._device())
        with torch.no_grad():
            probs = self.model(**enc).logits[0].float().softmax(-1).tolist()
        names = self.meta.get("label_names") or [str(i) for i in range(len(probs))]
        ranked = sorted(({"label": names[i] if i < len(names) else str(i), "score": p}
                         for i, p in enumerate(probs)), key=lambda d: -d["score"])
        return {"task": "classification", "text": text, "predictions": ranked}


def serve(run_id) -> int:
    """Answer one JSON request per stdin line: {"text": ..., "top_k": 5, "base": false}."""
    loaded: dict[bool, Predictor] = {}
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            base = bool(req.get("base"))
            if base not in loaded:
                loaded[base] = Predictor.for_run(run_id, base=base)
            answer = loaded[base].predict(req.get("text", ""), int(req.get("top_k", 5)))
            answer["id"] = req.get("id")
            answer["base"] = base
        except TuituneError as err:
            answer = {"error": str(err), "id": req.get("id") if isinstance(req, dict) else None}
        except Exception as err:  # noqa: BLE001
            answer = {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
        print(json.dumps(answer), flush=True)
    return 0


def merge(run_id, out: Optional[str] = None) -> Path:
    """Merge a LoRA-family adapter into its base and save a plain model (+ tokenizer)."""
    pred = Predictor.for_run(run_id)
    if not pred.meta.get("peft"):
        raise TuituneError(f"run {run_id} saved a full model, not an adapter: nothing to merge")
    if not hasattr(pred.model, "merge_and_unload"):
        raise TuituneError(f"method {pred.meta.get('method')} cannot be merged into the base weights")
    run, model_dir = _run_model_dir(run_id)
    target = Path(out) if out else model_dir.parent / "merged"
    merged = pred.model.merge_and_unload()
    merged.save_pretrained(str(target))
    pred.tokenizer.save_pretrained(str(target))
    for name in ("tuitune.yaml", "tuitune.json"):
        src = model_dir / name
        if src.exists():
            text = src.read_text()
            if name == "tuitune.json":
                meta = json.loads(text)
                meta["peft"] = False
                text = json.dumps(meta, indent=2)
            (target / name).write_text(text)
    return target

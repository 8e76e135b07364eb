"""Querying a trained run: fill-mask for masked LMs, label probabilities for classifiers, and
generation (chat template applied, sampling settings, token-by-token streaming) for causal LMs.

`Predictor.for_run(id)` loads the saved model (or adapter on its base); `base=True` loads the base
model as it was before fine-tuning, for side-by-side comparison. `serve()` keeps models loaded in
a long-lived process answering JSON lines (used by the UI, which never imports torch).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

from tuitune.config import stored_config
from tuitune.errors import TuituneError
from tuitune.generation import GENERATION_KEYS
from tuitune.history import History
from tuitune.tasks import task_spec


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


# A text-pair classifier (data.text_pair_column) takes both texts in one string, split at this marker.
PAIR_SEPARATOR = "|||"


def _CallbackStreamer(tokenizer, callback):  # noqa: N802 - built lazily: transformers loads on first use
    """A TextStreamer that hands each decoded piece of the answer (never the prompt) to `callback`."""
    from transformers import TextStreamer

    class CallbackStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False):
            if text:
                callback(text)

    return CallbackStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


class Predictor:
    def __init__(self, model, tokenizer, meta: dict[str, Any]):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.meta = meta
        self.task = meta["task"]
        self.spec = task_spec(self.task)  # what predict answers comes from the task, not its name
        self.n_virtual = int(meta.get("num_virtual_tokens") or 0)

    @classmethod
    def for_run(cls, run_id, *, base: bool = False) -> "Predictor":
        from transformers import AutoTokenizer

        from tuitune.engine import models
        from tuitune.engine.tasks import get_task

        run, out = _run_model_dir(run_id)
        meta = json.loads((out / "tuitune.json").read_text())
        cfg = stored_config(run["config"])
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

    def predict(self, text: str, top_k: Optional[int] = None, on_token=None, **generation: Any) -> dict[str, Any]:
        """`top_k`: how many tokens fill-mask ranks (default 5); for generation, top-k sampling (default 50)."""
        if not isinstance(text, str) or not text.strip():
            raise TuituneError("text is empty: type a sentence")
        if top_k is not None and top_k <= 0:
            raise TuituneError("--top-k must be > 0")
        if self.spec.predicts == "fill-mask":
            return self.fill_mask(text, top_k or 5)
        if self.spec.predicts == "labels":
            return self.classify(text)
        if self.spec.predicts == "generation":
            if top_k is not None:
                generation["top_k"] = top_k
            return self.generate(text, on_token=on_token, **generation)
        raise TuituneError(f"predict for task {self.task} is not available")

    @property
    def generates(self) -> bool:
        return self.spec.predicts == "generation"

    def generate(self, text: str, *, max_new_tokens: int = 128, temperature: float = 0.7, top_p: float = 0.9,
                 top_k: int = 50, do_sample: bool = True, repetition_penalty: float = 1.1,
                 seed: Optional[int] = None, system: Optional[str] = None, on_token=None,
                 history: Optional[list[dict[str, str]]] = None) -> dict[str, Any]:
        """Answer `text` as a user turn (through the chat template when the model has one).

        `history` holds the earlier turns of the conversation ({"role": "user"|"assistant",
        "content": ...}), for multi-turn chat. `on_token(str)` receives each new piece of text as
        it is generated (for streaming)."""
        import torch

        if max_new_tokens <= 0:
            raise TuituneError("max_new_tokens must be > 0")
        if do_sample and temperature <= 0:
            raise TuituneError("temperature must be > 0 when sampling (or set do_sample=false)")
        if not 0 < top_p <= 1:
            raise TuituneError("top_p must be in (0, 1]")
        tok = self.tokenizer
        turns = [{"role": str(t["role"]), "content": str(t["content"])} for t in (history or [])
                 if isinstance(t, dict) and t.get("role") in ("user", "assistant") and "content" in t]
        if getattr(tok, "chat_template", None):
            messages = ([{"role": "system", "content": system}] if system else []) + turns + \
                [{"role": "user", "content": text}]
            prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
        else:  # no template: the turns as plain text, one per line
            enc = tok("\n".join([t["content"] for t in turns] + [text]), return_tensors="pt")
        enc = enc.to(self._device())
        if seed is not None:
            torch.manual_seed(int(seed))
        kw: dict[str, Any] = dict(max_new_tokens=int(max_new_tokens), do_sample=bool(do_sample),
                                  repetition_penalty=float(repetition_penalty),
                                  pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        if do_sample:
            kw.update(temperature=float(temperature), top_p=float(top_p), top_k=int(top_k))
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        if on_token is not None:
            kw["streamer"] = _CallbackStreamer(tok, on_token)
        with torch.no_grad():
            if self.meta.get("method") == "prefix_tuning" and self.meta.get("peft"):
                out = self._generate_without_cache(enc, kw)
            else:
                out = self.model.generate(**enc, **kw)
        new = out[0][enc["input_ids"].shape[1]:]
        answer = tok.decode(new, skip_special_tokens=True)
        return {"task": self.task, "text": text, "generated": answer.strip(), "new_tokens": int(new.numel())}

    def _generate_without_cache(self, enc, kw):
        """Token-by-token decoding through the model's forward pass. With transformers 5,
        `generate()` passes its own cache and silently drops prefix tuning's key/value prefixes
        (the answer equals the base model's); the plain forward pass keeps them."""
        import torch
        from transformers import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
                                  TopKLogitsWarper, TopPLogitsWarper)

        procs = LogitsProcessorList()
        if kw.get("repetition_penalty", 1.0) != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(kw["repetition_penalty"]))
        if kw["do_sample"]:
            procs.extend([TemperatureLogitsWarper(kw["temperature"]), TopKLogitsWarper(kw["top_k"]),
                          TopPLogitsWarper(kw["top_p"])])
        streamer = kw.get("streamer")
        eos = self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos])
        ids, mask = enc["input_ids"], enc["attention_mask"]
        if streamer is not None:
            streamer.put(ids.cpu())
        for _ in range(kw["max_new_tokens"]):
            logits = self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, -1, :].float()
            scores = procs(ids, logits)
            if kw["do_sample"]:
                nxt = torch.multinomial(scores.softmax(-1), 1)
            else:
                nxt = scores.argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
            mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
            if streamer is not None:
                streamer.put(nxt[0].cpu())
            if int(nxt) in eos:
                break
        if streamer is not None:
            streamer.end()
        return ids

    def _device(self):
        return next(self.model.parameters()).device

    def fill_mask(self, text: str, top_k: int) -> dict[str, Any]:
        import torch

        tok = self.tokenizer
        masked = text.replace("[MASK]", tok.mask_token).replace("<mask>", tok.mask_token)
        if tok.mask_token not in masked:
            m = tok.mask_token  # name the model's own mask token (either spelling is accepted)
            also = "" if m == "[MASK]" else " ([MASK] works too)"
            raise TuituneError(f"text has no {m}: write e.g. \"This is a {m} movie!\"{also}")
        enc = tok(masked, return_tensors="pt", truncation=True).to(self._device())
        positions = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten().tolist()
        if not positions:
            raise TuituneError("the [MASK] was cut off by truncation: put it earlier or shorten the text")
        keep = [pos + self.n_virtual for pos in positions]
        with torch.inference_mode():
            logits = self.model(**enc).logits[0, keep]
        masks = []
        for row in logits:
            probs = row.float().softmax(-1)
            scores, ids = probs.topk(min(top_k, probs.numel()))
            masks.append([
                {"token": int(i), "token_str": tok.decode([int(i)]).strip(), "score": float(s)}
                for s, i in zip(scores.tolist(), ids.tolist())
            ])
        return {"task": self.task, "text": text, "predictions": masks[0], "masks": masks}

    def classify(self, text: str) -> dict[str, Any]:
        import torch

        if self.meta.get("text_pair"):
            if PAIR_SEPARATOR not in text:
                raise TuituneError(f"this model reads text pairs: write both texts separated by "
                                   f"'{PAIR_SEPARATOR}' (e.g. \"A man sleeps {PAIR_SEPARATOR} Someone rests\")")
            first, second = (t.strip() for t in text.split(PAIR_SEPARATOR, 1))
            enc = self.tokenizer(first, second, return_tensors="pt", truncation=True)
        else:
            enc = self.tokenizer(text, return_tensors="pt", truncation=True)
        enc = enc.to(self._device())
        with torch.inference_mode():
            probs = self.model(**enc).logits[0].float().softmax(-1).tolist()
        names = self.meta.get("label_names") or [str(i) for i in range(len(probs))]
        ranked = sorted(({"label": names[i] if i < len(names) else str(i), "score": p}
                         for i, p in enumerate(probs)), key=lambda d: -d["score"])
        return {"task": self.task, "text": text, "predictions": ranked}


def serve(run_id) -> int:
    """Answer one JSON request per stdin line: {"text": ..., "top_k": 5, "base": false}.

    Causal-LM runs also take max_new_tokens, temperature, top_p, do_sample, repetition_penalty, seed,
    system and history (the earlier turns, for multi-turn chat); with "stream": true each new piece
    of text comes first as {"id", "base", "token"} lines, then the full answer as the usual final
    line (with "done": true). Every answer line carries the request's "id"."""
    loaded: dict[bool, Predictor] = {}
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req: Any = None
        try:
            req = json.loads(line)
            base = bool(req.get("base"))
            if base not in loaded:
                loaded[base] = Predictor.for_run(run_id, base=base)
            pred = loaded[base]
            on_token = None
            if req.get("stream") and pred.generates:
                rid = req.get("id")

                def on_token(piece, rid=rid, base=base):
                    print(json.dumps({"id": rid, "base": base, "token": piece}), flush=True)

            gen = {k: req[k] for k in GENERATION_KEYS if k in req and pred.generates}
            if pred.generates and isinstance(req.get("history"), list):
                gen["history"] = req["history"]
            top_k = req.get("top_k")
            answer = pred.predict(req.get("text", ""), None if top_k is None else int(top_k), on_token=on_token, **gen)
            answer["done"] = True
            answer["id"] = req.get("id")
            answer["base"] = base
        except TuituneError as err:
            answer = {"error": str(err), "id": req.get("id") if isinstance(req, dict) else None}
        except Exception as err:  # noqa: BLE001
            answer = {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                      "id": req.get("id") if isinstance(req, dict) else None}
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

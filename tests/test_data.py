"""Data the way users have it: folders with split files, save_to_disk folders, separate eval/test
files, integer labels that do not start at 0, text pairs, and the tokenization cache."""

import json
from pathlib import Path

import pytest

from conftest import execute_run, tiny_config
from tuitune.config import DataConfig
from tuitune.history import History


def _rows(n: int, offset: int = 0) -> list[dict]:
    words = {0: ["great", "wonderful", "love"], 1: ["awful", "terrible", "hate"], 2: ["table", "chair", "paper"]}
    return [{"text": f"the film was {words[i % 3][i % 2]} and {words[i % 3][2]}", "label": ["pos", "neg", "neu"][i % 3]}
            for i in range(offset, offset + n)]


def _write_csv(path: Path, rows: list[dict]) -> Path:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.mark.parametrize("layout", [
    {"train.csv": 30, "valid.csv": 6, "my_test.csv": 5, "eval-2.csv": 4},   # split keywords in file names
    {"train/a.csv": 30, "test/b.csv": 7},                                     # ... in folder names
    {"data/train-00000-of-00001.csv": 30, "data/dev-00000-of-00001.csv": 3},  # sharded names
    {"reviews.csv": 12, "more.csv": 9},                                       # no keyword: all train
])
def test_folder_splits_are_the_ones_datasets_reads(tmp_path, layout):
    import datasets

    from tuitune import datasources

    for name, n in layout.items():
        _write_csv(tmp_path / "d" / name, _rows(n))
    ours = {split: sum(len(_rows(layout[str(p.relative_to(tmp_path / "d"))])) for p in files)
            for split, files in datasources.folder_splits(tmp_path / "d").items()}
    theirs = datasets.load_dataset(str(tmp_path / "d"), cache_dir=str(tmp_path / "cache"))
    assert ours == {split: len(ds) for split, ds in theirs.items()}
    assert len(ours) == (1 if "reviews.csv" in layout else 2 if len(layout) == 2 else 3)


def test_folder_with_a_test_file_is_evaluated_on_test(tmp_path, tiny_bert):
    import datasets

    folder = tmp_path / "reviews"
    folder.mkdir()
    datasets.Dataset.from_list(_rows(48)).to_parquet(str(folder / "train.parquet"))
    datasets.Dataset.from_list(_rows(7, 100)).to_parquet(str(folder / "test.parquet"))
    run_id, code = execute_run(tiny_config(tiny_bert, folder, data={"test_split": "test"},
                                           training={"max_steps": 2, "eval_steps": 2}))
    h = History()
    assert code == 0, h.get_run(run_id)["error"]
    [test] = h.evaluations(run_id, "test")
    assert "test_accuracy" in test["metrics"]
    # the test file stayed out of training: train 48 rows minus the carved 10 %
    from tuitune.engine.data import load_raw, splits

    d = DataConfig(path=str(folder), test_split="test")
    parts = splits(load_raw(d), d, seed=42)
    assert (len(parts["train"]), len(parts["validation"]), len(parts["test"])) == (43, 5, 7)


@pytest.mark.parametrize("kind", ["dataset", "datasetdict"])
def test_save_to_disk_folders_load(tmp_path, kind):
    import datasets

    from tuitune.engine.data import load_raw, splits

    train = datasets.Dataset.from_list(_rows(20))
    if kind == "dataset":
        train.save_to_disk(str(tmp_path / "saved"))
    else:
        datasets.DatasetDict({"train": train, "validation": datasets.Dataset.from_list(_rows(4, 50)),
                              "test": datasets.Dataset.from_list(_rows(3, 70))}).save_to_disk(str(tmp_path / "saved"))
    d = DataConfig(path=str(tmp_path / "saved"), test_split="test" if kind == "datasetdict" else None)
    parts = splits(load_raw(d), d, seed=0)
    if kind == "dataset":
        assert (len(parts["train"]), len(parts["validation"])) == (18, 2)
    else:
        assert (len(parts["train"]), len(parts["validation"]), len(parts["test"])) == (20, 4, 3)
        assert parts["validation"]["text"] == [r["text"] for r in _rows(4, 50)]


def test_eval_path_and_test_path_are_separate_files(tmp_path):
    from tuitune.engine.data import load_raw, splits

    train = _write_csv(tmp_path / "a.csv", _rows(30))
    dev = _write_csv(tmp_path / "b.csv", _rows(5, 40))
    test = _write_csv(tmp_path / "c.csv", _rows(4, 60))
    d = DataConfig(path=str(train), eval_path=str(dev), test_path=str(test))
    parts = splits(load_raw(d), d, seed=0)
    assert (len(parts["train"]), len(parts["validation"]), len(parts["test"])) == (30, 5, 4)
    assert parts["test"]["text"] == [r["text"] for r in _rows(4, 60)]


def test_star_ratings_build_a_five_way_head_named_by_the_stars(tmp_path, tiny_bert):
    from tuitune.engine.predict import Predictor

    rows = [{"review": f"{['bad', 'poor', 'fine', 'good', 'great'][i % 5]} stuff number {i}", "stars": i % 5 + 1}
            for i in range(60)]
    path = _write_csv(tmp_path / "stars.csv", rows)
    run_id, code = execute_run(tiny_config(tiny_bert, path, data={"text_column": "review", "label_column": "stars"},
                                           training={"max_steps": 2, "eval_steps": 2}))
    run = History().get_run(run_id)
    assert code == 0, run["error"]
    out = Path(run["run_dir"]) / "model"
    assert json.loads((out / "tuitune.json").read_text())["label_names"] == ["1", "2", "3", "4", "5"]
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "1", "1": "2", "2": "3", "3": "4", "4": "5"}
    answer = Predictor.for_run(run_id).predict("good stuff")
    assert sorted(p["label"] for p in answer["predictions"]) == ["1", "2", "3", "4", "5"]


def test_text_pairs_train_and_predict_with_the_separator(tmp_path, tiny_bert):
    from tuitune.engine.predict import Predictor
    from tuitune.errors import TuituneError

    rows = [{"premise": f"a man is {w} outside", "hypothesis": f"someone is {w if i % 2 else 'asleep'}",
             "label": "entailment" if i % 2 else "contradiction"}
            for i, w in enumerate(["running", "eating", "walking", "singing"] * 10)]
    path = _write_csv(tmp_path / "nli.csv", rows)
    cfg = tiny_config(tiny_bert, path, data={"text_column": "premise", "text_pair_column": "hypothesis"},
                      training={"max_steps": 2, "eval_steps": 2})
    run_id, code = execute_run(cfg)
    assert code == 0, History().get_run(run_id)["error"]
    pred = Predictor.for_run(run_id)
    answer = pred.predict("a man is running outside ||| someone is running")
    assert {p["label"] for p in answer["predictions"]} == {"entailment", "contradiction"}
    with pytest.raises(TuituneError, match=r"separated by '\|\|\|'"):
        pred.predict("a man is running outside")
    # tokenized as a pair: the hypothesis is the second segment
    from tuitune.config import validate_config
    from tuitune.engine.tasks import get_task

    task = get_task(validate_config(cfg))
    ds = task.prepare(pred.tokenizer)
    assert set(ds["train"][0]["token_type_ids"]) == {0, 1}


def test_text_pair_column_must_exist(tmp_path, tiny_bert, tiny_csv):
    run_id, code = execute_run(tiny_config(tiny_bert, tiny_csv, data={"text_pair_column": "hypothesis"}))
    assert code == 1
    assert History().get_run(run_id)["error"] == (
        "text_pair column 'hypothesis' not in dataset: columns are text, label (set data.text_pair_column)")


def _cache_files(home: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in (home / "cache" / "datasets").rglob("cache-*.arrow")}


@pytest.mark.parametrize("source", ["csv", "demo"])
def test_second_run_reuses_the_tokenized_data(tuitune_home, tiny_bert, tiny_csv, source):
    """The runner's data path (Task.prepare) twice on the same data, tokenizer and max_length: the
    second writes no new cache file and rewrites none; a new max_length tokenizes again."""
    from transformers import AutoTokenizer

    from tuitune.config import validate_config
    from tuitune.engine.tasks import get_task

    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    data = {"path": str(tiny_csv)} if source == "csv" else {"path": "demo:bbc-news", "max_train_samples": 40,
                                                             "max_eval_samples": 20}

    def prepare(**extra):
        return get_task(validate_config(tiny_config(tiny_bert, tiny_csv, data=dict(data, **extra)))).prepare(tok)

    first = prepare()
    after_first = _cache_files(tuitune_home)
    assert after_first, "the first run writes tokenized cache files under $TUITUNE_HOME/cache/datasets"
    second = prepare()
    assert _cache_files(tuitune_home) == after_first
    assert second["train"][:]["input_ids"] == first["train"][:]["input_ids"]
    assert {f["filename"] for f in second["train"].cache_files} <= set(after_first)
    prepare(max_length=16)
    assert set(_cache_files(tuitune_home)) > set(after_first)


def test_preview_reads_through_the_engines_resolution(tmp_path):
    from tuitune import dataset_info

    chat = dataset_info.inspect_dataset("demo:chat")
    assert chat.columns == ["messages"] and chat.total > 1000
    folder = tmp_path / "f"
    _write_csv(folder / "train.csv", _rows(30))
    _write_csv(folder / "test.csv", _rows(6))
    info = dataset_info.inspect_dataset(str(folder), "text", "label", validation_size=0.1)
    assert info.splits == {"train": 27, "validation": 3, "test": 6}
    assert info.total == 36 and info.label_counts == {"pos": 10, "neg": 10, "neu": 10}

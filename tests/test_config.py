"""The config schema, presets and --set overrides: real YAML, real pydantic, one-line messages."""

import pytest
import yaml

from tuitune import presets
from tuitune.config import RunConfig, apply_overrides, load_config, validate_config
from tuitune.errors import TuituneError


@pytest.mark.parametrize("name", presets.list_presets())
def test_every_shipped_preset_validates_and_documents_itself(name):
    path = presets.preset_path(name)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#"), f"{name} must open with a comment saying what it does"
    assert "tuitune run " + name in text, f"{name}'s comment must say how to run it"
    cfg = load_config(name)
    assert isinstance(cfg, RunConfig)
    assert cfg.name == name


def test_required_presets_ship():
    names = set(presets.list_presets())
    assert {"bbc-news-minilm", "bbc-news-minilm-head", "bbc-news-minilm-lora", "tweets-minilm-lora",
            "minilm-mlm", "yelp-bert", "imdb-distilbert-mlm"} <= names


def test_set_overrides_nested_fields_with_typed_values():
    cfg = load_config("bbc-news-minilm", ["training.learning_rate=3e-5", "method.name=lora",
                                          "method.target_modules=[query,value]", "data.max_train_samples=100"])
    assert cfg.training.learning_rate == pytest.approx(3e-5)
    assert cfg.method.name == "lora"
    assert cfg.method.target_modules == ["query", "value"]
    assert cfg.data.max_train_samples == 100


@pytest.mark.parametrize("override, message", [
    ("training.learning_rate=-1", "training.learning_rate: must be greater than 0"),
    ("training.per_device_train_batch_size=0", "per_device_train_batch_size: must be greater than 0"),
    ("training.num_train_epochs=0", "num_train_epochs: must be greater than 0"),
    ("method.lora_r=0", "lora_r must be > 0"),
    ("training.lerning_rate=1e-4", "unknown key 'training.lerning_rate'"),
    ("method.name=magic", "method.name: must be one of"),
    ("quantization.load_in=4bit", "cannot be trained with method full"),
    ("training.max_steps=0", "max_steps must be > 0"),
    ("training.fsdp=true", "set training.processes > 1"),
])
def test_bad_values_give_one_line_messages(override, message):
    with pytest.raises(TuituneError) as err:
        load_config("bbc-news-minilm", [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_qlora_requires_4bit_loading():
    with pytest.raises(TuituneError, match="qlora needs quantization.load_in: 4bit"):
        load_config("bbc-news-minilm", ["method.name=qlora"])
    cfg = load_config("bbc-news-minilm", ["method.name=qlora", "quantization.load_in=4bit"])
    assert cfg.quantization.bnb_4bit_quant_type == "nf4"


def test_set_needs_key_value():
    with pytest.raises(TuituneError, match="key=value"):
        apply_overrides({}, ["training.learning_rate"])


def test_yaml_file_roundtrip(tmp_path):
    cfg = load_config("bbc-news-minilm-lora")
    path = tmp_path / "mine.yaml"
    path.write_text(cfg.to_yaml())
    again = load_config(str(path))
    assert again.model_dump() == cfg.model_dump()


def test_corrupt_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("task: classification\nmodel: [unclosed\n")
    with pytest.raises(TuituneError, match="not valid YAML at line"):
        load_config(str(path))


def test_unknown_preset_lists_known_ones():
    with pytest.raises(TuituneError, match="presets are .*bbc-news-minilm"):
        load_config("no-such-preset")


def test_not_a_mapping():
    with pytest.raises(TuituneError, match="mapping"):
        validate_config(yaml.safe_load("- a\n- b\n"))


def test_fsdp_reaches_the_training_arguments(tuitune_home):
    from tuitune.engine.trainer_args import training_arguments

    cfg = load_config("bbc-news-minilm", ["training.processes=2", "training.fsdp=true",
                                          "training.fsdp_config={cpu_offload: true}"])
    args = training_arguments(cfg, tuitune_home / "out")
    assert args.fsdp and args.fsdp_config["cpu_offload"] is True


# -- versioned configs ---------------------------------------------------------------------------

# A test "upgrade": tuitune version 2 renamed training.lr (version 1) to training.learning_rate.
RENAME = (2, "training.lr", "training.learning_rate")
SITECUSTOMIZE = (
    "import tuitune.config as c\n"
    f"c.CONFIG_VERSION = 2\nc.RENAMED.append({RENAME!r})\n"
)


@pytest.fixture
def upgraded(monkeypatch):
    import tuitune.config as c

    monkeypatch.setattr(c, "CONFIG_VERSION", 2)
    monkeypatch.setattr(c, "RENAMED", [RENAME])


def _old(cfg: dict) -> dict:
    """`cfg` as tuitune version 1 would have written it (training.lr)."""
    import copy

    old = copy.deepcopy(cfg)
    old["config_version"] = 1
    old["training"]["lr"] = old["training"].pop("learning_rate")
    return old


def test_configs_carry_their_version():
    from tuitune.config import CONFIG_VERSION

    cfg = load_config("bbc-news-minilm")
    assert cfg.config_version == CONFIG_VERSION
    assert yaml.safe_load(cfg.to_yaml())["config_version"] == CONFIG_VERSION


def test_renamed_keys_are_remapped_with_a_warning(upgraded, tmp_path, caplog):
    old = _old(load_config("bbc-news-minilm", ["training.learning_rate=3e-4"]).model_dump(mode="json"))
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old))
    with caplog.at_level("WARNING", logger="tuitune.config"):
        cfg = load_config(str(path))
    assert cfg.training.learning_rate == 3e-4 and cfg.config_version == 2
    assert "config version 1 upgraded to 2: training.lr -> training.learning_rate" in caplog.text


def test_without_the_remap_an_old_key_is_unknown():
    """The remap is what makes an old config readable: without it the same dict is refused."""
    old = _old(load_config("bbc-news-minilm").model_dump(mode="json"))
    with pytest.raises(TuituneError, match="unknown key 'training.lr'"):
        validate_config(old)


def test_a_newer_config_is_one_line_error():
    data = load_config("bbc-news-minilm").model_dump(mode="json")
    data["config_version"] = 99
    with pytest.raises(TuituneError, match=r"^config_version 99 is newer than this tuitune reads \(1\): upgrade"):
        validate_config(data)


def test_old_run_is_shown_resumed_predicted_and_cloned_after_an_upgrade(tmp_path, tiny_bert, tiny_csv, upgraded):
    """A run recorded by 'version 1' (training.lr) in a real history, read back by 'version 2'
    through the real CLI (its processes get the version-2 remap via sitecustomize)."""
    import json
    import os
    import shutil
    import sqlite3
    import subprocess

    from conftest import execute_run, tiny_config, tuitune_cmd
    from tuitune import paths
    from tuitune.config import clone_config, stored_config

    def tuitune(*args, upgrade=True):
        env = dict(os.environ)
        if upgrade:
            (tmp_path / "site").mkdir(exist_ok=True)
            (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
            env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), env.get("PYTHONPATH", "")])
        return subprocess.run(tuitune_cmd() + list(args), capture_output=True, text=True, env=env, timeout=300,
                              stdin=subprocess.DEVNULL)

    run_id, code = execute_run(tiny_config(tiny_bert, tiny_csv, training={"max_steps": 6, "eval_steps": 3,
                                                                         "save_total_limit": 2}))
    assert code == 0
    # Rewrite the record as version 1 wrote it, stopped after step 3 (its last checkpoint).
    db = sqlite3.connect(paths.db_path())
    stored = json.loads(db.execute("SELECT config FROM runs WHERE id=?", (run_id,)).fetchone()[0])
    db.execute("UPDATE runs SET config=?, status='stopped' WHERE id=?", (json.dumps(_old(stored)), run_id))
    db.commit()
    db.close()
    shutil.rmtree(paths.run_dir(run_id) / "checkpoints" / "checkpoint-6")

    shown = tuitune("show", str(run_id), "--json")
    assert shown.returncode == 0, shown.stderr
    training = json.loads(shown.stdout)["config"]["training"]
    assert training["learning_rate"] == 5e-3 and "lr" not in training
    assert "training.lr -> training.learning_rate" in shown.stderr

    answer = tuitune("predict", str(run_id), "great wonderful best", "--json")
    assert answer.returncode == 0, answer.stderr
    assert {p["label"] for p in json.loads(answer.stdout)["predictions"]} == {"negative", "neutral", "positive"}

    resumed = tuitune("resume", str(run_id), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "completed" and json.loads(resumed.stdout)["step"] == 6

    from tuitune.history import History

    h = History()
    clone = clone_config(h.get_run(run_id)["config"])
    h.close()
    assert clone["name"] == "tiny-clone" and clone["training"]["learning_rate"] == 5e-3
    assert stored_config(clone).config_version == 2
    (tmp_path / "clone.yaml").write_text(yaml.safe_dump(clone))
    cloned = tuitune("config", str(tmp_path / "clone.yaml"), "--json")
    assert cloned.returncode == 0, cloned.stderr
    assert json.loads(cloned.stdout)["training"]["learning_rate"] == 5e-3

    # A record from a newer tuitune: a one-line error, not a traceback.
    db = sqlite3.connect(paths.db_path())
    db.execute("UPDATE runs SET config=json_set(config, '$.config_version', 3), status='stopped' WHERE id=?",
               (run_id,))
    db.commit()
    db.close()
    refused = tuitune("resume", str(run_id))
    assert refused.returncode != 0
    assert refused.stderr.strip() == ("tuitune: error: config_version 3 is newer than this tuitune reads (2): "
                                      "upgrade tuitune (pip install -U tuitune)")

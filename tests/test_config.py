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

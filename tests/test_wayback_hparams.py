"""The wayback seed's train command lines, read into this project's training config."""

import shlex
import warnings

import pytest

from core.errors import ConfigError
from core.models.wayback import WaybackConfig
from core.models.wayback_hparams import (
    hyperparameters_to_config,
    parse_flow_mapping,
    parse_hyperparameters,
    seed_sample_args,
    seed_train_args,
)
from core.training.config import from_dict

# The two training commands of the wayback seed's README, verbatim.
SEED_STACK = """python train
  --data_dir /path/to/data
  --base_output_dir /tmp/stack
  --resume false
  --max_step_count 1000
  --max_examples 1
  --validation_interval 100
  --basename stack
  --hyperparameters '{
    sampling_frequency: 11025,
    bit_depth: 8,
    data_dim: 256,
    initial_learning_rate: 0.01,
    decay_rate: 0.1,
    decay_patience: 100,
    clip_norm: 1,
    layout: stack,
    cell: lstm,
    activation: elu,
    use_bn: True,
    vskip: True,
    batch_size: 100,
    chunk_size: 4,
    layer_sizes: [1000, 1000, 1000],
    boundaries: [100, 100, 100],
    io_sizes: [256],
    weight_decay: 1e-5
  }'"""

SEED_WAYBACK = """python train
  --data_dir /path/to/data
  --base_output_dir /tmp/models
  --resume false
  --max_step_count 1000
  --max_examples 1
  --validation_interval 100
  --basename wayback
  --hyperparameters '{
    sampling_frequency: 11025,
    bit_depth: 8,
    data_dim: 256,
    initial_learning_rate: 0.01,
    decay_rate: 0.1,
    decay_patience: 100,
    clip_norm: 1,
    layout: wayback,
    cell: gru,
    activation: elu,
    use_bn: True,
    vskip: True,
    batch_size: 100,
    segment_length: 4000,
    chunk_size: 4,
    layer_sizes: [1000, 1000, 1000],
    periods: [1, 1, 10],
    boundaries: [100, 100, 100],
    unroll_layer_count: 2,
    carry: True,
    io_sizes: [256],
    weight_decay: 1e-5
  }'"""

SEED_SAMPLE = """python sample
  --model_ckpt /path/to/model.ckpt
  --model_hyperparameters /path/to/hyperparameters.yaml
  --base_output_path /path/to/output
  --temperature 0.001
  condition1.wav
  condition2.wav
  condition3.wav"""

TRAIN = {"lr": 0.01, "decay_rate": 0.1, "decay_patience": 1, "clip_norm": 1, "batch_size": 100,
         "weight_decay": 1e-5, "max_steps": 1000, "valid_every": 100}


def args(command: str) -> list[str]:
    """The command as a shell would split it, one line or several, without the script name."""
    return shlex.split(command)[2:]


def test_seed_stack_command_becomes_a_valid_training_config():
    out = seed_train_args(args(SEED_STACK))
    assert out["run_dir"] == "/tmp/stack/stack" and out["resume"] is False
    cfg = from_dict(out["config"])
    assert cfg.data.kind == "audio_folder" and cfg.data.root == "/path/to/data" and cfg.data.max_files == 1
    assert {k: getattr(cfg.train, k) for k in TRAIN} == TRAIN
    model = cfg.model_config()
    assert isinstance(model, WaybackConfig)
    assert (model.layout, model.cell, model.activation) == ("stack", "lstm", "elu")
    assert model.use_bn is True and model.vskip is True
    assert (model.sampling_frequency, model.quantization_levels, model.chunk_size) == (11025, 256, 4)
    assert model.layer_sizes == [1000] * 3 and model.boundaries == [100] * 3 and model.periods == [1] * 3
    assert model.io_sizes == [256] and model.segment_length == 400  # max(boundaries) chunks of 4


def test_seed_wayback_command_becomes_a_valid_training_config_and_warns_about_unroll_layer_count():
    out = seed_train_args(args(SEED_WAYBACK))
    assert out["run_dir"] == "/tmp/models/wayback"
    with pytest.warns(UserWarning, match="unroll_layer_count"):
        cfg = from_dict(out["config"])
    assert {k: getattr(cfg.train, k) for k in TRAIN} == TRAIN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = cfg.model_config()
    assert (model.layout, model.cell, model.carry, model.unroll_layer_count) == ("wayback", "gru", True, 2)
    assert model.periods == [1, 1, 10] and model.segment_length == 4000 and model.longest_gradient_span == 4000


def test_one_line_command_with_equals_signs_reads_the_same():
    one_line = " ".join(SEED_WAYBACK.split())
    split = shlex.split(one_line)[2:]
    joined = [f"{a}={b}" for a, b in zip(split[::2], split[1::2], strict=True)]
    assert seed_train_args(joined) == seed_train_args(split) == seed_train_args(args(SEED_WAYBACK))


def test_flow_mapping_reads_bare_words_numbers_booleans_lists_and_quotes():
    text = "{a: 1, b: [2, 3e-5, four, -1.5], c: True, d: false, e: None, 'f g': \"h, i\", j: {k: []}}"
    assert parse_flow_mapping(text) == {"a": 1, "b": [2, 3e-5, "four", -1.5], "c": True, "d": False, "e": None,
                                        "f g": "h, i", "j": {"k": []}}


@pytest.mark.parametrize("text, message", [
    ("{a: 1", "closing"),
    ("{a 1}", "':'"),
    ("{a: 1,, b: 2}", "expected a name at character 6"),
    ("{a: [1,, 2]}", "unexpected .,. at character 7"),
    ("{a: 1} b", "unexpected"),
    ("[1, 2]", "mapping"),
    ("{a: 1, a: 2}", "twice"),
])
def test_malformed_hyperparameters_are_refused_saying_where(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_flow_mapping(text)


def test_unknown_hyperparameter_wrong_data_dim_and_unknown_flag_are_refused():
    with pytest.raises(ConfigError, match="unknown hyperparameters: dropout"):
        hyperparameters_to_config({"dropout": 0.5})
    with pytest.raises(ConfigError, match="data_dim"):
        hyperparameters_to_config({"bit_depth": 8, "data_dim": 128})
    with pytest.raises(ConfigError, match="--epochs"):
        seed_train_args(["--epochs", "3"])
    with pytest.raises(ConfigError, match="--resume"):
        seed_train_args(["--resume", "maybe"])


def test_no_step_limit_and_patience_in_validations():
    out = seed_train_args(["--max_step_count", "None", "--validation_interval", "30",
                           "--hyperparameters", "{decay_patience: 100}"])
    assert out["config"]["train"]["max_steps"] >= 10**9 and out["config"]["train"]["decay_patience"] == 4


def test_hyperparameters_text_alone_becomes_the_model_and_train_sections():
    cfg = parse_hyperparameters("{layout: wayback, periods: [1, 2], boundaries: [4, 4], layer_sizes: [8, 8], "
                                "initial_learning_rate: 0.002, batch_size: 4}")
    assert cfg == {"model": {"model_type": "wayback", "layout": "wayback", "periods": [1, 2], "boundaries": [4, 4],
                             "layer_sizes": [8, 8]}, "data": {}, "train": {"lr": 0.002, "batch_size": 4}}
    assert from_dict(cfg).model_config().segment_length == 8


def test_seed_sample_command_names_checkpoint_output_temperature_and_conditions():
    out = seed_sample_args(args(SEED_SAMPLE))
    assert out == {"checkpoint": "/path/to/model.ckpt", "hyperparameters": "/path/to/hyperparameters.yaml",
                   "output_prefix": "/path/to/output", "temperature": 0.001,
                   "conditions": ["condition1.wav", "condition2.wav", "condition3.wav"]}
    assert seed_sample_args(["--model_ckpt", "runs/x/"])["output_prefix"] == "runs/x/"
    with pytest.raises(ConfigError, match="--model_ckpt"):
        seed_sample_args(["a.wav"])
    with pytest.raises(ConfigError, match="--temperature"):
        seed_sample_args(["--model_ckpt", "x", "--temperature", "hot"])

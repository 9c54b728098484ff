"""The wayback seed's command line, read into this project's training config.

The seed trains with `python train --data_dir ... --hyperparameters '{layout: wayback, ...}'`, the
hyperparameters a flow mapping whose bare words are strings. `seed_train_args(argv)` reads such a
command line (everything after the script name) into

    {"config": {"model": {...}, "data": {...}, "train": {...}}, "run_dir": str, "resume": bool}

so a seed command runs with only the script name changed; `parse_hyperparameters(text)` does the
same for the --hyperparameters text alone, and `seed_sample_args(argv)` reads the seed's `sample`
command. The names map as follows:

    model (WaybackConfig, same names): sampling_frequency, bit_depth, layout, cell, activation, use_bn,
        vskip, segment_length, chunk_size, layer_sizes, periods, boundaries, unroll_layer_count, carry,
        io_sizes
    data_dim                 checked to equal 2^bit_depth (it is inferred), then dropped
    initial_learning_rate    train.lr
    decay_rate               train.decay_rate
    decay_patience (steps)   train.decay_patience (validations: steps / validation_interval, at least 1)
    clip_norm, batch_size, weight_decay     train.clip_norm, train.batch_size, train.weight_decay
    --data_dir               data.kind "audio_folder", data.root (train/, valid/, test/ *.wav)
    --max_examples           data.max_files (None: all)
    --max_step_count         train.max_steps (None: no limit, 10^9)
    --validation_interval    train.valid_every
    --base_output_dir, --basename           run_dir = base_output_dir/basename
    --resume                 resume
"""

from __future__ import annotations

import math
import re

from core.errors import ConfigError

MODEL_KEYS = ("sampling_frequency", "bit_depth", "layout", "cell", "activation", "use_bn", "vskip",
              "segment_length", "chunk_size", "layer_sizes", "periods", "boundaries", "unroll_layer_count",
              "carry", "io_sizes")
TRAIN_KEYS = {"initial_learning_rate": "lr", "decay_rate": "decay_rate", "decay_patience": "decay_patience",
              "clip_norm": "clip_norm", "batch_size": "batch_size", "weight_decay": "weight_decay"}
NO_LIMIT_STEPS = 10**9

_TOKEN = re.compile(r"\s*(?:([{}\[\]:,])|'([^']*)'|\"([^\"]*)\"|([^\s{}\[\]:,'\"]+))")
_WORDS = {"true": True, "false": False, "none": None, "null": None}


def parse_flow_mapping(text: str) -> dict:
    """'{a: 1, b: [2, 3e-5, four], c: True}' -> {"a": 1, "b": [2, 3e-05, "four"], "c": True}.

    Bare words are strings except numbers and True/False/None (any case); keys are bare or quoted
    words. ConfigError, naming the position, for anything else.
    """
    tokens: list[tuple[int, str, object]] = []  # (offset, kind, value): kind "p" punctuation, "s" string, "w" word
    pos, text = 0, str(text)
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos:].strip():
                raise ConfigError(f"hyperparameters: cannot read {text[pos:pos + 20]!r} at character {pos}")
            break
        punct, single, double, word = m.groups()
        where = m.start() + len(m.group(0)) - len(m.group(0).lstrip())
        if punct is not None:
            tokens.append((where, "p", punct))
        elif word is not None:
            tokens.append((where, "w", word))
        else:
            tokens.append((where, "s", single if single is not None else double))
        pos = m.end()
    value, end = _value(tokens, 0)
    if end != len(tokens):
        raise ConfigError(f"hyperparameters: unexpected {tokens[end][2]!r} at character {tokens[end][0]}")
    if not isinstance(value, dict):
        raise ConfigError("hyperparameters must be a mapping in braces: '{name: value, ...}'")
    return value


def _value(tokens: list, i: int) -> tuple[object, int]:
    if i >= len(tokens):
        raise ConfigError("hyperparameters: the text ends where a value should be")
    where, kind, tok = tokens[i]
    if kind == "s":
        return tok, i + 1
    if kind == "w":
        return _scalar(tok), i + 1
    if tok == "[":
        items, i = [], i + 1
        while not _is(tokens, i, "]"):
            item, i = _value(tokens, i)
            items.append(item)
            i = _separator(tokens, i, "]")
        return items, i + 1
    if tok == "{":
        out, i = {}, i + 1
        while not _is(tokens, i, "}"):
            if i >= len(tokens) or tokens[i][1] == "p":
                raise ConfigError(f"hyperparameters: expected a name at character {_at(tokens, i)}")
            key = tokens[i][2]
            if not _is(tokens, i + 1, ":"):
                raise ConfigError(f"hyperparameters: expected ':' after {key!r} at character {_at(tokens, i + 1)}")
            if key in out:
                raise ConfigError(f"hyperparameters: {key!r} is given twice")
            out[key], i = _value(tokens, i + 2)
            i = _separator(tokens, i, "}")
        return out, i + 1
    raise ConfigError(f"hyperparameters: unexpected {tok!r} at character {where}")


def _is(tokens: list, i: int, punct: str) -> bool:
    if i >= len(tokens):
        raise ConfigError(f"hyperparameters: the text ends before a closing {punct!r}")
    return tokens[i][1] == "p" and tokens[i][2] == punct


def _separator(tokens: list, i: int, close: str) -> int:
    if _is(tokens, i, ","):
        return i + 1
    if _is(tokens, i, close):
        return i
    raise ConfigError(f"hyperparameters: expected ',' or {close!r} at character {tokens[i][0]}")


def _at(tokens: list, i: int) -> int:
    return tokens[i][0] if i < len(tokens) else -1


def _scalar(word: str) -> object:
    if word.lower() in _WORDS:
        return _WORDS[word.lower()]
    for kind in (int, float):
        try:
            return kind(word)
        except ValueError:
            pass
    return word


def hyperparameters_to_config(hp: dict, validation_interval: int | None = None) -> dict:
    """The seed's hyperparameters -> {"model": {...}, "data": {}, "train": {...}} (see the module docstring).

    validation_interval converts decay_patience from steps into validations; None keeps the number.
    """
    unknown = sorted(set(hp) - set(MODEL_KEYS) - set(TRAIN_KEYS) - {"data_dim"})
    if unknown:
        raise ConfigError(f"unknown hyperparameters: {', '.join(unknown)}; known: "
                          f"{', '.join(sorted([*MODEL_KEYS, *TRAIN_KEYS, 'data_dim']))}")
    model = {"model_type": "wayback", **{k: hp[k] for k in MODEL_KEYS if k in hp}}
    if "data_dim" in hp:
        bits = hp.get("bit_depth", 8)
        if not isinstance(bits, int) or hp["data_dim"] != 2**bits:
            raise ConfigError(f"data_dim must equal 2^bit_depth = {2**bits if isinstance(bits, int) else '?'} "
                              f"(it is inferred from bit_depth), got {hp['data_dim']!r}")
    train = {ours: hp[theirs] for theirs, ours in TRAIN_KEYS.items() if theirs in hp}
    if "decay_patience" in train and validation_interval:
        patience = train["decay_patience"]
        if isinstance(patience, int) and not isinstance(patience, bool):
            train["decay_patience"] = max(1, math.ceil(patience / validation_interval))
    return {"model": model, "data": {}, "train": train}


def parse_hyperparameters(text: str, validation_interval: int | None = None) -> dict:
    """The text of --hyperparameters -> {"model": {...}, "data": {}, "train": {...}}."""
    return hyperparameters_to_config(parse_flow_mapping(text), validation_interval)


_FLAGS = {"data_dir": str, "base_output_dir": str, "resume": bool, "max_step_count": int, "max_examples": int,
          "validation_interval": int, "basename": str, "hyperparameters": str}


def _read_flags(argv: list[str], known: dict, command: str) -> tuple[dict, list[str]]:
    """--name value / --name=value pairs -> ({name: value}, the other arguments in order)."""
    flags: dict[str, object] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            rest.append(arg)
            i += 1
            continue
        name, eq, value = arg[2:].partition("=")
        if name not in known:
            raise ConfigError(f"unknown argument {arg!r}; the seed's {command} takes --{', --'.join(known)}")
        if not eq:
            if i + 1 >= len(argv):
                raise ConfigError(f"--{name} needs a value")
            value, i = argv[i + 1], i + 1
        flags[name] = _flag(known, name, value)
        i += 1
    return flags, rest


def seed_train_args(argv: list[str]) -> dict:
    """The seed's `train` arguments (argv after the script name) -> {"config", "run_dir", "resume"}."""
    flags, rest = _read_flags(argv, _FLAGS, "train")
    if rest:
        raise ConfigError(f"unexpected argument {rest[0]!r}; the seed's train takes only --name value pairs")
    hp = parse_flow_mapping(flags.get("hyperparameters", "{}"))
    cfg = hyperparameters_to_config(hp, flags.get("validation_interval"))
    if "data_dir" in flags:
        cfg["data"] = {"kind": "audio_folder", "root": flags["data_dir"]}
        if flags.get("max_examples") is not None:
            cfg["data"]["max_files"] = flags["max_examples"]
    if "max_step_count" in flags:
        cfg["train"]["max_steps"] = NO_LIMIT_STEPS if flags["max_step_count"] is None else flags["max_step_count"]
    if flags.get("validation_interval") is not None:
        cfg["train"]["valid_every"] = flags["validation_interval"]
    base, name = flags.get("base_output_dir") or "runs", flags.get("basename") or "wayback"
    return {"config": cfg, "run_dir": f"{str(base).rstrip('/')}/{name}", "resume": bool(flags.get("resume", False))}


_SAMPLE_FLAGS = {"model_ckpt": str, "model_hyperparameters": str, "base_output_path": str, "temperature": float}


def seed_sample_args(argv: list[str]) -> dict:
    """The seed's `sample` arguments -> {"checkpoint", "hyperparameters", "output_prefix", "temperature",
    "conditions"}: a checkpoint folder (its config.json holds the hyperparameters, so --model_hyperparameters
    is only passed on), the prefix of every written path (default: the checkpoint's folder), the softmax
    temperature (default 1) and the WAVs whose fragments prime the model, one output each."""
    flags, conditions = _read_flags(argv, _SAMPLE_FLAGS, "sample")
    if "model_ckpt" not in flags:
        raise ConfigError("--model_ckpt is required: the checkpoint to sample from")
    ckpt = str(flags["model_ckpt"]).rstrip("/")
    return {"checkpoint": ckpt, "hyperparameters": flags.get("model_hyperparameters"),
            "output_prefix": flags.get("base_output_path") or ckpt + "/",
            "temperature": flags.get("temperature", 1.0), "conditions": conditions}


def _flag(known: dict, name: str, value: str) -> object:
    kind = known[name]
    if kind is str:
        return value
    if kind is float:
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"--{name} must be a number, got {value!r}") from None
        if not (math.isfinite(number) and number >= 0):
            raise ConfigError(f"--{name} must be a number >= 0, got {value!r}")
        return number
    if kind is bool:
        if value.lower() not in ("true", "false"):
            raise ConfigError(f"--{name} must be true or false, got {value!r}")
        return value.lower() == "true"
    if value.lower() == "none":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"--{name} must be an integer or None, got {value!r}") from None

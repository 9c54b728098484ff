"""The stack-against-wayback experiment: its matched settings, its measurements, and the page section that draws it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from core.models import build_model
from core.training import config as train_config
from pages.recurrence_experiment import experiment_view, table_markdown

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("wayback_experiment", ROOT / "scripts" / "wayback_experiment.py")
experiment = importlib.util.module_from_spec(spec)
spec.loader.exec_module(experiment)


def _config_file(tmp_path: Path, dataset: str, layout: str) -> Path:
    path = tmp_path / f"{dataset}-{layout}.json"
    path.write_text(json.dumps(experiment.experiment_config(dataset, layout)))
    return path


@pytest.mark.parametrize("dataset", list(experiment.DATASETS))
def test_both_layouts_have_the_same_parameters_and_training_samples(tmp_path: Path, dataset: str) -> None:
    counts, samples = {}, {}
    for layout in experiment.LAYOUTS:
        cfg = train_config.load(_config_file(tmp_path, dataset, layout))
        model_cfg = cfg.model_config()
        counts[layout] = sum(p.numel() for p in build_model(model_cfg).parameters())
        samples[layout] = cfg.train.max_steps * cfg.train.batch_size * model_cfg.segment_length
    assert counts["stack"] == counts["wayback"]
    budget = experiment.DATASETS[dataset]["samples"]
    for layout, n in samples.items():  # each within one step of the budget
        segment = train_config.load(_config_file(tmp_path, dataset, layout)).model_config().segment_length
        assert budget - experiment.BATCH * segment < n <= budget, layout


def test_the_wayback_layout_reaches_four_times_further_back() -> None:
    spans = {layout: train_config.from_dict(experiment.experiment_config("melodies", layout))
             .model_config().longest_gradient_span for layout in experiment.LAYOUTS}
    assert spans == {"wayback": 1024, "stack": 256}


def test_the_two_layouts_use_about_the_same_memory_per_training_step(tmp_path: Path) -> None:
    # the median of 3 fresh processes, as the experiment measures it: one process in a loaded CI run once
    # measured 69 MiB where the others measure 20-22
    memory = {layout: experiment.step_memory_mib(_config_file(tmp_path, "melodies", layout), repeats=3)
              for layout in experiment.LAYOUTS}
    assert all(m > 1.0 for m in memory.values()), memory  # a step of 16 x 256+ samples allocates megabytes
    assert 0.6 < memory["stack"] / memory["wayback"] < 1.6, memory


def _row(dataset: str, layout: str, bits: float) -> dict:
    return {"dataset": dataset, "layout": layout, "parameters": 1000, "test_bits_per_sample": bits,
            "peak_step_memory_mib": 12.5, "gradient_span_samples": 1024, "gradient_span_ms": 128.0,
            "training_seconds": 600}


def test_the_page_draws_one_bar_per_layout_and_data_set(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    rows = [_row("melodies", "stack", 3.5), _row("melodies", "wayback", 3.25), _row("tones", "stack", 2.0),
            _row("tones", "wayback", 2.5)]
    path.write_text(json.dumps({"datasets": {"melodies": "chorales"}, "rows": rows}))
    fig, text = experiment_view(path)
    bars = {trace.name: dict(zip(trace.x, trace.y, strict=True)) for trace in fig.data}
    assert bars == {"stack": {"melodies": 3.5, "tones": 2.0}, "wayback": {"melodies": 3.25, "tones": 2.5}}
    assert "| melodies | wayback | 1,000 | 3.250 | 12.5 MiB | 1,024 samples (128 ms) | 10 min |" in text
    assert "*melodies*: chorales." in text


def test_without_results_the_page_says_how_to_make_them(tmp_path: Path) -> None:
    fig, text = experiment_view(tmp_path / "missing.json")
    assert not fig.data and "scripts/wayback_experiment.py" in text


def test_the_table_orders_rows_by_data_set_then_layout() -> None:
    text = table_markdown([_row("tones", "wayback", 1.0), _row("melodies", "stack", 2.0)], {})
    body = [line for line in text.splitlines() if line.startswith("| melodies") or line.startswith("| tones")]
    assert body[0].startswith("| melodies | stack") and body[1].startswith("| tones | wayback")

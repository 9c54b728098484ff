"""`python app.py`'s options: documented in --help, checked before anything is served."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from app import parse_args

ROOT = Path(__file__).resolve().parents[1]


def test_help_documents_every_option():
    shown = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True)
    for option in ("--host", "--port", "--share", "--auth", "STUDIO_AUTH", "--checkpoints", "--max-concurrency",
                   "--runs", "--max-runs", "--device"):
        assert option in shown.stdout


def test_defaults_and_a_login_from_the_option_or_the_environment(monkeypatch):
    monkeypatch.delenv("STUDIO_AUTH", raising=False)
    args = parse_args([])
    assert (args.host, args.port, args.share, args.auth, args.max_concurrency) == ("127.0.0.1", 7860, False, None, 2)
    assert args.device == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))
    assert parse_args(["--auth", "ann:s3cret:x"]).auth == ("ann", "s3cret:x")
    monkeypatch.setenv("STUDIO_AUTH", "bob:pw")
    assert parse_args([]).auth == ("bob", "pw")
    assert parse_args(["--device", "cpu"]).device == torch.device("cpu")


@pytest.mark.parametrize("argv, message", [
    (["--auth", "nopassword"], "auth must look like user:password"),
    (["--max-concurrency", "0"], "--max-concurrency must be >= 1"),
    (["--max-runs", "0"], "--max-runs must be >= 1"),
    (["--device", "tpu9"], "unknown device 'tpu9'"),
])
def test_bad_options_stop_with_the_reason(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("STUDIO_AUTH", raising=False)
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_asking_for_cuda_without_it_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--device", "cuda"])
    assert "CUDA is not available" in capsys.readouterr().err


def test_a_bad_studio_auth_is_refused(capsys, monkeypatch):
    monkeypatch.setenv("STUDIO_AUTH", "justaname")
    with pytest.raises(SystemExit):
        parse_args([])
    assert "STUDIO_AUTH must look like user:password" in capsys.readouterr().err

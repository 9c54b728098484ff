"""`python app.py`'s options: documented in --help, checked before anything is served."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from app import parse_args, prepare

ROOT = Path(__file__).resolve().parents[1]


def test_help_documents_every_option():
    shown = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True)
    for option in ("--host", "--port", "--share", "--auth", "STUDIO_AUTH", "--checkpoints", "--max-concurrency",
                   "--runs", "--max-runs", "--device", "--public-demo"):
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


@pytest.mark.parametrize("argv, where", [
    (["--host", "0.0.0.0"], "--host 0.0.0.0"),
    (["--host", "192.168.1.5"], "--host 192.168.1.5"),
    (["--host", "my-server.example"], "--host my-server.example"),
    (["--share"], "--share"),
])
def test_a_public_app_without_a_login_refuses_to_start_and_says_what_to_do(argv, where, capsys, monkeypatch):
    monkeypatch.delenv("STUDIO_AUTH", raising=False)
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and f"{where} without a login lets anyone" in err
    assert "--auth USER:PASSWORD" in err and "--public-demo" in err


@pytest.mark.parametrize("argv", [
    ["--host", "127.0.0.1"], ["--host", "localhost"], ["--host", "::1"], ["--host", "127.0.0.2"],
    ["--host", "0.0.0.0", "--auth", "ann:pw"], ["--share", "--auth", "ann:pw"],
    ["--host", "0.0.0.0", "--public-demo"], ["--share", "--public-demo"],
])
def test_a_local_app_a_public_app_with_a_login_and_a_public_demo_start(argv, monkeypatch):
    monkeypatch.delenv("STUDIO_AUTH", raising=False)
    assert parse_args(argv).host == (argv[1] if argv[0] == "--host" else "127.0.0.1")


def test_studio_auth_counts_as_a_login_for_a_public_app(monkeypatch):
    monkeypatch.setenv("STUDIO_AUTH", "bob:pw")
    assert parse_args(["--host", "0.0.0.0"]).auth == ("bob", "pw")


def test_a_public_demo_makes_the_train_page_read_only_and_turns_downloads_off(tmp_path, monkeypatch):
    from pages import train

    monkeypatch.setenv("STUDIO_NO_DOWNLOADS", "")  # recorded, so the "1" prepare() sets is undone afterwards
    monkeypatch.delenv("STUDIO_AUTH", raising=False)
    previous = dict(train._settings)
    try:
        prepare(parse_args(["--host", "0.0.0.0", "--public-demo", "--runs", str(tmp_path / "runs"),
                            "--device", "cpu"]))
        jobs = train.job_manager()
        assert os.environ["STUDIO_NO_DOWNLOADS"] == "1"
        assert jobs.read_only and jobs.data_roots == [Path("data"), Path("data") / "uploads"]
        prepare(parse_args(["--runs", str(tmp_path / "runs"), "--device", "cpu"]))
        assert not train.job_manager().read_only and train.job_manager().data_roots is None
    finally:
        train.configure(**previous)
        train.job_manager()

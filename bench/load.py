"""Load and soak test: N simultaneous gradio_client users on the Audio, Digits and Signals pages of a real app.

    python bench/load.py [--users 32] [--requests 500] [--seconds 300] [--max-concurrency 2] [--new-session-every K]

It starts the app (`python app.py`, serving the bundled checkpoints on a free port, in its own process),
waits until it answers, and runs `--users` threads, each a gradio_client `Client` of its own, that call in
turn `/generate_audio` (melodies-wavenet continues a 1 s upload by 0.25 s), `/sample_digits` (2 digits of
digits-wavenet) and `/sample_signals` (2 Fourier curves of 3 s) until `--requests` have been sent or
`--seconds` have passed; requests in flight then finish. The app's resident memory is read from
/proc/PID/status while it runs. Then the app is stopped and the last line printed is one JSON object:

    {"users", "new_session_every", "requests", "failures", "failure_examples" (up to 5 "endpoint: error"), "seconds",
     "requests_per_s", "latency_s": {"p50", "p95", "max"}, "per_endpoint": {name: {"requests",
     "failures", "p50", "p95"}}, "app_rss_mib": {"idle" (before the first request), "after_first_50",
     "after_last", "peak" (VmHWM: the most it ever held), "every_50" (after request 50, 100, ...)},
     "growth_after_first_50" (after_last / after_first_50 - 1; null with fewer than 51 requests),
     "app_threads_seen" (threads of the app seen while it ran, sampled: worker threads come and go)}

Latency is as a user sees it: the queue's wait (at most --max-concurrency calls of each event run at once)
plus the work. The targets on a 2-core machine are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints"
STARTUP_SECONDS = 180.0  # the app imports gradio and torch and builds every page: slow on a busy machine
SAMPLE_EVERY = 0.2  # seconds between readings of the app's memory


def endpoints(upload: Path) -> dict:
    """name -> call(client, seed): one request to each page's main event."""
    from gradio_client import handle_file

    audio, digits, signals = (str(CHECKPOINTS / name) for name in
                              ("melodies-wavenet", "digits-wavenet", "fourier-wavenet"))
    return {
        "audio": lambda c, seed: c.predict(
            model=audio, audio=handle_file(str(upload)), prime_seconds=1.0, seconds=0.25, temperature=0.85,
            top_k=0, variations=1, seed=seed, class_id=0, api_name="/generate_audio"),
        "digits": lambda c, seed: c.predict(digits, seed % 10, 2, 1.0, seed, api_name="/sample_digits"),
        "signals": lambda c, seed: c.predict(signals, 6.0, 3.0, 2, 1.0, seed, api_name="/sample_signals"),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """A memory field of /proc/PID/status (VmRSS: resident now, VmHWM: the most ever resident), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def thread_ids(pid: int) -> list[int]:
    """The ids of the threads process `pid` has now."""
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")]


def start_app(port: int, max_concurrency: int, runs: Path, log: Path) -> subprocess.Popen:
    """The app serving the bundled checkpoints on 127.0.0.1:port, once it answers HTTP."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port), "--checkpoints", str(CHECKPOINTS), "--runs", str(runs),
         "--max-concurrency", str(max_concurrency), "--device", "cpu"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with status {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the app did not answer within {STARTUP_SECONDS:g} s:\n{log.read_text()[-3000:]}")


class Soak:
    """Counts requests, shared by the user threads; notes the app's memory after the first 50 and the last."""

    def __init__(self, pid: int, max_requests: int, deadline: float):
        self.pid, self.max_requests, self.deadline = pid, max_requests, deadline
        self.lock = threading.Lock()
        self.sent = 0
        self.results: list[tuple[str, float, str | None]] = []  # (endpoint, seconds, error or None)
        self.rss_after_first_50: float | None = None
        self.rss_after_last: float | None = None
        self.rss_every_50: list[float] = []  # after request 50, 100, ...

    def next_seed(self) -> int | None:
        """A seed for the next request, or None when the budget of requests or time is spent."""
        with self.lock:
            if self.sent >= self.max_requests or time.monotonic() >= self.deadline:
                return None
            self.sent += 1
            return self.sent

    def record(self, endpoint: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.results.append((endpoint, seconds, error))
            rss = rss_mib(self.pid)
            if len(self.results) % 50 == 0:
                self.rss_every_50.append(round(rss, 1))
            if len(self.results) == 50:
                self.rss_after_first_50 = rss
            self.rss_after_last = rss


def user(url: str, calls: dict, soak: Soak, first: int, new_session_every: int = 0) -> None:
    """One simulated user: its own client, the pages' events in turn (starting at `first`), until the budget ends.

    With `new_session_every` = k > 0, the user comes back as a new visitor (a new client, so a new Gradio
    session) after every k requests.
    """
    from gradio_client import Client

    client, sent = None, 0
    names = itertools.islice(itertools.cycle(calls), first, None)
    while (seed := soak.next_seed()) is not None:
        name = next(names)
        start = time.perf_counter()
        try:  # a page that does not load (the client's connection) fails the request it was for; the next retries
            if client is None or (new_session_every and sent % new_session_every == 0):
                client = Client(url, verbose=False, download_files=False)
            sent += 1
            calls[name](client, seed)
            error = None
        except Exception as e:  # noqa: BLE001  every failure a user would see is counted, whatever its type
            error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        soak.record(name, time.perf_counter() - start, error)


def tracebacks(log: Path) -> list[str]:
    """The tracebacks the app printed to its log, each as one text: what a failed request hit inside the app."""
    found, current = [], None
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("Traceback (most recent call last)"):
            current = [line]
        elif current is not None:
            current.append(line)
            if line and not line.startswith((" ", "\t")):  # the exception's own line ends the traceback
                found.append("\n".join(current[-40:]))
                current = None
    return found


def percentiles(seconds: list[float]) -> dict:
    if not seconds:
        return {"p50": None, "p95": None}
    return {"p50": round(float(np.percentile(seconds, 50)), 3), "p95": round(float(np.percentile(seconds, 95)), 3)}


def run(users: int, max_requests: int, max_seconds: float, max_concurrency: int, new_session_every: int = 0) -> dict:
    with tempfile.TemporaryDirectory(prefix="studio-load-") as tmp:
        tmp = Path(tmp)
        upload = tmp / "tone.wav"
        t = np.arange(16000) / 16000
        sf.write(upload, 0.5 * np.sin(2 * np.pi * 440 * t), 16000, subtype="PCM_16")
        port = free_port()
        app = start_app(port, max_concurrency, tmp / "runs", tmp / "app.log")
        try:
            idle = rss_mib(app.pid)
            calls = endpoints(upload)
            soak = Soak(app.pid, max_requests, time.monotonic() + max_seconds)
            peak_rss, stop = [idle], threading.Event()
            threads_seen = set(thread_ids(app.pid))

            def watch() -> None:
                while not stop.wait(SAMPLE_EVERY):
                    peak_rss.append(rss_mib(app.pid, "VmHWM"))
                    threads_seen.update(thread_ids(app.pid))

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            start = time.perf_counter()
            url = f"http://127.0.0.1:{port}/"
            threads = [threading.Thread(target=user, args=(url, calls, soak, i % len(calls), new_session_every),
                                        daemon=True) for i in range(users)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - start
            stop.set()
            watcher.join()
            peak_rss.append(rss_mib(app.pid, "VmHWM"))
        finally:
            app.terminate()
            try:
                app.wait(timeout=30)
            except subprocess.TimeoutExpired:
                app.kill()
                app.wait()
        app_errors = tracebacks(tmp / "app.log")
    results = soak.results
    failures = [f"{name}: {error}" for name, _, error in results if error]
    per_endpoint = {}
    for name in calls:
        mine = [(s, e) for n, s, e in results if n == name]
        per_endpoint[name] = {"requests": len(mine), "failures": sum(e is not None for _, e in mine),
                              **percentiles([s for s, e in mine if e is None])}
    ok = [s for _, s, e in results if e is None]
    first50, last = soak.rss_after_first_50, soak.rss_after_last
    return {
        "users": users,
        "new_session_every": new_session_every,
        "requests": len(results),
        "failures": len(failures),
        "failure_examples": failures[:5],
        "app_errors": app_errors[:3],
        "seconds": round(elapsed, 1),
        "requests_per_s": round(len(results) / elapsed, 2) if elapsed else None,
        "latency_s": {**percentiles(ok), "max": round(max(ok), 3) if ok else None},
        "per_endpoint": per_endpoint,
        "app_rss_mib": {"idle": round(idle, 1), "after_first_50": round(first50, 1) if first50 else None,
                        "after_last": round(last, 1) if last else None, "peak": round(max(peak_rss), 1),
                        "every_50": soak.rss_every_50},
        "growth_after_first_50": round(last / first50 - 1, 4) if first50 and len(results) > 50 else None,
        "app_threads_seen": len(threads_seen),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/load.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=32, help="simultaneous users (default 32)")
    p.add_argument("--requests", type=int, default=500, help="requests to send in all, at most (default 500)")
    p.add_argument("--seconds", type=float, default=300.0,
                   help="stop sending after this many seconds even if requests are left (default 300)")
    p.add_argument("--max-concurrency", type=int, default=2, help="the app's --max-concurrency (default 2)")
    p.add_argument("--new-session-every", type=int, default=0, metavar="K",
                   help="each user comes back as a new visitor (new client, new Gradio session) after every K "
                        "requests; 0 = one session per user for the whole run (default)")
    args = p.parse_args(argv)
    if args.new_session_every < 0:
        p.error(f"--new-session-every must be >= 0, got {args.new_session_every}")
    for name in ("users", "requests", "seconds", "max_concurrency"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    print(json.dumps(run(args.users, args.requests, args.seconds, args.max_concurrency, args.new_session_every)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""bench/load.py, short: 8 simultaneous gradio_client users on a real app, 60 requests, every page answers;
each user comes back as a new visitor (a new Gradio session) after every 4 requests."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_eight_simultaneous_users_get_every_answer_and_the_report_is_complete() -> None:
    result = subprocess.run([sys.executable, "bench/load.py", "--users", "8", "--requests", "60", "--seconds", "45",
                             "--new-session-every", "4"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["users"] == 8 and report["new_session_every"] == 4
    assert report["failures"] == 0, (report["failure_examples"], report["app_errors"])
    assert report["requests"] == 60, "the time bound ran out first: the machine is far slower than expected"
    for name in ("audio", "digits", "signals"):
        endpoint = report["per_endpoint"][name]
        assert endpoint["requests"] >= 8 and endpoint["failures"] == 0 and 0 < endpoint["p50"] <= endpoint["p95"]
    assert 0 < report["latency_s"]["p50"] <= report["latency_s"]["p95"] <= report["latency_s"]["max"]
    rss = report["app_rss_mib"]
    assert 0 < rss["idle"] <= rss["peak"] and 0 < rss["after_first_50"] <= rss["peak"]
    assert 0 < rss["after_last"] <= rss["peak"]
    assert abs(report["growth_after_first_50"]) < 0.1  # 10 requests after the 50th: no room for a leak to show
    assert len(rss["every_50"]) == 1 and report["app_threads_seen"] > 1

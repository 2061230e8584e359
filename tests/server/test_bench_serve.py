"""`pagoda bench serve` against a running `pagoda serve`: every request completes, the latency
summary is consistent, and the server's own counters agree with what the client saw."""
import json
import subprocess

from conftest import metrics, wait_idle


def test_bench_serve_reports_latencies(pagoda_bin, server):
    before = metrics(server.url)
    r = subprocess.run([str(pagoda_bin), "bench", "serve", "--base-url", server.url, "--num-prompts", "6", "--input-len",
                        "12", "--output-len", "5", "--request-rate", "20", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["completed"] == 6 and out["failed"] == 0
    assert out["output_tokens"] == 30
    for k in ("ttft", "tpot", "itl", "e2e_latency"):
        s = out[k]
        assert 0 < s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"], (k, s)
    assert out["ttft"]["mean_ms"] <= out["e2e_latency"]["mean_ms"]
    after = wait_idle(server.url)
    gen = "pagoda:generation_tokens_total"
    assert after[gen] - before.get(gen, 0) == 30

"""Fixtures for the server tests: a running `pagoda serve` on the default model.

The server starts with --port 0; its first lines on stdout say where it listens
("pagoda: serving NAME at http://HOST:PORT"), which is how the tests find it.
"""
import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

MODEL_NAME = "smol"
SERVING = re.compile(r"pagoda: serving (\S+) at (http://\S+)")


class ServerProcess:
    def __init__(self, proc: subprocess.Popen, url: str, lines: "queue.Queue[str]"):
        self.proc = proc
        self.url = url
        self.lines = lines

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def start_server(pagoda_bin: Path, model: Path, *extra: str, env=None, timeout: float = 120) -> ServerProcess:
    defaults = {"--kv-cache-memory": "64M", "--max-model-len": "512"}
    args = [str(pagoda_bin), "serve", str(model), "--port", "0", "--served-model-name", MODEL_NAME]
    for flag, value in defaults.items():
        if flag not in extra:
            args += [flag, value]
    args += list(extra)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})
    lines: "queue.Queue[str]" = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line == "":
            break
        seen.append(line)
        m = SERVING.search(line)
        if m:
            assert m.group(1) == MODEL_NAME
            started = ServerProcess(proc, m.group(2), lines)
            started.startup = seen  # the lines printed before it listened
            return started
    proc.kill()
    proc.wait()
    raise RuntimeError("pagoda serve did not start:\n" + "".join(seen))


@pytest.fixture(scope="session")
def server(pagoda_bin, default_model):
    s = start_server(pagoda_bin, default_model, "--read-timeout", "3")
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="session")
def client(server):
    openai = pytest.importorskip("openai", reason="pip install openai (tests/requirements.txt)")
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def metrics(url: str) -> dict:
    """The /metrics samples as {"name{labels}": value}, and {"name": value} for unlabeled access by name."""
    import httpx

    text = httpx.get(url + "/metrics", timeout=30).text
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, value = line.rsplit(" ", 1)
        out[key] = float(value)
        name = key.split("{", 1)[0]
        if "finished_reason" not in key and "le=" not in key:
            out[name] = float(value)
    return out


def wait_idle(url: str, timeout: float = 10.0) -> dict:
    """Waits until no request runs or waits and the KV cache is empty; returns the last metrics."""
    deadline = time.time() + timeout
    m = metrics(url)
    while time.time() < deadline:
        if (m["pagoda:num_requests_running"] == 0 and m["pagoda:num_requests_waiting"] == 0
                and m["pagoda:kv_cache_usage_perc"] == 0):
            return m
        time.sleep(0.1)
        m = metrics(url)
    return m

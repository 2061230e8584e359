"""Load: 256 concurrent streaming clients for 30 s, one in ten hanging up mid-stream at random.
No 5xx, every completed stream well formed (chunks of JSON, one finish per choice, [DONE] last),
and afterwards nothing runs and every KV block is free."""
import asyncio
import json
import os
import random
import time

import httpx

from conftest import MODEL_NAME, start_server, wait_idle

CLIENTS = int(os.environ.get("PAGODA_LOAD_CLIENTS", "256"))
SECONDS = float(os.environ.get("PAGODA_LOAD_SECONDS", "30"))


async def one_client(url: str, rng: random.Random, stats: dict, stop_at: float):
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0)) as http:
        while time.time() < stop_at:
            chat = rng.random() < 0.5
            hang_up = rng.random() < 0.1
            body = {"model": MODEL_NAME, "max_tokens": rng.randint(2, 8), "stream": True,
                    "stream_options": {"include_usage": True}}
            if chat:
                path = "/v1/chat/completions"
                body["messages"] = [{"role": "user", "content": f"Say something about the number {rng.randint(0, 999)}"}]
            else:
                path = "/v1/completions"
                body["prompt"] = f"Story {rng.randint(0, 999)}:"
            try:
                async with http.stream("POST", url + path, json=body) as r:
                    if r.status_code >= 500:
                        stats["5xx"] += 1
                        await r.aread()
                        continue
                    assert r.status_code == 200, (r.status_code, await r.aread())
                    lines = []
                    async for line in r.aiter_lines():
                        if line:
                            lines.append(line)
                        if hang_up and len(lines) >= 1:
                            break
                    if hang_up:
                        stats["hung_up"] += 1
                        continue
                check_stream(lines, chat)
                stats["completed"] += 1
            except (httpx.TransportError, httpx.StreamError) as e:
                stats["transport_errors"].append(repr(e))


def check_stream(lines, chat):
    assert lines[-1] == "data: [DONE]", lines[-3:]
    payloads = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    assert all(line.startswith("data: ") for line in lines)
    finishes = [p for p in payloads if p["choices"] and p["choices"][0].get("finish_reason")]
    assert len(finishes) == 1, payloads
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] >= 1
    ids = {p["id"] for p in payloads}
    assert len(ids) == 1 and next(iter(ids)).startswith("chatcmpl-" if chat else "cmpl-")


def test_load_with_disconnects(pagoda_release_bin, default_model):
    s = start_server(pagoda_release_bin, default_model, "--kv-cache-memory", "256M", "--max-num-seqs", "64",
                     "--max-connections", "1024")
    try:
        stats = {"completed": 0, "hung_up": 0, "5xx": 0, "transport_errors": []}
        stop_at = time.time() + SECONDS

        async def main():
            rng = random.Random(1)
            await asyncio.gather(*(one_client(s.url, random.Random(rng.random()), stats, stop_at)
                                   for _ in range(CLIENTS)))

        asyncio.run(main())
        print("load:", {k: v for k, v in stats.items() if k != "transport_errors"})
        assert stats["5xx"] == 0
        assert not stats["transport_errors"], stats["transport_errors"][:5]
        # Every client gets through several requests over the default 30 s.
        assert stats["completed"] >= min(CLIENTS // 2, int(CLIENTS * SECONDS / 60)), stats
        assert stats["hung_up"] >= 1, stats
        m = wait_idle(s.url, timeout=30)
        assert m["pagoda:num_requests_running"] == 0
        assert m["pagoda:num_requests_waiting"] == 0
        assert m["pagoda:kv_cache_usage_perc"] == 0
    finally:
        assert s.stop() == 0


def thread_count(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads line")


def test_thousand_idle_connections_cost_no_threads(server):
    """Connections are not threads: 1000 open idle connections leave the thread count as it was,
    and the server keeps answering."""
    import socket

    before = thread_count(server.proc.pid)
    socks = []
    try:
        for _ in range(1000):
            socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
        # Half of them send part of a request head.
        for s in socks[::2]:
            s.sendall(b"GET /health HTTP/1.1\r\n")
        r = httpx.post(server.url + "/v1/completions", json={"model": MODEL_NAME, "prompt": "Hi", "max_tokens": 2},
                       timeout=60)
        assert r.status_code == 200
        assert thread_count(server.proc.pid) == before
        # The partial heads complete and are answered.
        for s in socks[::2][:50]:
            s.sendall(b"\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for s in socks:
            s.close()

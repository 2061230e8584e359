"""Clients that go away mid-stream, and the server's own shutdown on SIGTERM / SIGINT."""
import signal
import socket
import threading
import time

import httpx

from conftest import MODEL_NAME, metrics, start_server, wait_idle


def test_disconnect_mid_stream_aborts(server):
    key = f'pagoda:request_success_total{{model_name="{MODEL_NAME}",finished_reason="abort"}}'
    before = metrics(server.url)[key]
    body = {"model": MODEL_NAME, "prompt": "Once upon a time", "max_tokens": 400, "ignore_eos": True,
            "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        got = 0
        for line in lines:
            if line.startswith("data: {"):
                got += 1
            if got >= 2:
                break
        running = metrics(server.url)["pagoda:num_requests_running"]
        assert running >= 1
    # The connection is closed: the request is aborted and its blocks are freed.
    after = wait_idle(server.url, timeout=10)
    assert after["pagoda:num_requests_running"] == 0
    assert after["pagoda:kv_cache_usage_perc"] == 0
    assert after[key] == before + 1


def test_disconnect_before_non_streaming_answer_aborts(server):
    key = f'pagoda:request_success_total{{model_name="{MODEL_NAME}",finished_reason="abort"}}'
    before = metrics(server.url)[key]
    import json

    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 400, "ignore_eos": True}).encode()
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    # Close once it runs (the engine's stats do not count a request it has not taken up yet).
    deadline = time.time() + 20
    while time.time() < deadline and metrics(server.url)["pagoda:num_requests_running"] == 0:
        time.sleep(0.05)
    s.close()
    after = wait_idle(server.url, timeout=10)
    assert after["pagoda:num_requests_running"] == 0 and after["pagoda:kv_cache_usage_perc"] == 0
    assert after[key] == before + 1


def run_shutdown(pagoda_bin, default_model, sig):
    s = start_server(pagoda_bin, default_model, "--shutdown-timeout", "30")
    result = {}

    def stream():
        body = {"model": MODEL_NAME, "prompt": "Hello", "max_tokens": 12, "ignore_eos": True, "stream": True}
        with httpx.stream("POST", s.url + "/v1/completions", json=body, timeout=60) as r:
            result["lines"] = [line for line in r.iter_lines() if line]

    t = threading.Thread(target=stream)
    t.start()
    deadline = time.time() + 20
    while time.time() < deadline and metrics(s.url)["pagoda:num_requests_running"] == 0 and t.is_alive():
        time.sleep(0.02)
    code = s.stop(sig)
    t.join(timeout=30)
    assert code == 0
    # The running request was allowed to finish.
    assert result["lines"][-1] == "data: [DONE]"
    assert '"finish_reason":"length"' in "".join(result["lines"])
    # Nothing listens any more.
    try:
        socket.create_connection(("127.0.0.1", s.port), timeout=2).close()
        assert False, "still accepting"
    except OSError:
        pass


def test_sigterm_lets_running_requests_finish(pagoda_bin, default_model):
    run_shutdown(pagoda_bin, default_model, signal.SIGTERM)


def test_sigint_exits_zero(pagoda_bin, default_model):
    s = start_server(pagoda_bin, default_model)
    assert httpx.get(s.url + "/health").status_code == 200
    assert s.stop(signal.SIGINT) == 0


def test_slow_reader_is_dropped(pagoda_bin, default_model):
    """A client that never reads its stream cannot make the server buffer without bound: past
    --max-pending-output the connection is dropped and the request aborted, while the client
    still holds its socket open."""
    s = start_server(pagoda_bin, default_model, "--max-pending-output", "16384")
    try:
        key = f'pagoda:request_success_total{{model_name="{MODEL_NAME}",finished_reason="abort"}}'
        import json

        body = json.dumps({"model": MODEL_NAME, "prompt": "Once upon a time", "max_tokens": 200, "n": 4,
                           "logprobs": 20, "ignore_eos": True, "stream": True}).encode()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", s.port))
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        deadline = time.time() + 90
        m = metrics(s.url)
        while time.time() < deadline and m[key] == 0:
            time.sleep(0.2)
            m = metrics(s.url)
        assert m[key] == 1, "the unread stream was not dropped"
        m = wait_idle(s.url)
        assert m["pagoda:num_requests_running"] == 0 and m["pagoda:kv_cache_usage_perc"] == 0
        sock.close()
    finally:
        assert s.stop() == 0

"""Every error the server gives, as OpenAI error objects, and a corpus of bad input (malformed and
hostile bodies, oversized heads and bodies, slow clients): each is answered 4xx or cut off, and the
server keeps serving."""
import json
import socket
import threading
import time

import httpx
import pytest

from conftest import MODEL_NAME, start_server

OK_BODY = {"model": MODEL_NAME, "prompt": "Hi", "max_tokens": 2}


def post(server, path, body, **kw):
    if isinstance(body, (dict, list)):
        kw["json"] = body
    else:
        kw["content"] = body
    return httpx.post(server.url + path, timeout=60, **kw)


def assert_error(r, status, param=None, contains=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if param is not None:
        assert err["param"] == param, err
    if contains is not None:
        assert contains in err["message"], err
    return err


def still_serves(server):
    r = post(server, "/v1/completions", OK_BODY)
    assert r.status_code == 200, r.text


BAD_FIELDS = [
    ({"n": 0}, "n"), ({"n": 1000}, "n"), ({"n": "2"}, "n"),
    ({"temperature": -1}, "temperature"), ({"temperature": "x"}, "temperature"),
    ({"top_p": 0}, "top_p"), ({"top_p": 2}, "top_p"), ({"top_k": -5}, "top_k"), ({"min_p": 1.5}, "min_p"),
    ({"presence_penalty": 3}, "presence_penalty"), ({"frequency_penalty": -3}, "frequency_penalty"),
    ({"repetition_penalty": 0}, "repetition_penalty"), ({"seed": "abc"}, "seed"),
    ({"stop": 3}, "stop"), ({"stop": [""]}, "stop"), ({"stop": ["x"] * 17}, "stop"),
    ({"stop_token_ids": [10**9]}, "stop_token_ids"), ({"logit_bias": {"x": 1}}, "logit_bias"),
    ({"logit_bias": {"1": 500}}, "logit_bias"), ({"logit_bias": {"99999999": 1}}, "logit_bias"),
    ({"max_tokens": 0}, "max_tokens"), ({"max_tokens": -1}, "max_tokens"), ({"max_tokens": 10**30}, "max_tokens"),
    ({"min_tokens": 5, "max_tokens": 2}, "min_tokens"), ({"logprobs": 50}, "logprobs"),
    ({"logprobs": True}, "logprobs"), ({"echo": "yes"}, "echo"), ({"stream": 1}, "stream"),
    ({"stream_options": {"include_usage": True}}, "stream_options"), ({"prompt": ""}, "prompt"),
    ({"prompt": []}, "prompt"), ({"prompt": [10**9]}, "prompt"), ({"prompt": [-1]}, "prompt"),
    ({"prompt": {"a": 1}}, "prompt"), ({"prompt": None}, "prompt"), ({"ignore_eos": "no"}, "ignore_eos"),
    ({"skip_special_tokens": 3}, "skip_special_tokens"), ({"return_token_ids": "1"}, "return_token_ids"),
]


@pytest.mark.parametrize("fields,param", BAD_FIELDS, ids=[json.dumps(f)[:40] for f, _ in BAD_FIELDS])
def test_completion_field_errors(server, fields, param):
    assert_error(post(server, "/v1/completions", {**OK_BODY, **fields}), 400, param=param)


BAD_CHAT = [
    ({"messages": []}, "messages"), ({"messages": "hi"}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages"),
    ({"logprobs": True, "top_logprobs": 100}, "top_logprobs"), ({"top_logprobs": 2}, "top_logprobs"),
    ({"max_completion_tokens": 0}, "max_completion_tokens"), ({"temperature": [1]}, "temperature"),
]


@pytest.mark.parametrize("fields,param", BAD_CHAT, ids=[json.dumps(f)[:40] for f, _ in BAD_CHAT])
def test_chat_field_errors(server, fields, param):
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **fields}
    assert_error(post(server, "/v1/chat/completions", body), 400, param=param)


def test_context_overflow_says_the_numbers(server):
    n_prompt = httpx.post(server.url + "/tokenize", json={"prompt": "Hello there"}).json()["count"]
    context = httpx.get(server.url + "/v1/models").json()["data"][0]["max_model_len"]
    assert context == 512  # --max-model-len
    fits = context - n_prompt
    assert post(server, "/v1/completions", {**OK_BODY, "prompt": "Hello there", "max_tokens": fits,
                                            "stop": "\n"}).status_code == 200
    r = post(server, "/v1/completions", {**OK_BODY, "prompt": "Hello there", "max_tokens": fits + 1})
    err = assert_error(r, 400, param="max_tokens", contains=f"maximum context length is {context} tokens")
    assert f"{context + 1} tokens ({n_prompt} in the prompt, {fits + 1} in the completion)" in err["message"]
    long_prompt = list(range(100, 100 + context + 10))
    assert_error(post(server, "/v1/completions", {**OK_BODY, "prompt": long_prompt}), 400)


def test_openai_client_raises_typed_errors(client):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL_NAME, prompt="x", temperature=-2)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="gpt-4", prompt="x")
    assert e.value.body["code"] == "model_not_found"


def test_unknown_route_and_method(server):
    assert_error(httpx.get(server.url + "/v1/nothing"), 404)
    assert_error(httpx.post(server.url + "/v2/completions", json=OK_BODY), 404)
    r = httpx.get(server.url + "/v1/completions")
    assert_error(r, 405)
    assert r.headers["allow"] == "POST"
    assert_error(httpx.post(server.url + "/v1/models"), 405)
    assert_error(httpx.delete(server.url + "/health"), 405)


def test_unknown_fields_are_ignored(server):
    assert post(server, "/v1/completions", {**OK_BODY, "frobnicate": [1, {"x": None}], "best_of": 1}).status_code == 200


def test_malformed_bodies(server):
    cases = [b"", b"{", b"not json", b"[1, 2]", b'"str"', b"{\"prompt\": \"x\",}", b"{\"prompt\": \"\xff\xfe\"}",
             b"{\"prompt\": \"\xed\xa0\x80\"}", b"{\"prompt\": \"x\", \"max_tokens\": 1e999}",
             b"{\"prompt\": \"\\ud800\"}", b"\x00\x01\x02", b"[" * 100_000, b"{\"a\":" * 50_000,
             b"{\"prompt\": " + b"[" * 1000 + b"]" * 1000 + b"}", b"{\"prompt\": 1" + b"0" * 400 + b"}"]
    for body in cases:
        for path in ("/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"):
            r = post(server, path, body, headers={"content-type": "application/json"})
            assert 400 <= r.status_code < 500, (path, body[:40], r.status_code, r.text)
            assert r.json()["error"]["message"]
    still_serves(server)


def test_body_too_large(server):
    r = post(server, "/v1/completions", b"{\"prompt\": \"" + b"a" * (10 << 20) + b"\"}")
    assert_error(r, 413)
    still_serves(server)


def raw_exchange(server, data: bytes, timeout=10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
    return out


def test_raw_protocol_violations(server):
    cases = {
        b"GET /health HTTP/1.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n": b"431",
        b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n": b"414",
        b"GET /health HTTP/1.1\r\n" + b"".join(b"H%d: x\r\n" % i for i in range(200)) + b"\r\n": b"431",
        b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n": b"411",
        b"POST /v1/completions HTTP/1.1\r\nContent-Length: abc\r\n\r\n": b"400",
        b"GET /health HTTP/3.0\r\n\r\n": b"505",
        b"garbage\r\n\r\n": b"400",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n": b"400",
    }
    for request, status in cases.items():
        reply = raw_exchange(server, request)
        assert reply.startswith(b"HTTP/1.1 " + status), (request[:50], reply[:100])
    still_serves(server)


def test_pipelined_and_keep_alive(server):
    body = json.dumps({"prompt": "x", "max_tokens": 1}).encode()
    req = (b"POST /v1/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    reply = raw_exchange(server, b"GET /health HTTP/1.1\r\n\r\n" + req + b"GET /version HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert reply.count(b"HTTP/1.1 200 OK") == 3, reply
    assert reply.index(b"text_completion") < reply.index(b"\"version\"")


def test_slow_client_is_cut_off_while_others_are_served(server):
    """A client sending one byte per second never completes its head: the read timeout (3 s for
    this server) ends it, and meanwhile other clients are answered."""
    result = {}

    def slow():
        s = socket.create_connection(("127.0.0.1", server.port), timeout=20)
        start = time.time()
        try:
            for b in b"POST /v1/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n":
                s.sendall(bytes([b]))
                time.sleep(1.0)
        except OSError:
            pass
        try:
            result["reply"] = s.recv(4096)
        except OSError:
            result["reply"] = b""
        result["elapsed"] = time.time() - start
        s.close()

    t = threading.Thread(target=slow)
    t.start()
    served = 0
    t0 = time.time()
    while t.is_alive() and time.time() - t0 < 30:
        assert httpx.get(server.url + "/health", timeout=5).status_code == 200
        served += 1
        time.sleep(0.2)
    t.join(timeout=30)
    assert served >= 5
    assert result["elapsed"] < 10
    assert result["reply"] == b"" or result["reply"].startswith(b"HTTP/1.1 408")


def test_api_key(pagoda_bin, default_model):
    s = start_server(pagoda_bin, default_model, env={"PAGODA_API_KEY": "sk-test-123"})
    try:
        url = s.url
        assert_error(httpx.get(url + "/v1/models"), 401)
        assert_error(httpx.get(url + "/v1/models", headers={"Authorization": "Bearer sk-test-124"}), 401)
        assert_error(httpx.get(url + "/v1/models", headers={"Authorization": "sk-test-123"}), 401)
        assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer sk-test-123"}).status_code == 200
        assert httpx.get(url + "/health").status_code == 200  # only /v1/* is protected
        assert httpx.get(url + "/metrics").status_code == 200
        import openai

        bad = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        good = openai.OpenAI(base_url=url + "/v1", api_key="sk-test-123", max_retries=0)
        assert good.completions.create(model=MODEL_NAME, prompt="Hi", max_tokens=2).usage.completion_tokens >= 1
    finally:
        assert s.stop() == 0


def test_queue_full_gives_503(pagoda_bin, default_model):
    s = start_server(pagoda_bin, default_model, "--max-num-seqs", "1", "--max-waiting-requests", "1")
    try:
        body = {"model": MODEL_NAME, "prompt": "Count:", "max_tokens": 16, "ignore_eos": True}
        results = []

        def go():
            results.append(httpx.post(s.url + "/v1/completions", json=body, timeout=120))

        threads = [threading.Thread(target=go) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in results)
        assert 200 in codes and 503 in codes, codes
        assert set(codes) <= {200, 503}
        for r in results:
            if r.status_code == 503:
                assert_error(r, 503)
    finally:
        assert s.stop() == 0

"""The official OpenAI and Anthropic Python SDKs, unmodified, pointed at
Envoy: chat and completions (plain and streamed, with and without usage),
models.list(), embeddings, and every error the gateway or the upstream
produces raised as the SDK's exception with code, type and message filled."""
import openai
import pytest

from harness import Stack, free_port


@pytest.fixture(scope="module", params=["observer", "in-band"])
def stack(request):
    dead = free_port()  # nothing listens there: Envoy cannot connect
    with Stack(pods=2, max_tokens=6, extra_models={"dead": [dead]}, response_phase=request.param) as s:
        yield s


@pytest.fixture(scope="module")
def client(stack):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{stack.envoy_port}/v1", api_key="unused", max_retries=0)


def test_chat_and_completions(client):
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=4)
    assert r.object == "chat.completion" and r.choices[0].message.content
    assert r.usage.completion_tokens == 4 and r.usage.prompt_tokens > 0
    c = client.completions.create(model="tiny", prompt=["one", "two"], max_tokens=3)
    assert c.choices[0].text and c.usage.completion_tokens == 3
    raw = client.chat.completions.with_raw_response.create(model="tiny", messages=[{"role": "user", "content": "x"}])
    assert raw.headers["x-switchboard-pod"] and raw.headers["x-request-id"]


@pytest.mark.parametrize("include_usage", [True, False])
def test_streaming_with_and_without_usage(client, include_usage):
    kw = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "stream"}],
                                                 max_tokens=5, stream=True, **kw))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text
    usage = [ch.usage for ch in chunks if ch.usage]
    if include_usage:
        assert len(usage) == 1 and usage[0].completion_tokens == 5 and chunks[-1].choices == []
    else:
        assert usage == []
    comp = list(client.completions.create(model="tiny", prompt="go", max_tokens=3, stream=True, **kw))
    assert "".join(ch.choices[0].text for ch in comp if ch.choices)


def test_models_and_embeddings(client):
    assert {m.id for m in client.models.list()} == {"tiny", "dead"}
    e = client.embeddings.create(model="tiny", input=["alpha", "beta"])
    assert len(e.data) == 2 and len(e.data[0].embedding) == 8 and e.usage.prompt_tokens > 0


@pytest.mark.parametrize("call,exc,status,code,etype", [
    (lambda c: c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}]),
     openai.NotFoundError, 404, "model_not_found", "invalid_request_error"),
    (lambda c: c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}],
                                         extra_headers={"routing-strategy": "telepathy"}),
     openai.BadRequestError, 400, "invalid_routing_strategy", "invalid_request_error"),
    (lambda c: c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}],
                                         extra_body={"max_tokens": "many"}),
     openai.BadRequestError, 400, "invalid_type", "invalid_request_error"),
    (lambda c: c.completions.create(model="tiny", prompt={"not": "a prompt"}),
     openai.BadRequestError, 400, "invalid_type", "invalid_request_error"),
    (lambda c: c.chat.completions.create(model="dead", messages=[{"role": "user", "content": "x"}]),
     openai.InternalServerError, 503, "upstream_error", "overloaded_error"),
    # The pod's own 400 in vLLM's older shape ({"object":"error",...}) is rewritten into
    # OpenAI's on the in-band path; on the reduced path it reaches the client as the pod sent it.
    (lambda c: c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=10**6),
     openai.BadRequestError, 400, "upstream_error", "invalid_request_error"),
], ids=["unknown-model", "unknown-strategy", "wrong-type", "bad-prompt", "dead-pod", "pod-400"])
def test_errors_raise_the_sdks_exception_with_fields(stack, client, call, exc, status, code, etype):
    with pytest.raises(exc) as e:
        call(client)
    err = e.value
    assert err.status_code == status
    if code == "upstream_error" and status == 400 and stack.response_phase == "observer":
        assert "maximum context length" in err.message and err.body["object"] == "error", err.body
        return
    assert err.code == code and err.type == etype, (err.code, err.type, err.body)
    assert err.message and err.response.headers["content-type"] == "application/json"
    assert err.response.headers["x-request-id"]


def test_anthropic_sdk_messages_plain_and_streamed(stack):
    import anthropic
    a = anthropic.Anthropic(base_url=f"http://127.0.0.1:{stack.envoy_port}", api_key="unused", max_retries=0)
    m = a.messages.create(model="tiny", max_tokens=5, system="Be brief.",
                          messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    assert m.type == "message" and m.content[0].text and m.usage.output_tokens == 5 and m.usage.input_tokens > 0
    with a.messages.stream(model="tiny", max_tokens=4, messages=[{"role": "user", "content": "stream please"}]) as st:
        text = "".join(st.text_stream)
        final = st.get_final_message()
    assert text and final.usage.output_tokens == 4
    with pytest.raises(anthropic.NotFoundError):
        a.messages.create(model="nope", max_tokens=8, messages=[{"role": "user", "content": "hi"}])


def test_the_gateway_accounts_every_sdk_call(stack):
    # Everything above that reached a pod reported its usage to the gateway.
    usage = stack.admin("/debug/stats")[1]["usage"]
    assert usage["missing"] == 0 and usage["reported"] > 0, usage


def test_api_keys_bearer_and_x_api_key_with_reload(tmp_path):
    from harness import wait_until
    keys = tmp_path / "keys"
    keys.write_text("sk-alice-key-0001 alice\n")
    with Stack(pods=1, switchboard_args=["--api-keys", str(keys), "--pods-file-poll", "0.1",
                                         "--pass-through-unknown-paths"]) as s:
        base = f"http://127.0.0.1:{s.envoy_port}/v1"
        ok = openai.OpenAI(base_url=base, api_key="sk-alice-key-0001", max_retries=0)
        assert ok.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}]).choices
        assert [m.id for m in ok.models.list()] == ["tiny"]
        for wrong, code in [("sk-alice-key-0002", "invalid_api_key"), ("sk-alice-key-000", "invalid_api_key")]:
            with pytest.raises(openai.AuthenticationError) as e:
                openai.OpenAI(base_url=base, api_key=wrong, max_retries=0).models.list()
            assert e.value.status_code == 401 and e.value.code == code and e.value.type == "authentication_error"
        status, headers, body = s.request({"model": "tiny", "messages": []})
        assert status == 401 and b"missing_api_key" in body and headers["content-type"] == "application/json"
        # Passed-through paths are authenticated too.
        status, _, body = s.request({"model": "tiny", "prompt": "x"}, path="/v1/tokenize")
        assert status == 401 and b"missing_api_key" in body
        # Anthropic clients send x-api-key.
        status, _, _ = s.request({"model": "tiny", "messages": [{"role": "user", "content": "x"}]},
                                 headers={"x-api-key": "sk-alice-key-0001"})
        assert status == 200
        # Reloaded on change: the new key works, the old one no longer does.
        keys.write_text("sk-bob-key-00002 bob\n")
        wait_until(lambda: "auth.keys.reloaded" in s.switchboard.output(), "the key file to be reloaded")
        assert openai.OpenAI(base_url=base, api_key="sk-bob-key-00002", max_retries=0).models.list()
        with pytest.raises(openai.AuthenticationError):
            ok.models.list()

"""Which strategy a request without a routing-strategy header gets: the
model's routingStrategy from the pods file, else --default-strategy, else
the reference gateway's ROUTING_ALGORITHM variable; 'none' makes the header
mandatory, and an unknown default stops the gateway at start-up."""
import os
import subprocess

from harness import Stack, binary, chat


def test_per_model_default_and_a_mandatory_header(monkeypatch):
    monkeypatch.setenv("ROUTING_ALGORITHM", "none")   # header mandatory unless the model says otherwise
    with Stack(pods=1, extra_models={"other": []}, model_strategies={"tiny": "random"}) as s:
        status, headers, _ = s.request(chat())
        assert status == 200 and headers["x-switchboard-strategy"] == "random"
        status, _, body = s.request(chat(model="other"))
        assert status == 400 and b"invalid_routing_strategy" in body, body
        status, _, _ = s.request(chat(model="other"), headers={"routing-strategy": "random"})
        assert status == 503  # named explicitly: routed, and "other" has no endpoint


def test_an_unknown_default_strategy_stops_the_gateway(tmp_path):
    pods = tmp_path / "pods.yaml"
    pods.write_text("models:\n  - name: t\n    endpoints: []\n")
    env = dict(os.environ, ROUTING_ALGORITHM="telepathy")
    r = subprocess.run([binary("switchboard"), "serve", "--pods-file", str(pods), "--listen", "127.0.0.1:0",
                        "--admin-listen", "off"], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode != 0 and "unknown default strategy 'telepathy'" in r.stderr, r.stderr


def test_unknown_v1_paths_are_404_or_passed_through_on_their_model():
    import json
    body = {"model": "tiny", "prompt": "hello"}
    with Stack(pods=1) as s:
        status, headers, payload = s.request(body, path="/v1/tokenize")
        assert status == 404 and json.loads(payload)["error"]["code"] == "unknown_url"
        assert "x-switchboard-pod" not in headers                     # answered by the gateway
    # In-band: the pod's FastAPI 404 below is rewritten into OpenAI's shape.
    with Stack(pods=1, switchboard_args=["--pass-through-unknown-paths"], response_phase="in-band") as s:
        status, headers, payload = s.request(body, path="/v1/tokenize")
        # Routed to the pod on "model": the simulator has no /v1/tokenize, and its
        # 404 reaches the client in OpenAI's shape, from the pod.
        assert headers["x-switchboard-pod"] == f"127.0.0.1:{s.pod_ports[0]}"
        assert status == 404 and json.loads(payload)["error"]["message"] == "Not Found"
        status, _, payload = s.request({"prompt": "no model"}, path="/v1/tokenize")
        assert status == 400 and json.loads(payload)["error"]["code"] == "missing_model"
        status, _, payload = s.request(None, path="/v1/tokenize", method="GET")
        assert status == 404                                           # only POSTs pass through

"""The gateway's /metrics through prometheus_client's parser (histogram
counts equal the requests sent), and every Grafana dashboard query in the
chart names only metrics a live gateway, KV agent or simulated pod exposes."""
import json
import os
import re
import tempfile

from prometheus_client.parser import text_string_to_metric_families

from harness import Proc, Redis, Stack, binary, chat, free_port, free_ports, wait_port, wait_until
import http.client

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DASHBOARDS = os.path.join(ROOT, "charts", "switchboard", "dashboards")


def page(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    return text


def names(text):
    """Every sample name a Prometheus page exposes, and each family's
    (histograms add _bucket, _sum, _count), via prometheus_client."""
    out = set()
    for fam in text_string_to_metric_families(text):
        out.add(fam.name)
        if fam.type == "counter":
            out.add(fam.name + "_total")
        if fam.type == "histogram":
            out.update({fam.name + "_bucket", fam.name + "_sum", fam.name + "_count"})
        out.update(s.name for s in fam.samples)
    return out


def test_the_gateway_page_parses_and_its_histograms_count_every_request(tmp_path):
    users = tmp_path / "users.json"
    users.write_text('[{"name": "u", "rpm": 1000, "tpm": 10000000}]')
    with Stack(pods=2, switchboard_args=["--users-file", str(users)]) as s:
        sent = 25
        for i in range(sent):
            status, _, _ = s.request(chat(content=f"q{i}", user="u"), headers={"routing-strategy": "least-request"})
            assert status == 200
        fams = {f.name: f for f in text_string_to_metric_families(s.admin("/metrics")[1])}
        routing = fams["switchboard_gateway_routing_duration_seconds"]
        assert routing.type == "histogram"
        count = next(x.value for x in routing.samples if x.name.endswith("_count"))
        buckets = [x for x in routing.samples if x.name.endswith("_bucket")]
        assert count == sent, count
        # Cumulative buckets ending at +Inf == count.
        values = [b.value for b in buckets]
        assert values == sorted(values) and buckets[-1].labels["le"] == "+Inf" and values[-1] == sent
        # Requests by model, strategy, pod and status: every request counted once, on a real pod.
        req = fams["switchboard_gateway_request_duration_seconds"]
        series = [x for x in req.samples if x.name.endswith("_count")]
        assert sum(x.value for x in series) == sent, series
        assert all(x.labels["model"] == "tiny" and x.labels["strategy"] == "least-request"
                   and x.labels["pod"] in {f"127.0.0.1:{p}" for p in s.pod_ports} for x in series), series
        assert any(x.labels["status"] == "200" for x in series), series
        # A rejection is counted with its status and no pod.
        status, _, _ = s.request(chat(model="nope"))
        assert status == 404
        fams = {f.name: f for f in text_string_to_metric_families(s.admin("/metrics")[1])}
        rejected = [x for x in fams["switchboard_gateway_request_duration_seconds"].samples
                    if x.name.endswith("_count") and x.labels["status"] == "404"]
        assert [(x.labels["model"], x.labels["pod"], x.value) for x in rejected] == [("unknown", "", 1.0)], rejected
        # The filter's time per ext_proc phase: one request-headers and one request-body message per request.
        phase = {x.labels["phase"]: x.value for x in fams["switchboard_extproc_phase_duration_seconds"].samples
                 if x.name.endswith("_count")}
        assert phase["request_headers"] == sent + 1 and phase["request_body"] == sent + 1, phase
        # Per-model autoscaling signals.
        wait_until(lambda: sample_value(s, "switchboard_model_pods", {"model": "tiny", "fresh": "true"}) == 2,
                   "both pods' metrics to be fresh")
        assert sample_value(s, "switchboard_model_in_flight_requests", {"model": "tiny"}) == 0
        assert sample_value(s, "switchboard_model_queue_depth", {"model": "tiny"}) == 0
        assert sample_value(s, "switchboard_model_kv_cache_saturation_ratio", {"model": "tiny"}) is not None
        age = sample_value(s, "switchboard_pod_scrape_age_seconds", {"model": "tiny", "pod": f"127.0.0.1:{s.pod_ports[0]}"})
        assert age is not None and age >= 0, age
        decision = fams["switchboard_routing_decision_duration_seconds"]
        per = {x.labels["strategy"]: x.value for x in decision.samples if x.name.endswith("_count")}
        assert per.get("least-request") == sent, per


def sample_value(s, name, labels):
    for fam in text_string_to_metric_families(s.admin("/metrics")[1]):
        for x in fam.samples:
            if x.name == name and all(x.labels.get(k) == v for k, v in labels.items()):
                return x.value
    return None


def live_names(tmp_path):
    out = set()
    redis = Redis(str(tmp_path)).start()
    try:
        with Stack(pods=2, engine=True, switchboard_args=["--redis", f"127.0.0.1:{redis.port}", "--shared-state"]) as s:
            for i in range(4):
                s.request(chat(content=f"hello {i}", user="u"), headers={"routing-strategy": "prefix-cache"})
            s.request(chat(content="no user"), headers={"routing-strategy": "vtc-basic"})  # a fallback (no_user)
            out |= names(s.admin("/metrics")[1])
            out |= names(page(s.pod_ports[0]))
    finally:
        redis.stop()
    # The KV tier: an agent with an L2 member, and that cache server.
    d = tempfile.mkdtemp()
    port, server_port, server_admin = free_ports(3)
    server = Proc("kv-server", [binary("switchboard-kv-server"), "--listen", f"127.0.0.1:{server_port}", "--capacity", "64M",
                                "--metrics-listen", f"127.0.0.1:{server_admin}"], d)
    agent = Proc("agent", [binary("switchboard-kv-agent"), "--socket", os.path.join(d, "kv.sock"), "--capacity", "64M",
                           "--l2", f"127.0.0.1:{server_port}", "--metrics-listen", f"127.0.0.1:{port}"], d)
    try:
        wait_port(port)
        wait_port(server_admin)
        out |= names(page(port))
        out |= names(page(server_admin))
    finally:
        agent.stop()
        server.stop()
    return out


FUNCS = {"sum", "rate", "by", "histogram_quantile", "max", "min", "count", "le", "irate", "avg", "increase"}


def test_every_dashboard_query_names_metrics_that_exist(tmp_path):
    have = live_names(tmp_path)
    missing, checked = [], 0
    for f in sorted(os.listdir(DASHBOARDS)):
        board = json.load(open(os.path.join(DASHBOARDS, f)))
        for p in board["panels"]:
            for t in p.get("targets", []):
                expr = t["expr"]
                # Metric names: identifiers followed by a selector or range, and not inside by (...).
                stripped = re.sub(r"by \([^)]*\)", "", expr)
                for m in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=[\[{])", stripped):
                    if m in FUNCS:
                        continue
                    checked += 1
                    if m not in have:
                        missing.append(f"{f}: {p['title']}: {m}")
                for m in re.findall(r"\b((?:vllm:|switchboard_)[a-zA-Z0-9_:]+)\)", stripped):
                    checked += 1
                    if m not in have:
                        missing.append(f"{f}: {p['title']}: {m}")
    assert checked > 40, checked
    assert not missing, "\n".join(missing)

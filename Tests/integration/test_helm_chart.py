"""charts/switchboard with the real Helm v4 SDK (helm-python-sdk, no helm
binary): lint, render the defaults and variants, validate every object
against Kubernetes' schemas (kubernetes-validate), reject values outside
values.schema.json, and check the Envoy config in the rendered ConfigMap
with `envoy --mode validate` and the gateway's own `switchboard validate`."""
import copy
import glob
import json
import os
import subprocess

import jsonschema

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from harness import binary, envoy_binary

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHART = os.path.join(ROOT, "charts", "switchboard")
KUBE = "1.37.0"

VARIANTS = {
    "defaults": {},
    "external-redis-limits-shared-state": {
        "limits": {"mode": "redis"}, "sharedState": {"enabled": True},
        "redis": {"external": {"address": "redis.infra:6379", "passwordSecret": {"name": "redis-auth", "key": "password"}}},
    },
    "bundled-redis-autoscaling": {
        "limits": {"mode": "redis"}, "redis": {"bundled": {"enabled": True}},
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6, "targetStreamsPerPod": 200},
    },
    "kv-tier": {"kvAgent": {"enabled": True, "capacity": "16G", "nodeSelector": {"gpu": "true"},
                            "l2": {"members": ["10.0.9.9:7480"]}},
                "kvServer": {"enabled": True, "replicas": 3, "capacity": "64G"}},
    "envoy-gateway": {"envoyGateway": {"enabled": True, "gateway": {"name": "inference-gw", "namespace": "gateways"},
                                       "pool": {"selector": {"model.aibrix.ai/name": "llama"}}}},
    "kubernetes-one-namespace": {"discovery": {"mode": "kubernetes", "namespaces": ["llm"]}},
    "kubernetes-all-namespaces": {"discovery": {"mode": "kubernetes", "namespaces": ["*"]}},
    "static-pods-file-users-in-band": {
        "discovery": {"mode": "static", "static": {"models": [
            {"name": "llama", "endpoints": ["10.0.0.7:8000", {"address": "10.0.0.8:8000", "metricsPort": 9000}]}]}},
        "limits": {"mode": "file", "users": [{"name": "alice", "rpm": 50, "tpm": 100000}]},
        "envoy": {"responsePhase": "in-band"},
    },
}


CRDS = os.path.join(os.path.dirname(__file__), "crds")


def validate_object(o):
    """Core kinds against Kubernetes' schemas; custom resources against the
    CRD schemas vendored in crds/ (scripts/vendor-crd-schemas)."""
    group, _, version = o["apiVersion"].rpartition("/")
    path = os.path.join(CRDS, f"{group}_{o['kind']}_{version}.json")
    if not os.path.exists(path):
        kubernetes_validate.validate(o, KUBE, strict=True)
        return
    with open(path) as f:
        jsonschema.validate(o, strict_schema(json.load(f)))


def strict_schema(schema):
    """The API server prunes fields a CRD does not declare (silently: the
    setting is lost); refuse them instead, as kubernetes-validate's strict
    mode does for core kinds."""
    if isinstance(schema, dict):
        out = {k: strict_schema(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict_schema(x) for x in schema]
    return schema


def test_custom_resources_are_checked_strictly():
    """The vendored-schema check is not a formality: an undeclared or
    mistyped field in a rendered custom resource fails it."""
    objs = [o for _, o in render(VARIANTS["envoy-gateway"])]
    policy = next(o for o in objs if o["kind"] == "EnvoyExtensionPolicy")
    validate_object(policy)
    for bad in ({"extProcs": []}, {"extProc": [{"backendRefs": [{"name": "x", "port": 50051}], "shadowMode": "yes"}]}):
        broken = copy.deepcopy(policy)
        broken["spec"].update(bad)
        with pytest.raises(jsonschema.ValidationError):
            validate_object(broken)
    pool = next(o for o in objs if o["kind"] == "InferencePool")
    broken = copy.deepcopy(pool)
    del broken["spec"]["targetPorts"]
    with pytest.raises(jsonschema.ValidationError):
        validate_object(broken)


def render(values, namespace="serving"):
    chart = helm.Chart.load(CHART)
    out = chart.render(values, name="sb", namespace=namespace, is_install=True)
    objs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objs.append((path, doc))
    return objs


def test_the_chart_lints_clean():
    report = helm.lint(CHART, strict=True, kube_version="v1.37.0")
    errors = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    # Strict mode turns warnings into errors; the only finding allowed is the icon suggestion (info).
    assert not errors, report


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_renders_objects_kubernetes_accepts(name, tmp_path):
    values = VARIANTS[name]
    helm.Chart.load(CHART).validate_schema(values)
    objs = render(values)
    kinds = sorted({o["kind"] for _, o in objs})
    for path, o in objs:
        validate_object(o)
    by_kind = {}
    for _, o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    dep = next(d for d in by_kind["Deployment"] if d["metadata"]["name"] == "sb-switchboard")
    pod = dep["spec"]["template"]["spec"]
    sb = next(c for c in pod["containers"] if c["name"] == "switchboard")
    envoy = next((c for c in pod["containers"] if c["name"] == "envoy"), None)
    assert (envoy is None) == (name == "envoy-gateway"), "the Envoy sidecar is left out exactly in the Envoy Gateway flavour"
    # Graceful shutdown: the grace covers the preStop sleep and the drain.
    drain = int(next(a for a in sb["args"] if a.startswith("--drain-timeout=")).split("=")[1])
    sleep = sb["lifecycle"]["preStop"]["sleep"]["seconds"]
    if envoy:
        assert envoy["lifecycle"]["preStop"]["sleep"]["seconds"] == sleep
    assert pod["terminationGracePeriodSeconds"] >= sleep + drain, pod["terminationGracePeriodSeconds"]
    # Non-root, read-only root, no capabilities.
    assert pod["securityContext"]["runAsNonRoot"] is True
    for c in pod["containers"] + pod["initContainers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"], c["name"]
    # The Envoy config in the ConfigMap: the gateway's template for this phase, valid for Envoy and for `validate`.
    cm = next(c for c in by_kind["ConfigMap"] if c["metadata"]["name"] == "sb-switchboard-config")
    files = []
    if envoy:
        cfg = tmp_path / "envoy.yaml"
        cfg.write_text(cm["data"]["envoy.yaml"])
        r = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(cfg)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        files.append(str(cfg))
    for key in ("pods.yaml", "users.json"):
        if key in cm["data"]:
            (tmp_path / key).write_text(cm["data"][key])
            files.append(str(tmp_path / key))
    if files:
        r = subprocess.run([binary("switchboard"), "validate"] + files, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    # Each variant's own promise.
    if name == "kubernetes-one-namespace":
        assert [x["metadata"]["namespace"] for x in by_kind["Role"]] == ["llm"]
        assert "--namespace=llm" in sb["args"] and "ClusterRole" not in by_kind
    if name == "kubernetes-all-namespaces":
        assert "ClusterRole" in by_kind and not any(a.startswith("--namespace") for a in sb["args"])
    if name == "defaults":
        assert [x["metadata"]["namespace"] for x in by_kind["Role"]] == ["serving"]
        assert "PodDisruptionBudget" in by_kind and "HorizontalPodAutoscaler" not in by_kind
    if name == "external-redis-limits-shared-state":
        assert "--redis=redis.infra:6379" in sb["args"] and "--shared-state" in sb["args"]
        assert any(e["name"] == "REDIS_PASSWORD" for e in sb["env"])
    if name == "bundled-redis-autoscaling":
        assert "--redis=sb-switchboard-redis:6379" in sb["args"]
        assert "HorizontalPodAutoscaler" in by_kind and "replicas" not in dep["spec"]
        metrics = by_kind["HorizontalPodAutoscaler"][0]["spec"]["metrics"]
        assert [m["type"] for m in metrics] == ["Resource", "Pods"], metrics
        assert metrics[1]["pods"]["metric"]["name"] == "switchboard_grpc_streams_open"
    if name == "kv-tier":
        ds = by_kind["DaemonSet"][0]["spec"]["template"]["spec"]
        assert ds["volumes"][0]["hostPath"]["path"] == "/run/switchboard"
        args = ds["containers"][0]["args"]
        assert "--socket=/run/switchboard/kv.sock" in args and "--block-bytes=2097152" in args
        # The agents' ring: the StatefulSet's stable names, then the extra member.
        sts = by_kind["StatefulSet"][0]
        svc = next(x for x in by_kind["Service"] if x["metadata"]["name"] == sts["spec"]["serviceName"])
        assert svc["spec"]["clusterIP"] == "None"
        names = [f"sb-switchboard-kv-server-{i}.sb-switchboard-kv-server.serving.svc:7480" for i in range(3)]
        assert f"--l2={','.join(names + ['10.0.9.9:7480'])}" in args, args
        # The unauthenticated data port admits only this release's agents; metrics stay open.
        np = by_kind["NetworkPolicy"][0]["spec"]
        assert np["podSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
        agent_labels = by_kind["DaemonSet"][0]["spec"]["template"]["metadata"]["labels"]
        data_rule = next(r for r in np["ingress"] if r["ports"] == [{"port": "kv", "protocol": "TCP"}])
        assert [f["podSelector"]["matchLabels"].items() <= agent_labels.items() for f in data_rule["from"]] == [True]
        assert {"ports": [{"port": "metrics", "protocol": "TCP"}]} in np["ingress"]
        server_args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--block-bytes=2097152" in server_args and "--capacity=64G" in server_args
        # The rendered flags are ones the real binaries accept (--help after them: parsed, not started).
        for exe, argv in (("switchboard-kv-agent", args), ("switchboard-kv-server", server_args)):
            r = subprocess.run([binary(exe)] + argv + ["--help"], capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, exe + ": " + r.stderr
    if name == "envoy-gateway":
        pool = by_kind["InferencePool"][0]
        assert pool["spec"]["endpointPickerRef"] == {"name": "sb-switchboard", "port": {"number": 50051}, "failureMode": "FailClose"}
        assert pool["spec"]["selector"]["matchLabels"] == {"model.aibrix.ai/name": "llama"}
        route = by_kind["HTTPRoute"][0]
        assert route["spec"]["parentRefs"] == [{"name": "inference-gw", "namespace": "gateways"}]
        assert route["spec"]["rules"][0]["backendRefs"][0]["kind"] == "InferencePool"
        policy = by_kind["EnvoyExtensionPolicy"][0]
        assert policy["spec"]["targetRefs"][0]["name"] == route["metadata"]["name"]
        assert policy["spec"]["extProc"][0]["shadowMode"] is True
        assert "--endpoint-picker-fallbacks=2" in sb["args"] and not any(a.startswith("--listen=unix:") for a in sb["args"])
        svc = next(x for x in by_kind["Service"] if x["metadata"]["name"] == "sb-switchboard")
        assert [p["name"] for p in svc["spec"]["ports"]] == ["grpc", "admin"]
    if name == "static-pods-file-users-in-band":
        assert "--pods-file=/etc/switchboard/pods.yaml" in sb["args"] and "--users-file=/etc/switchboard/users.json" in sb["args"]
        assert "ext_proc" in cm["data"]["envoy.yaml"] and "response_header_mode: SEND" in cm["data"]["envoy.yaml"]
    # Dashboards ship as ConfigMaps with the sidecar's discovery label.
    boards = [c for c in by_kind["ConfigMap"] if c["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(boards) == 3, [c["metadata"]["name"] for c in boards]
    print(f"\n{name}: {len(objs)} objects ({', '.join(kinds)}) valid for Kubernetes {KUBE}")


BAD = [
    ("unknown key", {"gatway": {"replicas": 2}}),
    ("replicas 0", {"gateway": {"replicas": 0}}),
    ("unknown response phase", {"envoy": {"responsePhase": "sometimes"}}),
    ("limits in redis without redis", {"limits": {"mode": "redis"}}),
    ("shared state without redis", {"sharedState": {"enabled": True}}),
    ("bad redis address", {"redis": {"external": {"address": "no-port"}}}),
    ("bad endpoint", {"discovery": {"mode": "static", "static": {"models": [{"name": "m", "endpoints": ["nohost"]}]}}}),
    ("negative rpm", {"limits": {"mode": "file", "users": [{"name": "a", "rpm": -1}]}}),
    ("kv servers without agents", {"kvServer": {"enabled": True}}),
    ("bad l2 member", {"kvAgent": {"enabled": True, "l2": {"members": ["nohost"]}}}),
    ("envoy gateway without a gateway", {"envoyGateway": {"enabled": True, "pool": {"selector": {"a": "b"}}}}),
    ("envoy gateway without a pool selector", {"envoyGateway": {"enabled": True, "gateway": {"name": "gw"}}}),
    ("kv server network policy peers not a list", {"kvAgent": {"enabled": True},
                                                   "kvServer": {"enabled": True, "networkPolicy": {"extraFrom": "all"}}}),
]


@pytest.mark.parametrize("name,values", BAD, ids=[b[0] for b in BAD])
def test_values_outside_the_schema_are_rejected(name, values):
    chart = helm.Chart.load(CHART)
    with pytest.raises(helm.HelmError):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmError):
        chart.render(values, name="sb", namespace="serving", is_install=True)


def test_the_chart_ships_the_renderers_current_envoy_configs():
    for phase in ("observer", "none", "in-band"):
        want = subprocess.run([binary("switchboard"), "envoy-config", "--listen", "0.0.0.0:8080", "--admin", "127.0.0.1:9901",
                               "--processor", "unix:/var/run/switchboard/ext_proc.sock", "--response-phase", phase],
                              capture_output=True, text=True, check=True).stdout
        have = open(os.path.join(CHART, "files", f"envoy-{phase}.yaml")).read()
        assert have == want, f"charts/switchboard/files/envoy-{phase}.yaml is stale: run scripts/gen-chart-envoy"


def test_the_engine_examples_carry_the_discovery_labels():
    ex = os.path.join(CHART, "examples")
    dep = yaml.safe_load(open(os.path.join(ex, "vllm-deployment.yaml")))
    kubernetes_validate.validate(dep, KUBE, strict=True)
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["model.aibrix.ai/name"] and labels["model.aibrix.ai/port"] == "8000"
    lws = yaml.safe_load(open(os.path.join(ex, "vllm-multinode-lws.yaml")))
    t = lws["spec"]["leaderWorkerTemplate"]
    # The group is one endpoint: the leader is labelled, workers are not.
    assert t["leaderTemplate"]["metadata"]["labels"]["model.aibrix.ai/name"] == "llama-3-405b"
    assert "model.aibrix.ai/name" not in t["workerTemplate"].get("metadata", {}).get("labels", {})

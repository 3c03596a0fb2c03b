"""`switchboard validate`: a table of broken files, each rejected with the
line the problem is on; good files (and the rendered Envoy config) pass."""
import subprocess

import pytest

from harness import binary

GOOD_PODS = """models:
  - name: tiny
    endpoints:
      - 127.0.0.1:8000
      - address: 127.0.0.1:8001
        metricsPort: 9001
"""

CASES = [
    # (name, kind file suffix, content, expected line, text the message must contain)
    ("pods: bad endpoint", "yaml", GOOD_PODS.replace("127.0.0.1:8000", "127.0.0.1"), 4, "is not host:port"),
    ("pods: bad metrics port", "yaml", GOOD_PODS.replace("9001", "70000"), 6, "metricsPort must be a port number"),
    ("pods: model twice", "yaml", GOOD_PODS + "  - name: tiny\n    endpoints: []\n", 7, "listed twice"),
    ("pods: endpoints not a list", "yaml", "models:\n  - name: a\n    endpoints: 127.0.0.1:1\n", 3, "endpoints must be a list"),
    ("pods: YAML syntax", "yaml", "models:\n  - name: a\n   endpoints: [x\n", 3, "invalid YAML"),
    ("users: negative rpm", "json", '[\n  {"name": "a", "rpm": 1, "tpm": 2},\n  {"name": "b",\n   "rpm": -5, "tpm": 2}\n]\n', 4,
     "must be non-negative"),
    ("users: name twice", "json", '[\n  {"name": "a", "rpm": 1},\n\n  {"name": "a", "rpm": 2}\n]\n', 4, "listed twice"),
    ("users: wrong type", "json", '[\n  {"name": "a",\n   "rpm": "fast"}\n]\n', 3, "record 1"),
    ("users: JSON syntax", "json", '[\n  {"name": "a", "rpm": 1},\n  {"name": "b" "rpm": 2}\n]\n', 3, "not a JSON array"),
    ("keys: short key", "txt", "# keys\nsk-longenough-1 alice\nshort bob\n", 3, "at least 8 characters"),
    ("keys: key twice", "txt", "sk-longenough-1 alice\n\nsk-longenough-1 bob\n", 3, "listed twice"),
    ("keys: extra field", "txt", "sk-longenough-1 alice\nsk-longenough-2 bob extra\n", 2, "expected 'KEY [USER]'"),
]


def validate(*args):
    return subprocess.run([binary("switchboard"), "validate"] + list(args), capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name,suffix,content,line,needle", CASES, ids=[c[0] for c in CASES])
def test_a_broken_file_is_rejected_with_its_line(tmp_path, name, suffix, content, line, needle):
    f = tmp_path / f"file.{suffix}"
    f.write_text(content)
    r = validate(str(f))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"{f}:{line}:" in r.stdout or f"{f} line {line}" in r.stdout, r.stdout
    assert needle in r.stdout, r.stdout
    assert "1 of 1 file(s) have errors" in r.stderr


def envoy_config(*args):
    return subprocess.run([binary("switchboard"), "envoy-config"] + list(args), capture_output=True, text=True, check=True).stdout


ENVOY_CASES = [
    # (name, transform of the rendered config, text the message must contain, the line's text)
    ("no anti-spoof", lambda t: t.replace("- remove: target-pod\n", "- remove: x-something-else\n"),
     "a client could choose its own pod", "envoy.filters.http.header_mutation"),  # the filter list's first line
    ("ext_proc cluster missing", lambda t: t.replace("cluster_name: switchboard }", "cluster_name: gateway }"),
     "names cluster 'gateway', which is not defined", "cluster_name: gateway"),
    ("no HTTP/2 to the gateway", lambda t: t.replace("http2_protocol_options:\n", "http_protocol_options:\n"),
     "must speak HTTP/2", "- name: switchboard"),
    ("ORIGINAL_DST without the header", lambda t: t.replace("use_http_header: true", "use_http_header: false"),
     "use_http_header: true", "- name: vllm_pods"),
]


@pytest.mark.parametrize("name,transform,needle,line_text", ENVOY_CASES, ids=[c[0] for c in ENVOY_CASES])
def test_a_broken_envoy_config_is_rejected_with_its_line(tmp_path, name, transform, needle, line_text):
    good = envoy_config()
    bad = transform(good)
    assert bad != good, "the case did not change the config"
    f = tmp_path / "envoy.yaml"
    f.write_text(bad)
    r = validate(str(f))
    assert r.returncode == 1, (r.stdout, r.stderr)
    msg = next(l for l in r.stdout.splitlines() if needle in l)
    line = int(msg.split(":")[1])
    assert line_text in bad.splitlines()[line - 1], (msg, bad.splitlines()[line - 1])


def test_good_files_pass_and_their_kinds_are_recognized(tmp_path):
    pods = tmp_path / "pods.yaml"
    pods.write_text(GOOD_PODS)
    users = tmp_path / "users.json"
    users.write_text('[{"name": "a", "rpm": 10, "tpm": 0}]\n')
    keys = tmp_path / "keys.txt"
    keys.write_text("sk-longenough-1 alice\n")
    cfgs = []
    for i, args in enumerate([[], ["--response-phase", "in-band"], ["--processor", "unix:/tmp/sb.sock"],
                              ["--processor", "127.0.0.1:1", "--processor", "127.0.0.1:2"]]):
        c = tmp_path / f"envoy-{i}.yaml"
        c.write_text(envoy_config(*args))
        cfgs.append(str(c))
    r = validate(str(pods), str(users), str(keys), *cfgs)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{pods}: ok (pods: 1 models, 2 endpoints)" in r.stdout
    assert f"{users}: ok (users: 1 users)" in r.stdout
    assert f"{keys}: ok (keys: 1 keys)" in r.stdout
    assert r.stdout.count("ok (envoy:") == 4, r.stdout
    # --kind overrides detection (a pods file read as a key file fails).
    assert validate("--kind", "keys", str(pods)).returncode == 1
    bad = validate("--kind", "nope", str(pods))
    assert bad.returncode != 0 and "--kind must be one of" in bad.stderr
    missing = validate(str(tmp_path / "absent.yaml"))
    assert missing.returncode == 1 and "cannot read the file" in missing.stdout

"""scripts/check-architecture passes on the tree, and fails, naming the file
and the rule, when a forbidden import or declaration is added to a scratch
copy of the tree (one case per rule)."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHECK = os.path.join(ROOT, "scripts", "check-architecture")


def run_check(root, package_json=None):
    cmd = [sys.executable, CHECK, "--root", root]
    if package_json:
        cmd += ["--package-json", package_json]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def package_json(tmp_path_factory):
    out = subprocess.run(["swift", "package", "--package-path", ROOT, "dump-package"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    p = tmp_path_factory.mktemp("pkg") / "package.json"
    p.write_text(out)
    return str(p)


def scratch_copy(tmp_path):
    d = tmp_path / "tree"
    d.mkdir()
    shutil.copy(os.path.join(ROOT, "Package.swift"), d / "Package.swift")
    for sub in ("Sources", "Benchmarks"):
        shutil.copytree(os.path.join(ROOT, sub), d / sub,
                        ignore=shutil.ignore_patterns("traces", "*.jsonl", "*.csv", "__pycache__"))
    return d


def add_line(path, line, after_imports=True):
    text = path.read_text()
    path.write_text(line + "\n" + text if after_imports else text + "\n" + line + "\n")


def test_the_tree_passes(package_json):
    r = run_check(ROOT, package_json)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "check-architecture: ok" in r.stdout


CASES = [
    # (rule, file, line to add at the top (or "+" prefix: at the end), text the report must contain)
    ("c-fence", "Sources/Routing/Router.swift", "import CSystem",
     "Routing is not a binding module and imports C module CSystem"),
    ("c-fence", "Sources/HTTP2/HTTP2Error.swift", "import CNghttp2",
     "binding HTTP2 must import CNghttp2 as `internal import CNghttp2`"),
    ("routing-sees-snapshot", "Sources/Routing/Router.swift", "import GRPCServer", "Routing reaches GRPCServer"),
    ("routing-sees-snapshot", "Sources/PodSnapshot/PodLoad.swift", "import ExtProcProto",
     "Routing reaches ExtProcProto: Routing -> PodSnapshot -> ExtProcProto"),
    ("pods-know-no-requests", "Sources/PodMetrics/MetricsWindow.swift", "import Routing", "PodMetrics reaches Routing"),
    ("pods-know-no-requests", "Sources/PodSnapshot/PodLoad.swift", "import Foundation",
     "PodSnapshot imports Foundation"),
    ("no-sim-in-prod", "Sources/KVAgent/AgentStats.swift", "import VLLMSim", "the KV agent reaches VLLMSim"),
    ("no-sim-in-prod", "Sources/Gateway/GatewayMetrics.swift", "import KVBench", "the gateway reaches KVBench"),
    ("thin-executables", "Sources/switchboard-kv-agent/KVAgentCommand.swift", "+final class RouteTable {}",
     "executable switchboard-kv-agent declares class RouteTable"),
    ("thin-executables", "Sources/vllm-sim/VLLMSimCommand.swift", "import HTTP1", "executable vllm-sim imports HTTP1"),
    ("thin-executables", "Sources/switchboard/Switchboard.swift",
     "+func log(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }", "uses FileHandle"),
]


@pytest.mark.parametrize("rule,path,line,expected", CASES, ids=[f"{c[0]}:{c[1].split('/')[-1]}" for c in CASES])
def test_each_rule_fails_on_a_forbidden_change(tmp_path, package_json, rule, path, line, expected):
    tree = scratch_copy(tmp_path)
    target = tree / path
    if line.startswith("+"):
        add_line(target, line[1:], after_imports=False)
    else:
        add_line(target, line)
    r = run_check(str(tree), package_json)
    assert r.returncode == 1, f"check passed after adding {line!r} to {path}:\n{r.stdout}"
    hits = [ln for ln in r.stdout.splitlines() if f"[{rule}]" in ln]
    assert hits, f"no [{rule}] line:\n{r.stdout}"
    assert any(expected in ln for ln in hits), f"expected {expected!r} in:\n{r.stdout}"
    assert any(path.split("/")[-1] in ln or "Package.swift" in ln for ln in hits), r.stdout


def test_a_new_module_must_be_placed_on_the_map(tmp_path):
    tree = scratch_copy(tmp_path)
    pkg = (tree / "Package.swift").read_text()
    pkg = pkg.replace('.target(name: "Metrics", swiftSettings: strict),',
                      '.target(name: "Metrics", swiftSettings: strict),\n        .target(name: "Stray", dependencies: ["CSystem"]),')
    (tree / "Package.swift").write_text(pkg)
    os.makedirs(tree / "Sources" / "Stray")
    (tree / "Sources" / "Stray" / "Stray.swift").write_text("internal import CSystem\npublic enum Stray {}\n")
    r = run_check(str(tree))  # dump-package of the edited manifest
    assert r.returncode == 1, r.stdout + r.stderr
    assert "[layer-table] target Stray: has no layer" in r.stdout, r.stdout
    assert "[c-fence] Package.swift target Stray: depends on C module CSystem" in r.stdout, r.stdout

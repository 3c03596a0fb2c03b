"""Smoke run of the ext_proc benchmark with the peer routers (sglang-router
and vllm-router, pinned, installed by scripts/setup-peers) against the same
simulated pods as Envoy + Switchboard. Small counts; no thresholds: the
figures are for people, the run shows the comparison works."""
import os
import subprocess
import sys

import pytest

from harness import ROOT, build_dir


def test_bench_extproc_runs_the_peers_beside_envoy_and_switchboard():
    setup = subprocess.run([os.path.join(ROOT, "scripts", "setup-peers")], capture_output=True, text=True, timeout=600)
    if setup.returncode != 0:
        if os.environ.get("CI"):
            raise AssertionError("scripts/setup-peers failed in CI:\n" + setup.stderr[-2000:])
        pytest.skip("peer routers not installable here: " + setup.stderr[-300:])
    peers = setup.stdout.strip().splitlines()[-1]
    r = subprocess.run([sys.executable, os.path.join(ROOT, "Benchmarks", "bench_extproc.py"), "--seconds", "1",
                        "--connections", "4", "--no-python-peer", "--no-direct", "--peers", peers],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ, SWITCHBOARD_BUILD=build_dir()))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = r.stdout
    for row in ("Envoy alone", "Envoy + switchboard", "sglang-router rr", "vllm-router rr"):
        line = next((ln for ln in out.splitlines() if ln.startswith(row)), None)
        assert line, out
        assert line.split()[-3] == "0", line  # the non-2xx column: every request answered
    assert "total CPU per request: Envoy + switchboard" in out and "best peer" in out, out

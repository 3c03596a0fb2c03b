"""The 2-minute soak (scripts/soak): mixed traffic through the real Envoy
and gateway and put/get rounds against a KV agent, every request answered
as it should be, and the gateway's and agent's memory and descriptors flat
(slopes within the script's stated bounds)."""
import os
import subprocess
import sys

from harness import ROOT


def test_two_minute_soak_keeps_memory_and_descriptors_flat():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "soak"), "--minutes", "2", "--sample-seconds", "10"],
                       capture_output=True, text=True, timeout=600, env=dict(os.environ))
    print(r.stdout[-3000:])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "errors 0" in r.stdout and r.stdout.count("ok)") == 4

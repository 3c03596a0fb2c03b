"""scripts/build-static: the gateway, agent and simulator built with the
Swift runtime linked in need no Swift library at run time; stripped copies
start with an environment that names no toolchain, and the demo's traffic
flows through them."""
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_static_binaries_run_without_a_swift_toolchain(tmp_path):
    dest = tmp_path / "bin"
    r = subprocess.run([os.path.join(ROOT, "scripts", "build-static"), str(dest)], capture_output=True, text=True,
                       timeout=1800, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print("\n" + "\n".join(l for l in r.stdout.splitlines() if l.startswith("build-static:")))
    # A bare environment: no PATH into /opt/swift, no LD_LIBRARY_PATH.
    bare = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}
    for name in ("switchboard", "switchboard-kv-agent", "switchboard-kv-server", "vllm-sim"):
        ldd = subprocess.run(["ldd", str(dest / name)], capture_output=True, text=True).stdout
        assert "swift" not in ldd.lower() and "libFoundation" not in ldd, ldd
        h = subprocess.run([str(dest / name), "--help"], capture_output=True, text=True, env=bare, timeout=30)
        assert h.returncode == 0 and "USAGE" in h.stdout, (name, h.stdout[-500:], h.stderr[-500:])
    # The demo's traffic through the stripped static binaries (the Python
    # driver, Envoy and the harness are the test's; the three binaries are these).
    env = dict(os.environ, SWITCHBOARD_BUILD=str(dest))
    env.pop("LD_LIBRARY_PATH", None)
    d = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "demo.py"), "--requests", "60"],
                       capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert d.returncode == 0, d.stdout[-3000:] + d.stderr[-3000:]
    print(d.stdout[-1500:])

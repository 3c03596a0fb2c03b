"""Pod-metrics benchmark (see scripts/bench-pod-metrics): parse cost of a
real vLLM page and a simulator page (the Swift decoder against Python's
prometheus_client, side by side), then one gateway scraping N simulated
endpoints at the default 50 ms interval: CPU cores used, scrapes per
second, memory per endpoint. Prints figures; asserts nothing."""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "Tests", "integration"))
from harness import Proc, binary, cpu_seconds, free_port, free_ports, rss_kib, wait_port  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CAPTURE = os.path.join(ROOT, "Tests", "PodMetricsTests", "Inputs", "vllm-0.32-cpu.idle-after-load.metrics.txt")


def swift_parse(path, n):
    out = subprocess.run([binary("switchboard-bench"), "parse-metrics", path, str(n)], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.split("json: ", 1)[1])


def python_parse_us(path, n=100):
    from prometheus_client.parser import text_string_to_metric_families
    text = open(path).read()
    for _ in range(5):
        list(text_string_to_metric_families(text))
    t0 = time.perf_counter()
    for _ in range(n):
        list(text_string_to_metric_families(text))
    return (time.perf_counter() - t0) / n * 1e6


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--endpoints", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * a.endpoints + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # children inherit it
    d = tempfile.mkdtemp(prefix="switchboard-bench-pods-")
    procs = []
    try:
        ports = free_ports(a.endpoints)
        listen = sum((["--listen", f"127.0.0.1:{p}"] for p in ports), [])
        sim = Proc("vllm-sim", [binary("vllm-sim"), "--loops", "1", "--profile", "fixed"] + listen, d)
        procs.append(sim)
        for p in ports[:: max(1, len(ports) // 20)] + [ports[-1]]:
            wait_port(p)
        sim_page = os.path.join(d, "sim.metrics.txt")
        with open(sim_page, "wb") as f:
            f.write(fetch(f"http://127.0.0.1:{ports[0]}/metrics"))

        print("\nparse cost per page (best of 3 rounds; Python prometheus_client as the baseline)")
        print(f"{'page':<34}{'bytes':>8}{'full parse':>12}{'decoder':>10}{'Python':>11}{'Python/decoder':>16}")
        for label, path in [("real vLLM 0.32 capture", CAPTURE), ("simulated pod", sim_page)]:
            s = swift_parse(path, 2000 if path == CAPTURE else 20000)
            py = python_parse_us(path)
            print(f"{label:<34}{os.path.getsize(path):>8}{s['full_us']:>10.1f}µs{s['decode_us']:>8.1f}µs"
                  f"{py:>9.0f}µs{py / s['decode_us']:>15.0f}x")

        def gateway(n_endpoints):
            pods_file = os.path.join(d, f"pods-{n_endpoints}.yaml")
            with open(pods_file, "w") as f:
                f.write("models:\n  - name: tiny\n    endpoints: [" +
                        ", ".join(f"127.0.0.1:{p}" for p in ports[:n_endpoints]) + "]\n")
            admin = free_port()
            g = Proc(f"switchboard-{n_endpoints}", [binary("switchboard"), "serve", "--pods-file", pods_file,
                                                    "--listen", f"127.0.0.1:{free_port()}", "--admin-listen",
                                                    f"127.0.0.1:{admin}", "--log-level", "warning"], d)
            procs.append(g)
            wait_port(admin)
            time.sleep(2)  # connections up, windows filling
            stats0 = json.loads(fetch(f"http://127.0.0.1:{admin}/debug/stats"))["scrapes"]
            c0, s0 = cpu_seconds(g.pid), cpu_seconds(sim.pid)
            t0 = time.time()
            time.sleep(a.seconds)
            dt = time.time() - t0
            cpu, simcpu = (cpu_seconds(g.pid) - c0) / dt, (cpu_seconds(sim.pid) - s0) / dt
            stats1 = json.loads(fetch(f"http://127.0.0.1:{admin}/debug/stats"))["scrapes"]
            pods = json.loads(fetch(f"http://127.0.0.1:{admin}/debug/pods"))["models"]["tiny"]
            fresh = sum(1 for p in pods if p["health"] == "fresh")
            rss = rss_kib(g.pid)
            g.stop()
            ok = (stats1["succeeded"] - stats0["succeeded"]) / dt
            failed = (stats1["failed"] - stats0["failed"]) / dt
            return cpu, simcpu, ok, failed, fresh, rss

        small = gateway(1)
        big = gateway(a.endpoints)
        cpu, simcpu, ok, failed, fresh, rss = big
        print(f"\none gateway scraping {a.endpoints} simulated endpoints every 50 ms for {a.seconds} s "
              f"(target 20 scrapes/s each = {20 * a.endpoints}/s):")
        print(f"  gateway CPU        {cpu:.2f} cores   (target <= 0.3)")
        print(f"  scrapes completed  {ok:.0f}/s ({ok / a.endpoints:.1f} per endpoint per s), failed {failed:.0f}/s, "
              f"fresh at the end {fresh}/{a.endpoints}")
        print(f"  simulator CPU      {simcpu:.2f} cores (serving the pages, same 2-core machine)")
        print(f"  gateway CPU per scrape {cpu / max(ok, 1) * 1e6:.1f} µs")
        print(f"  memory             {rss / 1024:.1f} MiB RSS with {a.endpoints} endpoints vs {small[5] / 1024:.1f} MiB with 1 "
              f"= {(rss - small[5]) / max(1, a.endpoints - 1):.1f} KiB per endpoint")
        print(f"logs: {d}")
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    main()

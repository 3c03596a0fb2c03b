"""Processor restarts and graceful shutdown, with a real Envoy in front."""
import concurrent.futures
import json
import os
import signal
import socket
import struct

import pytest

from harness import Stack, chat, wait_port, wait_until
from test_grpc_peer import RawH2, grpc_frame


def test_processor_restart_envoy_reconnects():
    with Stack(pods=2) as s:
        assert s.request(chat())[0] == 200
        s.switchboard.signal(signal.SIGKILL)
        s.switchboard.wait(10)
        # Processor gone and failure_mode_allow off: Envoy fails the request (no routing without us).
        status, _, _ = s.request(chat())
        assert status == 500
        s.start_switchboard()
        ok = [s.request(chat())[0] for _ in range(50)]
        assert ok == [200] * 50
        assert s.stats()["cluster.switchboard.upstream_cx_total"] >= 2


def chart_shutdown_values():
    """The Helm chart's drain timeout and preStop sleep (its defaults): the
    SIGTERM test runs the gateway with the chart's drain timeout, so the
    chart's terminationGracePeriodSeconds (sleep + drain + 5, checked in
    test_helm_chart.py) covers what this test shows the drain needs."""
    import yaml
    v = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "..", "charts", "switchboard", "values.yaml")))
    return v["gateway"]["drainTimeoutSeconds"], v["preStopSleepSeconds"]


def test_sigterm_drains_in_flight_then_exits_zero():
    drain, _ = chart_shutdown_values()
    # Every request waits 1.5 s at the pod (its configured TTFT), so all 12 are in flight at SIGTERM.
    with Stack(pods=2, ttft_ms=1500, max_tokens=2, switchboard_args=["--drain-timeout", str(drain)]) as s:
        # A raw HTTP/2 connection opened before the drain, to ask for health during it.
        probe = RawH2(s.grpc_port)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=12)
        inflight = [pool.submit(s.request, chat(max_tokens=2)) for _ in range(12)]
        # All 12 routed and waiting on the pods, as the gateway reports it.
        wait_until(lambda: sum(p["in_flight_requests"] for p in s.admin("/debug/pods")[1]["models"]["tiny"]) == 12,
                   "the gateway to report 12 requests in flight", timeout=20)
        s.switchboard.signal(signal.SIGTERM)
        wait_until(lambda: "gateway.draining" in s.switchboard.output(), "the gateway to log gateway.draining")
        # Health on the existing connection says NOT_SERVING while draining.
        sid = probe.open(path="/grpc.health.v1.Health/Check")
        probe.send(sid, grpc_frame(b""), end=True)
        data, trailers = probe.collect_raw(sid)
        assert trailers["grpc-status"] == "0"
        assert data[5:] == b"\x08\x02"  # NOT_SERVING
        # New connections are refused.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", s.grpc_port), timeout=2)
        # In-flight requests complete normally.
        results = [f.result(timeout=30) for f in inflight]
        assert [r[0] for r in results] == [200] * 12
        assert all(json.loads(r[2])["object"] == "chat.completion" for r in results)
        # Then the process exits 0 because the streams drained, not because
        # the chart's drain timeout cut them off: the server says which.
        code = s.switchboard.wait(30)
        assert code == 0
        out = s.switchboard.output()
        assert "grpc.server.drained" in out and "grpc.server.drain_timeout" not in out, out[-2000:]
        probe.close()

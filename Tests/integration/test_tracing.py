"""OpenTelemetry tracing (`serve --otlp-endpoint`): a span per request
exported as OTLP/protobuf to a collector stand-in (decoded with the
official opentelemetry-proto classes), the caller's W3C traceparent
continued and passed on to the engine, unsampled parents respected, and a
collector that is down costs dropped spans, never requests."""
import http.server
import json
import threading

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from harness import Stack, chat, free_port, wait_until

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class Recorder(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler):
        super().__init__(("127.0.0.1", free_port()), handler)
        self.spans, self.headers, self.lock = [], [], threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()


class Collector(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        with self.server.lock:
            for rs in req.resource_spans:
                svc = {a.key: a.value.string_value for a in rs.resource.attributes}.get("service.name")
                for ss in rs.scope_spans:
                    for sp in ss.spans:
                        self.server.spans.append((svc, sp))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


class Pod(http.server.BaseHTTPRequestHandler):
    """An OpenAI-speaking pod that records the headers it was sent."""
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with self.server.lock:
            self.server.headers.append(dict(self.headers))
        body = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "tiny",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def attrs(sp):
    out = {}
    for a in sp.attributes:
        v = a.value
        out[a.key] = v.string_value if v.HasField("string_value") else v.int_value if v.HasField("int_value") else v.double_value
    return out


def test_spans_are_exported_and_the_trace_reaches_the_engine():
    collector, pod = Recorder(Collector), Recorder(Pod)
    try:
        args = ["--otlp-endpoint", f"http://127.0.0.1:{collector.server_address[1]}/v1/traces", "--otlp-service-name", "sb-test"]
        with Stack(pod_ports=[pod.server_address[1]], switchboard_args=args, response_phase="in-band") as s:
            # 1. A sampled caller: our span is its child, and the engine's parent.
            status, _, p = s.request(chat(content="traced"), headers={"traceparent": f"00-{TRACE}-{PARENT}-01",
                                                                      "x-request-id": "req-traced"})
            assert status == 200, p[:300]
            # 2. No traceparent: a new trace, sampled (ratio 1).
            status, _, _ = s.request(chat(content="root"), headers={"x-request-id": "req-root"})
            assert status == 200
            # 3. An unsampled caller: no span, the decision passed on.
            status, _, _ = s.request(chat(content="unsampled"), headers={"traceparent": f"00-{TRACE[::-1]}-{PARENT}-00",
                                                                         "x-request-id": "req-unsampled"})
            assert status == 200
            # 4. A last sampled request: once its span arrived, every earlier one had (one queue, in order).
            s.request(chat(content="last"), headers={"x-request-id": "req-last"})
            wait_until(lambda: any(attrs(sp)["switchboard.request_id"] == "req-last" for _, sp in collector.spans),
                       "the last request's span at the collector")
            spans = {attrs(sp)["switchboard.request_id"]: (svc, sp) for svc, sp in collector.spans}
            seen = {h["x-request-id"]: h for h in pod.headers}
        assert "req-unsampled" not in spans, "an unsampled parent's request was exported"
        assert seen["req-unsampled"]["traceparent"].startswith(f"00-{TRACE[::-1]}-") and seen["req-unsampled"]["traceparent"].endswith("-00")
        svc, sp = spans["req-traced"]
        assert svc == "sb-test" and sp.name == "switchboard route"
        assert sp.trace_id.hex() == TRACE and sp.parent_span_id.hex() == PARENT
        assert seen["req-traced"]["traceparent"] == f"00-{TRACE}-{sp.span_id.hex()}-01"
        a = attrs(sp)
        assert a["gen_ai.request.model"] == "tiny" and a["http.response.status_code"] == 200
        assert a["server.address"] == "127.0.0.1" and a["server.port"] == pod.server_address[1]
        assert a["switchboard.strategy"] == "random" and a["gen_ai.usage.input_tokens"] == 5
        assert sp.end_time_unix_nano >= sp.start_time_unix_nano > 0
        _, root = spans["req-root"]
        assert root.parent_span_id == b"" and len(root.trace_id) == 16
        assert seen["req-root"]["traceparent"] == f"00-{root.trace_id.hex()}-{root.span_id.hex()}-01"
    finally:
        collector.shutdown()
        pod.shutdown()


def test_a_collector_that_is_down_costs_spans_not_requests():
    args = ["--otlp-endpoint", f"http://127.0.0.1:{free_port()}/v1/traces"]  # nothing listens there
    with Stack(pods=2, switchboard_args=args) as s:
        for i in range(5):
            status, _, _ = s.request(chat(content=f"q{i}"))
            assert status == 200

        def dropped():
            line = next(l for l in s.admin("/metrics")[1].splitlines()
                        if l.startswith('switchboard_tracing_spans_total{result="dropped"}'))
            return float(line.rsplit(" ", 1)[1])
        wait_until(lambda: dropped() == 5, "the five spans to be counted as dropped")
        assert "tracing.export.failed" in s.switchboard.output()

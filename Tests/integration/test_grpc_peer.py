"""An independent gRPC peer (Python grpcio + Envoy's own generated protos from
xds-protos, and raw HTTP/2 frames from the h2 library) drives switchboard
directly, without Envoy."""
import json
import os
import socket
import struct
import tempfile

import grpc
import h2.config
import h2.connection
import h2.events
import pytest

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ep_grpc

from harness import Proc, binary, free_port, wait_port

PM = processing_mode_pb2.ProcessingMode


def start_gateway(pods_yaml, *args):
    """A switchboard with no Envoy in front, on a free port."""
    d = tempfile.mkdtemp(prefix="switchboard-peer-")
    pods = os.path.join(d, "pods.yaml")
    with open(pods, "w") as f:
        f.write(pods_yaml)
    port = free_port()
    p = Proc("switchboard", [binary("switchboard"), "serve", "--pods-file", pods, "--admin-listen", "off",
                             "--listen", f"127.0.0.1:{port}"] + list(args), d)
    wait_port(port)
    return port, p


@pytest.fixture(scope="module")
def gateway():
    port, p = start_gateway("models:\n  - name: tiny\n    endpoints: [10.1.2.3:8000, 10.1.2.4:8000]\n",
                            "--max-message-bytes", str(2 << 20), "--max-body-bytes", str(3 << 20))
    yield port, p
    p.stop()
    assert "Fatal" not in p.output()


def headers_msg(path="/v1/chat/completions", method="POST", eos=False, extra=()):
    hs = [(":path", path), (":method", method), (":authority", "gw"), ("x-request-id", "rid-1"),
          ("content-type", "application/json")] + list(extra)
    return ep.HttpHeaders(headers=base_pb2.HeaderMap(headers=[
        base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in hs]), end_of_stream=eos)


def body(model="tiny", **kw):
    b = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    b.update(kw)
    return json.dumps(b).encode()


def set_headers(common):
    return {o.header.key: (o.header.raw_value.decode() or o.header.value, o.append_action)
            for o in common.header_mutation.set_headers}


def run(port, messages):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = ep_grpc.ExternalProcessorStub(ch)
        return list(stub.Process(iter(messages), timeout=10))


def test_buffered_every_phase(gateway):
    port, _ = gateway
    msgs = [
        ep.ProcessingRequest(request_headers=headers_msg(),
                             protocol_config=ep.ProtocolConfiguration(request_body_mode=PM.BUFFERED,
                                                                      response_body_mode=PM.STREAMED)),
        ep.ProcessingRequest(request_body=ep.HttpBody(body=body(), end_of_stream=True)),
        ep.ProcessingRequest(request_trailers=ep.HttpTrailers()),
        ep.ProcessingRequest(response_headers=headers_msg(path="/", extra=[(":status", "200")])),
        ep.ProcessingRequest(response_body=ep.HttpBody(body=b"data: {}\n\n", end_of_stream=False)),
        ep.ProcessingRequest(response_body=ep.HttpBody(body=b"data: [DONE]\n\n", end_of_stream=True)),
        ep.ProcessingRequest(response_trailers=ep.HttpTrailers()),
    ]
    out = run(port, msgs)
    kinds = [r.WhichOneof("response") for r in out]
    assert kinds == ["request_headers", "request_body", "request_trailers", "response_headers",
                     "response_body", "response_body", "response_trailers"]
    # Request headers: continue, with the mode override that skips the response body phase.
    assert out[0].mode_override.request_body_mode == PM.BUFFERED
    assert out[0].mode_override.response_body_mode == PM.NONE
    assert out[0].mode_override.response_header_mode == PM.SEND
    hs = set_headers(out[1].request_body.response)
    target, action = hs["target-pod"]
    assert target in ("10.1.2.3:8000", "10.1.2.4:8000")
    assert action == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    assert hs["routing-strategy"][0] == "random"
    resp = set_headers(out[3].response_headers.response)
    assert resp["x-switchboard-pod"][0] == target


def test_full_duplex_chunks_and_one_mib_body(gateway):
    port, _ = gateway
    big = body(padding="p" * (1 << 20))
    assert len(big) > 1 << 20
    chunks = [big[i:i + 64 * 1024] for i in range(0, len(big), 64 * 1024)]
    msgs = [ep.ProcessingRequest(request_headers=headers_msg(),
                                 protocol_config=ep.ProtocolConfiguration(request_body_mode=PM.FULL_DUPLEX_STREAMED))]
    msgs += [ep.ProcessingRequest(request_body=ep.HttpBody(body=c, end_of_stream=(i == len(chunks) - 1)))
             for i, c in enumerate(chunks)]
    msgs.append(ep.ProcessingRequest(response_headers=headers_msg(path="/", extra=[(":status", "200")])))
    out = run(port, msgs)
    kinds = [r.WhichOneof("response") for r in out]
    # Headers are held until the body is known, then answered with the target.
    assert kinds[0] == "request_headers" and kinds[-1] == "response_headers"
    assert set(kinds[1:-1]) == {"request_body"}
    assert "target-pod" in set_headers(out[0].request_headers.response)
    echoed = b"".join(r.request_body.response.body_mutation.streamed_response.body for r in out[1:-1])
    assert echoed == big
    eos = [r.request_body.response.body_mutation.streamed_response.end_of_stream for r in out[1:-1]]
    assert eos[-1] and not any(eos[:-1])


def test_full_duplex_body_over_limit_is_413(gateway):
    port, _ = gateway
    chunk = b"x" * (1 << 20)
    msgs = [ep.ProcessingRequest(request_headers=headers_msg(),
                                 protocol_config=ep.ProtocolConfiguration(request_body_mode=PM.FULL_DUPLEX_STREAMED))]
    msgs += [ep.ProcessingRequest(request_body=ep.HttpBody(body=chunk)) for _ in range(4)]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        it = ep_grpc.ExternalProcessorStub(ch).Process(iter(msgs), timeout=10)
        first = next(it)
        assert first.WhichOneof("response") == "immediate_response"
        assert first.immediate_response.status.code == 413
        assert json.loads(first.immediate_response.body)["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("payload,status,code", [
    (body(model="missing"), 404, "model_not_found"),
    (b"{not json", 400, "invalid_json"),
    (b'{"model": ["a"], "messages": []}', 400, "invalid_type"),
    (b'{"messages": []}', 400, "missing_model"),
])
def test_immediate_errors(gateway, payload, status, code):
    port, _ = gateway
    out = run(port, [ep.ProcessingRequest(request_headers=headers_msg()),
                     ep.ProcessingRequest(request_body=ep.HttpBody(body=payload, end_of_stream=True))])
    ir = out[-1].immediate_response
    assert ir.status.code == status
    err = json.loads(ir.body)["error"]
    assert err["code"] == code and set(err) == {"message", "type", "param", "code"}
    hdrs = {o.header.key: o.header.raw_value.decode() for o in ir.headers.set_headers}
    assert hdrs["content-type"] == "application/json"


def test_models_answered_from_registry(gateway):
    port, _ = gateway
    out = run(port, [ep.ProcessingRequest(request_headers=headers_msg(path="/v1/models", method="GET", eos=True))])
    ir = out[0].immediate_response
    assert ir.status.code == 200
    assert json.loads(ir.body)["data"][0]["id"] == "tiny"


def test_out_of_order_message_gets_a_status(gateway):
    port, _ = gateway
    with pytest.raises(grpc.RpcError) as e:
        run(port, [ep.ProcessingRequest(response_body=ep.HttpBody(body=b"x"))])
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "unexpected response_body" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        run(port, [ep.ProcessingRequest()])
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def raw_call(port, method, payload):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        f = ch.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        return f(payload, timeout=5)


def test_invalid_protobuf_unknown_method_and_oversize(gateway):
    port, _ = gateway
    with pytest.raises(grpc.RpcError) as e:
        raw_call(port, "/envoy.service.ext_proc.v3.ExternalProcessor/Process", b"\xff\xff\xff")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        raw_call(port, "/no.Such/Method", b"")
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as e:
        raw_call(port, "/envoy.service.ext_proc.v3.ExternalProcessor/Process", b"\x00" * (3 << 20))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Health: SERVING for "" and for the ext_proc service, NOT_FOUND otherwise.
    assert raw_call(port, "/grpc.health.v1.Health/Check", b"") == b"\x08\x01"
    name = b"envoy.service.ext_proc.v3.ExternalProcessor"
    assert raw_call(port, "/grpc.health.v1.Health/Check", b"\x0a" + bytes([len(name)]) + name) == b"\x08\x01"
    with pytest.raises(grpc.RpcError) as e:
        raw_call(port, "/grpc.health.v1.Health/Check", b"\x0a\x03abc")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


class RawH2:
    """A hand-driven HTTP/2 client for frames grpcio would never send."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()

    def flush(self):
        self.sock.sendall(self.conn.data_to_send())

    def open(self, path="/envoy.service.ext_proc.v3.ExternalProcessor/Process", extra=()):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", path),
                                     (":authority", "gw"), ("content-type", "application/grpc"), ("te", "trailers")]
                               + list(extra))
        self.flush()
        return sid

    def send(self, sid, data, end=False):
        self.conn.send_data(sid, data, end_stream=end)
        self.flush()

    def collect(self, sids, timeout=5):
        """Reads until every stream in `sids` ended; returns {sid: (data, trailers, reset)}."""
        res = {s: [b"", {}, None] for s in sids}
        done = set()
        self.sock.settimeout(timeout)
        while done != set(sids):
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            for ev in self.conn.receive_data(chunk):
                sid = getattr(ev, "stream_id", None)
                if sid not in res:
                    continue
                if isinstance(ev, h2.events.DataReceived):
                    res[sid][0] += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, (h2.events.TrailersReceived, h2.events.ResponseReceived)):
                    hs = dict(ev.headers)
                    if "grpc-status" in hs:
                        res[sid][1] = hs
                        done.add(sid)
                elif isinstance(ev, h2.events.StreamReset):
                    res[sid][2] = ev.error_code
                    done.add(sid)
                elif isinstance(ev, h2.events.StreamEnded):
                    done.add(sid)
            self.flush()
        return res

    def collect_raw(self, sid, timeout=5):
        """Reads frames without h2's connection state machine (which stops at
        GOAWAY): returns (data, headers) of one stream once it ended."""
        import hpack
        import hyperframe.frame as hf
        dec = hpack.Decoder()
        buf, data, headers = b"", b"", {}
        self.sock.settimeout(timeout)
        while True:
            while len(buf) >= 9:
                frame, length = hf.Frame.parse_frame_header(memoryview(buf[:9]))
                if len(buf) < 9 + length:
                    break
                frame.parse_body(memoryview(buf[9:9 + length]))
                buf = buf[9 + length:]
                if isinstance(frame, hf.HeadersFrame):
                    hs = dict((k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v)
                              for k, v in dec.decode(frame.data))
                    if frame.stream_id == sid:
                        headers.update(hs)
                        if "END_STREAM" in frame.flags:
                            return data, headers
                elif isinstance(frame, hf.DataFrame) and frame.stream_id == sid:
                    data += frame.data
                    if "END_STREAM" in frame.flags:
                        return data, headers
            chunk = self.sock.recv(65536)
            if not chunk:
                return data, headers
            buf += chunk

    def close(self):
        self.sock.close()


def grpc_frame(msg, flag=0):
    return struct.pack(">BI", flag, len(msg)) + msg


def test_malformed_frames_fail_their_stream_only(gateway):
    port, _ = gateway
    c = RawH2(port)
    good_req = ep.ProcessingRequest(request_headers=headers_msg()).SerializeToString()
    # 1. compressed flag without support, 2. bad flag, 3. stream ends inside a message,
    # 4. a healthy stream with its message split across three DATA frames, next to them.
    s_comp, s_flag, s_trunc, s_good = c.open(), c.open(), c.open(), c.open()
    c.send(s_comp, grpc_frame(good_req, flag=1), end=True)
    c.send(s_flag, grpc_frame(good_req, flag=7), end=True)
    c.send(s_trunc, grpc_frame(good_req)[:-3], end=True)
    framed = grpc_frame(good_req)
    c.send(s_good, framed[:3])
    c.send(s_good, framed[3:10])
    c.send(s_good, framed[10:])
    body_req = ep.ProcessingRequest(request_body=ep.HttpBody(body=body(), end_of_stream=True)).SerializeToString()
    # Two messages in one DATA frame after that.
    c.send(s_good, grpc_frame(body_req) + grpc_frame(
        ep.ProcessingRequest(response_headers=headers_msg(path="/")).SerializeToString()), end=True)
    res = c.collect([s_comp, s_flag, s_trunc, s_good])
    assert res[s_comp][1]["grpc-status"] == "12"  # UNIMPLEMENTED: compression
    assert "compress" in res[s_comp][1]["grpc-message"]
    assert res[s_flag][1]["grpc-status"] == "13"
    assert res[s_trunc][1]["grpc-status"] == "13"
    assert res[s_good][1]["grpc-status"] == "0"
    # Three length-prefixed responses came back on the healthy stream.
    data, replies = res[s_good][0], []
    while data:
        flag, n = struct.unpack(">BI", data[:5])
        replies.append(ep.ProcessingResponse.FromString(data[5:5 + n]))
        data = data[5 + n:]
    assert [r.WhichOneof("response") for r in replies] == ["request_headers", "request_body", "response_headers"]
    c.close()
    # And the server still serves new connections.
    assert raw_call(port, "/grpc.health.v1.Health/Check", b"") == b"\x08\x01"


def test_grpc_timeout_and_wrong_content_type(gateway):
    port, _ = gateway
    c = RawH2(port)
    s_deadline = c.open(extra=[("grpc-timeout", "50m")])
    c.send(s_deadline, grpc_frame(ep.ProcessingRequest(request_headers=headers_msg()).SerializeToString()))
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", "/x/Y"),
                              (":authority", "gw"), ("content-type", "text/plain")], end_stream=True)
    c.flush()
    res = c.collect([s_deadline, sid])
    assert res[s_deadline][1]["grpc-status"] == "4"  # DEADLINE_EXCEEDED
    assert res[sid][1][":status"] == "415"
    c.close()


def test_many_concurrent_streams_on_one_connection(gateway):
    port, _ = gateway
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = ep_grpc.ExternalProcessorStub(ch)
        calls = [stub.Process(iter([ep.ProcessingRequest(request_headers=headers_msg()),
                                    ep.ProcessingRequest(request_body=ep.HttpBody(body=body(), end_of_stream=True))]),
                              timeout=10) for _ in range(200)]
        for call in calls:
            out = list(call)
            assert "target-pod" in set_headers(out[1].request_body.response)


def test_reset_flood_from_a_trusted_peer_does_not_drop_the_connection(gateway):
    # nghttp2's default limit (burst 1000, 33/s) would answer this with GOAWAY.
    port, _ = gateway
    c = RawH2(port)
    for _ in range(3000):
        sid = c.open()
        c.conn.reset_stream(sid)
    c.flush()
    sid = c.open(path="/grpc.health.v1.Health/Check")
    c.send(sid, grpc_frame(b""), end=True)
    res = c.collect([sid], timeout=10)
    assert res[sid][1]["grpc-status"] == "0"
    assert res[sid][0][5:] == b"\x08\x01"
    c.close()


def test_keepalive_pings_and_closes_a_silent_peer():
    import hyperframe.frame as hf
    port, p = start_gateway("models: []\n", "--keepalive", "0.2", "--keepalive-timeout", "0.5")
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        # Client preface + empty SETTINGS, then silence: never ack anything.
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + hf.SettingsFrame(0).serialize())
        buf, kinds = b"", []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break  # the server closed the connection
            buf += chunk
            while len(buf) >= 9:
                frame, length = hf.Frame.parse_frame_header(memoryview(buf[:9]))
                if len(buf) < 9 + length:
                    break
                buf = buf[9 + length:]
                kinds.append(type(frame).__name__)
        assert "PingFrame" in kinds
        assert kinds[-1] == "GoAwayFrame"
        s.close()
    finally:
        p.stop()

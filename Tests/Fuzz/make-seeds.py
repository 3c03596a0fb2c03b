#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora into Tests/Fuzz/corpus/<target>/
(committed; rerun after a protocol change). Seeds are real inputs: the
ext_proc captures of ExtProcProtoTests, the vLLM /metrics capture of
PodMetricsTests, the pods file of docs/pods-file.md, users-file records as docs/limits.md shows them, and frames built with
the protocols' documented layouts (an HTTP/2 client stream made with the
`h2` library carrying a real ext_proc message)."""
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    captures = os.path.join(ROOT, "Tests", "ExtProcProtoTests", "Inputs")
    extproc = []
    for f in sorted(os.listdir(captures)):
        data = open(os.path.join(captures, f), "rb").read()
        extproc.append(data)
        write("extproc-request", f, data)

    # HTTP/2: a client preface, SETTINGS, a gRPC request on stream 1 with one ext_proc message per DATA frame.
    import h2.config
    import h2.connection
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", "/envoy.service.ext_proc.v3.ExternalProcessor/Process"),
                          (":authority", "switchboard"), ("content-type", "application/grpc"), ("te", "trailers")])
    for m in extproc:
        conn.send_data(1, b"\x00" + struct.pack(">I", len(m)) + m)
    conn.end_stream(1)
    stream = conn.data_to_send()
    write("h2-grpc-server", "preface-and-stream", b"\x00\x40" + stream)                       # even: raw bytes as given
    settings = 24 + 9 + int.from_bytes(stream[24:27], "big")      # the preface, then h2's own SETTINGS frame
    write("h2-grpc-server", "stream-after-preface", b"\x01\x08" + stream[settings:])

    bodies = {
        0: '{"model":"tiny","messages":[{"role":"system","content":"be terse"},{"role":"user","content":"hello"}],"stream":true,'
           '"stream_options":{"include_usage":true},"max_tokens":16}',
        1: '{"model":"tiny","prompt":["a b c",[1,2,3]],"max_tokens":8,"user":"alice"}',
        2: '{"model":"tiny","input":["one","two"]}',
        3: '{"model":"tiny","input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]}],"max_output_tokens":4}',
        4: '{"model":"tiny","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}',
    }
    for k, b in bodies.items():
        write("openai-request", f"endpoint-{k}", bytes([k]) + b.encode())
    write("openai-request", "usage-response", bytes([0]) + b'{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}')

    sse = ('data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
           'data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":12,"total_tokens":15,"completion_tokens":3}}\n\n'
           'data: [DONE]\n\n')
    write("sse-usage", "stream-with-usage", b"\x07" + sse.encode())
    write("sse-usage", "crlf", b"\x01" + sse.replace("\n", "\r\n").encode())

    page = open(os.path.join(ROOT, "Tests", "PodMetricsTests", "Inputs", "vllm-0.32-cpu.idle-after-load.metrics.txt"), "rb").read()
    write("prometheus", "vllm-0.32-cpu", page)
    write("prometheus", "v0-names", 'vllm:num_requests_running{model_name="a"} 2\nvllm:gpu_cache_usage_perc{model_name="a"} 0.25\n'
                                    'vllm:time_per_output_token_seconds_bucket{model_name="a",le="0.1"} 1\n'
                                    'vllm:time_per_output_token_seconds_bucket{model_name="a",le="+Inf"} 2\n'
                                    'vllm:time_per_output_token_seconds_count{model_name="a"} 2\n')

    doc = open(os.path.join(ROOT, "docs", "pods-file.md")).read()
    write("pods-file", "docs-example", doc.split("```yaml\n", 1)[1].split("```", 1)[0])
    write("users-file", "records", '[\n  {"name": "alice", "rpm": 50, "tpm": 10000},\n  {"name": "bob", "rpm": 0},\n  {"name": "carol"}\n]\n')
    write("users-file", "unicode-and-escapes", '[{"name": "\\u00e9l\\"ise\\n", "rpm": 1, "tpm": 2}]')
    write("pods-file", "flow", "models: [{name: m, endpoints: ['127.0.0.1:8000', {address: '[::1]:9', metricsPort: 9100}]}]\n")

    def frame(magic, op, rid, body, status=0, deadline=0):
        return struct.pack("<IIHHIQ", magic, len(body), op, status, rid, deadline) + body

    def keys(n, seed=1):
        return struct.pack("<I", n) + b"".join(struct.pack("<QQ", seed * 7919 + i, i) for i in range(n))

    agent = 0x564B4253
    s = (frame(agent, 1, 0, struct.pack("<II", 1, 4096)) + frame(agent, 2, 1, struct.pack("<I", 1000) + keys(3))
         + frame(agent, 3, 2, struct.pack("<Q", 1)) + frame(agent, 5, 3, struct.pack("<I", 0) + keys(2))
         + frame(agent, 6, 4, struct.pack("<Q", 2)) + frame(agent, 7, 5, keys(4)) + frame(agent, 8, 6, keys(1))
         + frame(agent, 9, 7, keys(1)) + frame(agent, 10, 8, b"") + frame(agent, 4, 9, struct.pack("<Q", 3)))
    write("kv-agent-protocol", "session", b"\x02" + s)

    l2 = 0x324C4253

    def crc32c(data):
        crc = 0xFFFFFFFF
        for b in data:
            crc ^= b
            for _ in range(8):
                crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        return crc ^ 0xFFFFFFFF

    blocks = [bytes((i * 31 + j) & 0xFF for j in range(64)) for i in range(3)]
    put = struct.pack("<I", 3) + b"".join(struct.pack("<QQQI", 7919 + i, i, crc32c(b), len(b)) + b for i, b in enumerate(blocks))
    s = (frame(l2, 1, 1, put) + frame(l2, 2, 2, keys(4)) + frame(l2, 3, 3, keys(3)) + frame(l2, 4, 4, keys(1))
         + frame(l2, 5, 5, b"") + frame(l2, 2, 6, keys(2), deadline=50))
    write("kv-l2-protocol", "session", b"\x03" + s)
    write("kv-l2-protocol", "put-body", b"\x01" + put)
    for t in sorted(os.listdir(OUT)):
        print(f"{t}: {len(os.listdir(os.path.join(OUT, t)))} seeds")


if __name__ == "__main__":
    main()

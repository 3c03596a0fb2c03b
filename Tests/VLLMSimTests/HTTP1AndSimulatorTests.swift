import EventLoop
import Foundation
@testable import HTTP1
import Testing
@testable import VLLMSim

@Suite struct HTTP1ParserTests {
    @Test func contentLengthChunkedAndPipelined() throws {
        var p = HTTP1RequestParser()
        let raw = "POST /a HTTP/1.1\r\nContent-Length: 3\r\nX-Y: z\r\n\r\nabc"
            + "POST /b?q=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3;ext=1\r\nllo\r\n0\r\n\r\n"
            + "GET /c HTTP/1.1\r\n\r\n"
        let bytes = Array(raw.utf8)
        var got: [HTTP1Request] = []
        for b in bytes { got += try p.feed([b][...]) }  // one byte at a time
        #expect(got.map(\.path) == ["/a", "/b", "/c"])
        #expect(got[0].body == Array("abc".utf8) && got[0].header("x-y") == "z")
        #expect(got[1].body == Array("hello".utf8))
        #expect(got[2].method == "GET" && got[2].body.isEmpty)
    }

    @Test func malformedAndOversize() {
        var p = HTTP1RequestParser()
        #expect(throws: HTTP1RequestParser.Failure.self) { try p.feed(Array("NOPE\r\n\r\n".utf8)[...]) }
        var q = HTTP1RequestParser(maxBodyBytes: 2)
        #expect(throws: HTTP1RequestParser.Failure.bodyTooLarge) { try q.feed(Array("POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\n".utf8)[...]) }
        var r = HTTP1RequestParser(maxHeaderBytes: 8)
        #expect(throws: HTTP1RequestParser.Failure.headersTooLarge) { try r.feed(Array("GET /aaaaaaaaaaaa".utf8)[...]) }
    }
}

/// Blocking loopback client for the simulator tests.
func exchange(port: Int, _ request: String) throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    #expect(rc == 0)
    let req = Array(request.utf8)
    _ = req.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

@Suite struct SimulatedPodTests {
    @Test func servesVLLMShapesAndV1MetricNames() throws {
        let group = try EventLoopGroup(count: 1)
        var cfg = SimulatorConfiguration()
        cfg.models = ["tiny"]
        cfg.defaultMaxTokens = 3
        cfg.name = "pod-a"
        let server = try HTTP1Server(address: .tcp(host: "127.0.0.1", port: 0), group: group,
                                     handler: SimulatedPod(configuration: cfg).handler)
        group.start()
        defer { group.stopAll(); group.join() }
        let port = try #require(server.listener.boundPort)

        let chat = #"{"model":"tiny","messages":[{"role":"user","content":"hello world"}],"stream":true,"stream_options":{"include_usage":true}}"#
        let s = try exchange(port: port, "POST /v1/chat/completions HTTP/1.1\r\nconnection: close\r\ncontent-length: \(chat.utf8.count)\r\n\r\n\(chat)")
        #expect(s.contains("x-vllm-sim-pod: pod-a"))
        #expect(s.contains(#""delta":{"role":"assistant","content":""}"#))
        #expect(s.contains(#""choices":[],"usage":{"prompt_tokens":6,"total_tokens":9,"completion_tokens":3"#))
        #expect(s.contains("data: [DONE]"))

        let bad = #"{"model":"other","messages":[]}"#
        let e = try exchange(port: port, "POST /v1/chat/completions HTTP/1.1\r\nconnection: close\r\ncontent-length: \(bad.utf8.count)\r\n\r\n\(bad)")
        #expect(e.hasPrefix("HTTP/1.1 404"))
        #expect(e.contains(#""type":"NotFoundError""#))

        let m = try exchange(port: port, "GET /metrics HTTP/1.1\r\nconnection: close\r\n\r\n")
        for name in ["vllm:num_requests_running{engine=\"0\",model_name=\"tiny\"} 0.0",
                     "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:prefix_cache_queries_total",
                     "vllm:prefix_cache_hits_total", "vllm:generation_tokens_total{engine=\"0\",model_name=\"tiny\"} 3.0",
                     "vllm:time_to_first_token_seconds_bucket", "vllm:e2e_request_latency_seconds_count"] {
            #expect(m.contains(name), "missing \(name)")
        }
    }

    @Test func engineTimingOverHTTPReusesPrefixesAndRejectsOverlongRequests() throws {
        let group = try EventLoopGroup(count: 1)
        var engine = EngineConfiguration(profile: .h100Llama3_8B)
        engine.numBlocks = 64
        var cfg = SimulatorConfiguration()
        cfg.timing = .engine(engine, speed: 100)
        cfg.defaultMaxTokens = 4
        let server = try HTTP1Server(address: .tcp(host: "127.0.0.1", port: 0), group: group,
                                     handler: SimulatedPod(configuration: cfg, loop: group.loops[0]).handler)
        group.start()
        defer { group.stopAll(); group.join() }
        let port = try #require(server.listener.boundPort)
        let shared = words(200, from: 1)
        for i in 0..<2 {
            let body = #"{"model":"tiny","prompt":"\#(shared) \#(words(5, from: 10 + i))"}"#
            let r = try exchange(port: port, "POST /v1/completions HTTP/1.1\r\nconnection: close\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)")
            #expect(r.hasPrefix("HTTP/1.1 200"))
            #expect(r.contains(#""usage":{"prompt_tokens":206,"total_tokens":210,"completion_tokens":4"#))
        }
        let page = PromPage(try exchange(port: port, "GET /metrics HTTP/1.1\r\nconnection: close\r\n\r\n"))
        #expect(page["vllm:prefix_cache_hits_total"] == 192)  // 201 shared tokens: 12 full blocks of 16
        #expect(page["vllm:prefix_cache_queries_total"] == 412)
        let long = #"{"model":"tiny","prompt":"\#(words(1100, from: 3))","max_tokens":8}"#
        let r = try exchange(port: port, "POST /v1/completions HTTP/1.1\r\nconnection: close\r\ncontent-length: \(long.utf8.count)\r\n\r\n\(long)")
        #expect(r.hasPrefix("HTTP/1.1 400"))
        #expect(r.contains("maximum context length is 1024 tokens"))
    }
}

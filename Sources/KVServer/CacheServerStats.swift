import KVProtocol
import Metrics

/// A cache server's counters, read off its loop, in two renderings.
struct CacheServerStats {
    let store: CacheStoreStats
    let slots: Int
    let slotBytes: Int
    let connections: Int
    let requests: UInt64
    let errors: UInt64
    let deadlineMisses: UInt64
    let durations: [(String, Histogram)]
    let rdma: String

    init(_ core: CacheServerCore) {
        store = core.store.stats
        slots = core.store.slots
        slotBytes = core.store.slotBytes
        connections = core.connectionCount.withLock { $0 }
        requests = core.requests.value
        errors = core.errors.value
        deadlineMisses = core.deadlineMisses.value
        durations = CacheProtocol.Op.allCases.map { ("\($0)", core.opDurations[$0]!) }
        rdma = "\(core.rdma)"
    }

    var json: String {
        let s = store
        return """
        {"slots":\(slots),"slot_bytes":\(slotBytes),"capacity_bytes":\(slots * slotBytes),"blocks":\(s.blocks),\
        "bytes_used":\(s.bytesUsed),"hits":\(s.hits),"misses":\(s.misses),"puts":\(s.puts),"rejected":\(s.rejected),\
        "corrupt":\(s.corrupt),"evictions":\(s.evictions),"deletes":\(s.deletes),"bytes_in":\(s.bytesIn),\
        "bytes_out":\(s.bytesOut),"connections":\(connections),"requests":\(requests),"errors":\(errors),\
        "deadline_exceeded":\(deadlineMisses),"data_path":"tcp","rdma":\(JSONText.quote(rdma))}
        """
    }

    var prometheus: String {
        let s = store
        var w = PrometheusWriter()
        func metric(_ name: String, _ kind: PrometheusWriter.Kind, _ help: String, _ v: Int) {
            w.single("switchboard_kv_server_\(name)", kind, help: help, v)
        }
        metric("hits_total", .counter, "Blocks returned by GET.", s.hits)
        metric("misses_total", .counter, "GETs that stopped at a block this server does not hold (or held corrupt).", s.misses)
        metric("puts_total", .counter, "Blocks stored.", s.puts)
        metric("rejected_total", .counter, "Blocks refused on PUT (checksum mismatch, larger than a slot, no slot free).", s.rejected)
        metric("corrupt_total", .counter, "Stored blocks found not to match their checksum when read (dropped, answered as a miss).", s.corrupt)
        metric("evictions_total", .counter, "Blocks evicted by the watermark policy.", s.evictions)
        metric("deletes_total", .counter, "Blocks removed by DELETE.", s.deletes)
        metric("bytes_in_total", .counter, "Block bytes stored.", s.bytesIn)
        metric("bytes_out_total", .counter, "Block bytes returned.", s.bytesOut)
        metric("requests_total", .counter, "Protocol requests handled.", Int(requests))
        metric("errors_total", .counter, "Protocol requests refused (malformed, unknown op, broken stream).", Int(errors))
        metric("deadline_exceeded_total", .counter, "Requests that waited in the server past their timeout.", Int(deadlineMisses))
        metric("blocks", .gauge, "Blocks stored.", s.blocks)
        metric("used_bytes", .gauge, "Bytes of stored blocks.", s.bytesUsed)
        metric("capacity_bytes", .gauge, "Bytes the slot pool holds at most.", slots * slotBytes)
        metric("slot_bytes", .gauge, "Bytes per slot (the largest block).", slotBytes)
        metric("connections", .gauge, "Agent connections.", connections)
        w.family("switchboard_kv_server_request_duration_seconds", .histogram,
                 help: "The server's time per protocol request, by op (decode to reply queued).")
        for (op, h) in durations { w.histogram("switchboard_kv_server_request_duration_seconds", h.snapshot, before: "op=\"\(op)\"") }
        return w.text
    }
}

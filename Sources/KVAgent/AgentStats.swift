import EventLoop
import Foundation
import HostMemory
import KVCache
import Metrics
import Synchronization

/// A copy of the agent's counters and their two renderings.
struct AgentStats: Sendable {
    var store: BlockStoreStats
    var pages: Int
    var pageSize: Int
    var policy: String
    var connections = 0
    var requests = 0
    var errors = 0
    /// Request handling time per op (rendered as one histogram family).
    var durations: [(String, Histogram)] = []

    var json: String {
        let s = store, page = pageSize
        return """
        {"page_size":\(page),"pages":\(pages),"pages_used":\(s.pagesUsed),"pages_touched":\(s.pagesTouched),\
        "hits":\(s.hits),"misses":\(s.misses),"puts":\(s.puts),"evictions":\(s.evictions),"expired":\(s.expired),\
        "bytes_in":\(s.puts * page),"bytes_out":\(s.hits * page),\
        "reservations":\(s.reservations),"leases":\(s.leases),"connections":\(connections),\
        "requests":\(requests),"errors":\(errors),"policy":"\(policy)"}
        """
    }

    var prometheus: String {
        let s = store, page = pageSize
        var w = PrometheusWriter()
        func metric(_ name: String, _ kind: PrometheusWriter.Kind, _ help: String, _ v: Int) {
            w.single("switchboard_kv_\(name)", kind, help: help, v)
        }
        metric("l1_hits_total", .counter, "Blocks served from L1 (longest-prefix gets).", s.hits)
        metric("l1_misses_total", .counter, "Gets that stopped at a block L1 does not hold.", s.misses)
        metric("l1_puts_total", .counter, "Blocks stored in L1.", s.puts)
        metric("l1_evictions_total", .counter, "Blocks evicted from L1 to make room.", s.evictions)
        metric("l1_bytes_in_total", .counter, "Bytes of blocks stored in L1.", s.puts * page)
        metric("l1_bytes_out_total", .counter, "Bytes of blocks read from L1.", s.hits * page)
        metric("expired_total", .counter, "Reservations and leases reclaimed after their deadline.", s.expired)
        metric("requests_total", .counter, "Protocol requests handled.", requests)
        metric("errors_total", .counter, "Protocol requests refused.", errors)
        metric("l1_pages", .gauge, "Pages (blocks) the L1 pool holds at most.", pages)
        metric("l1_pages_used", .gauge, "Pages holding a stored block.", s.pagesUsed)
        metric("l1_page_bytes", .gauge, "Bytes per page (block).", page)
        metric("reservations", .gauge, "Puts reserved and not yet committed.", s.reservations)
        metric("leases", .gauge, "Gets pinning pages.", s.leases)
        metric("connections", .gauge, "Engine connections.", connections)
        w.family("switchboard_kv_request_duration_seconds", .histogram,
                 help: "The agent's time per protocol request, by op (decode, store work, reply; block data moves in shared memory, not here).")
        for (op, h) in durations { w.histogram("switchboard_kv_request_duration_seconds", h.snapshot, before: "op=\"\(op)\"") }
        return w.text
    }
}

import EventLoop
import Foundation
import HostMemory
import KVCache
import KVL2Client
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
    /// The L2 tier's counters, members (id, in the ring) and write queue, when configured.
    var l2: L2Stats?
    var l2Members: [(String, Bool)] = []
    var l2Queued = 0

    var json: String {
        let s = store, page = pageSize
        return """
        {"page_size":\(page),"pages":\(pages),"pages_used":\(s.pagesUsed),"pages_touched":\(s.pagesTouched),\
        "hits":\(s.hits),"misses":\(s.misses),"puts":\(s.puts),"evictions":\(s.evictions),"expired":\(s.expired),\
        "bytes_in":\(s.puts * page),"bytes_out":\(s.hits * page),\
        "reservations":\(s.reservations),"leases":\(s.leases),"connections":\(connections),\
        "requests":\(requests),"errors":\(errors),"policy":"\(policy)"\(l2JSON)}
        """
    }

    private var l2JSON: String {
        guard let l = l2 else { return "" }
        let members = l2Members.map { #"{"member":"\#($0.0)","up":\#($0.1)}"# }.joined(separator: ",")
        return """
        ,"l2":{"hits":\(l.hits),"misses":\(l.misses),"failovers":\(l.failovers),"timeouts":\(l.timeouts),\
        "errors":\(l.errors),"corrupt":\(l.corrupt),"writes_queued":\(l.writesQueued),"writes_dropped":\(l.writesDropped),\
        "blocks_written":\(l.blocksWritten),"write_failures":\(l.writeFailures),"write_queue":\(l2Queued),\
        "members_up":\(l.membersUp),"ring_changes":\(l.ringChanges),"members":[\(members)]}
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
        if let l = l2 {
            metric("l2_hits_total", .counter, "Blocks read from L2 into L1 after an L1 miss (GET and PREFETCH; EXISTS answers are not counted).", l.hits)
            metric("l2_misses_total", .counter, "L2 lookups that stopped short of the keys asked.", l.misses)
            metric("l2_failovers_total", .counter, "L2 calls re-sent to the next replica after a miss, error or timeout.", l.failovers)
            metric("l2_timeouts_total", .counter, "L2 calls that got no reply within their deadline.", l.timeouts)
            metric("l2_errors_total", .counter, "L2 calls that failed (connection, refusal, malformed reply).", l.errors)
            metric("l2_corrupt_total", .counter, "Blocks read from L2 whose bytes did not match their checksum (treated as misses).", l.corrupt)
            metric("l2_writes_queued_total", .counter, "Blocks queued to be written behind to L2.", l.writesQueued)
            metric("l2_writes_dropped_total", .counter, "Blocks not written to L2 because the queue was full or no member was up.", l.writesDropped)
            metric("l2_blocks_written_total", .counter, "Block copies L2 members acknowledged (each replica counts).", l.blocksWritten)
            metric("l2_write_failures_total", .counter, "Block copies L2 members did not store (error, timeout, refusal).", l.writeFailures)
            metric("l2_write_queue_blocks", .gauge, "Blocks waiting to be written to L2.", l2Queued)
            metric("l2_members_up", .gauge, "L2 members in the ring (answering health probes).", l.membersUp)
            w.family("switchboard_kv_l2_member_up", .gauge, help: "1 when the L2 member is in the ring.")
            for (m, up) in l2Members { w.sample("switchboard_kv_l2_member_up", labels: "member=\"\(m)\"", up ? 1 : 0) }
        }
        w.family("switchboard_kv_request_duration_seconds", .histogram,
                 help: "The agent's time per protocol request, by op (decode, store work, reply; block data moves in shared memory, not here).")
        for (op, h) in durations { w.histogram("switchboard_kv_request_duration_seconds", h.snapshot, before: "op=\"\(op)\"") }
        return w.text
    }
}

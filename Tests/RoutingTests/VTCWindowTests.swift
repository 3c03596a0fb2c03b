@testable import Routing
import Testing

@Suite struct VTCWindowTests {
    @Test func bucketsLeaveTheWindowExactlyOnceWhateverTheStepBetweenSweeps() {
        var w = VTCBasicRouter.Window(size: 5, now: 0)
        w.add(10, at: 0)
        w.add(5, at: 3)
        w.expire(now: 4)
        #expect(w.total == 15)
        w.expire(now: 5)  // second 0 leaves (5 - 0 >= 5)
        #expect(w.total == 5)
        w.add(2, at: 6)
        w.expire(now: 7)
        #expect(w.total == 7)
        w.expire(now: 8)  // second 3 leaves
        #expect(w.total == 2)
        w.add(1, at: 9)
        w.expire(now: 30)  // a long gap: everything leaves
        #expect(w.total == 0)
        w.add(4, at: 31)
        w.add(4, at: 36)  // the same ring slot, a new second: the old bucket is replaced
        #expect(w.total == 4)
    }
}

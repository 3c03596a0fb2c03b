import PodSnapshot
import Testing

@Suite struct RequestChargeTests {
    @Test func settleThenFinishReplacesTheEstimateAndReleasesOnce() {
        let load = PodLoad()
        let c = RequestCharge(load: load, tokens: 100)
        #expect(load.requests == 1 && load.tokens == 100)
        #expect(c.settle(promptTokens: 30, completionTokens: 5))
        #expect(load.tokens == 30 && load.promptTokensTotal == 30 && load.completionTokensTotal == 5)
        #expect(!c.settle(promptTokens: 30, completionTokens: 5))  // once
        c.finish()
        c.finish()
        #expect(load.requests == 0 && load.tokens == 0)
    }

    @Test func usageArrivingAfterTheReleaseOnlyGrowsTheTotals() {
        // The observer stream may report after the routing stream ended.
        let load = PodLoad()
        let c = RequestCharge(load: load, tokens: 100)
        c.finish()
        #expect(load.requests == 0 && load.tokens == 0)
        #expect(c.settle(promptTokens: 30, completionTokens: 5))
        #expect(load.requests == 0 && load.tokens == 0)
        #expect(load.promptTokensTotal == 30 && load.completionTokensTotal == 5)
    }

}

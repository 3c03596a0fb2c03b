@testable import Gateway
import Logging
import Testing

@Suite struct APIKeyStoreTests {
    @Test func parsesKeysUsersAndCommentsAndRejectsBadFiles() throws {
        let entries = try APIKeyStore.parse("""
            # team keys
            sk-alice-0001   alice
            sk-anonymous-2\t# no user

            sk-ci-bot-0003 ci
            """, path: "k")
        #expect(entries.map(\.user) == ["alice", nil, "ci"])
        for bad in ["", "# only a comment\n", "short", "sk-abcdefgh a b", "sk-dup-dup-1\nsk-dup-dup-1 x"] {
            #expect(throws: APIKeyStore.LoadError.self, "\(bad)") { try APIKeyStore.parse(bad, path: "k") }
        }
    }

    @Test func onlyTheWholeKeyMatches() throws {
        let store = APIKeyStore(entries: try APIKeyStore.parse("sk-alice-0001 alice\nsk-bob-00002 bob", path: "k"),
                                logger: Logger(label: "t"))
        #expect(store.authenticate("sk-alice-0001"[...].utf8)?.user == "alice")
        #expect(store.authenticate("sk-bob-00002"[...].utf8)?.user == "bob")
        for wrong in ["sk-alice-000", "sk-alice-00012", "", "sk-alice-0002", String(repeating: "x", count: 256 + 13)] {
            #expect(store.authenticate(wrong[...].utf8) == nil, "\(wrong)")
        }
    }

    @Test func tokensComeFromBearerOrXAPIKey() {
        #expect(APIKeyStore.token(authorization: "Bearer sk-1", apiKey: nil) == "sk-1")
        #expect(APIKeyStore.token(authorization: "bearer   sk-2", apiKey: "ignored") == "sk-2")
        #expect(APIKeyStore.token(authorization: "Basic abc", apiKey: "sk-3") == nil)
        #expect(APIKeyStore.token(authorization: nil, apiKey: "sk-3") == "sk-3")
        #expect(APIKeyStore.token(authorization: nil, apiKey: nil) == nil)
    }
}

@Suite struct ContentTypeTests {
    @Test func jsonContentTypesAreRecognisedWithoutSearching() {
        for yes in ["application/json", "Application/JSON; charset=utf-8", "application/vnd.api+json", "text/jsonl"] {
            #expect(GatewayFilter.mentionsJSON(yes), "\(yes)")
        }
        for no in ["text/plain", "application/x-www-form-urlencoded", "", "jso", "application/jsn"] {
            #expect(!GatewayFilter.mentionsJSON(no), "\(no)")
        }
    }
}

import Foundation
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

@Suite struct UpstreamErrorShapeTests {
    func obj(_ b: [UInt8]?) -> [String: Any]? {
        b.flatMap { try? JSONSerialization.jsonObject(with: Data($0)) as? [String: Any] }?["error"] as? [String: Any]
    }

    @Test func openAIShapedErrorsPassUnchangedOthersAreRewritten() {
        let openAI = Array(#"{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}"#.utf8)
        #expect(GatewayFilter.normalizedError(openAI, status: 400, requestID: "r") == nil)
        let vllm = Array(#"{"object":"error","message":"This model's maximum context length is 8192 tokens.","type":"BadRequestError","param":null,"code":400}"#.utf8)
        let v = obj(GatewayFilter.normalizedError(vllm, status: 400, requestID: "r"))
        #expect(v?["message"] as? String == "This model's maximum context length is 8192 tokens.")
        #expect(v?["type"] as? String == "invalid_request_error" && v?["code"] as? String == "upstream_error")
        let fastapi = obj(GatewayFilter.normalizedError(Array(#"{"detail":"Not Found"}"#.utf8), status: 404, requestID: "r"))
        #expect(fastapi?["message"] as? String == "Not Found")
        let text = obj(GatewayFilter.normalizedError(Array("Internal Server Error".utf8), status: 500, requestID: "r-9"))
        #expect((text?["message"] as? String)?.contains("Internal Server Error") == true)
        #expect((text?["message"] as? String)?.contains("r-9") == true && text?["type"] as? String == "api_error")
    }
}

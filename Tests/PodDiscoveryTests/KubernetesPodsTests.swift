import Foundation
@testable import PodDiscovery
import PodSnapshot
import Testing

@Suite struct KubernetesPodsTests {
    func pod(_ labels: [String: String], ip: String? = "10.0.0.5", ready: String = "True", deleting: Bool = false) -> [String: Any] {
        var meta: [String: Any] = ["name": "p", "namespace": "ns", "labels": labels]
        if deleting { meta["deletionTimestamp"] = "2026-01-01T00:00:00Z" }
        var status: [String: Any] = ["conditions": [["type": "PodScheduled", "status": "True"], ["type": "Ready", "status": ready]]]
        if let ip { status["podIP"] = ip }
        return ["metadata": meta, "status": status]
    }

    @Test func routablePodUsesTheReferenceLabels() throws {
        let e = try #require(KubernetesPods.entry(pod(["model.aibrix.ai/name": "llama", "model.aibrix.ai/port": "8080",
                                                       "model.aibrix.ai/metric-port": "9090", "model.aibrix.ai/engine": "sglang"])))
        #expect(e.key == "ns/p" && e.model == "llama")
        #expect(e.endpoint == PodEndpoint(host: "10.0.0.5", port: 8080, metricsPort: 9090, engine: "sglang"))
        let d = try #require(KubernetesPods.entry(pod(["model.aibrix.ai/name": "llama"])))
        #expect(d.endpoint == PodEndpoint(host: "10.0.0.5", port: 8000))
    }

    @Test(arguments: [
        ([String: String](), "10.0.0.5", "True", false, "no model.aibrix.ai/name label"),
        (["model.aibrix.ai/name": "m"], nil, "True", false, "no pod IP yet"),
        (["model.aibrix.ai/name": "m"], "10.0.0.5", "False", false, "not Ready"),
        (["model.aibrix.ai/name": "m"], "10.0.0.5", "True", true, "terminating"),
        (["model.aibrix.ai/name": "m", "model.aibrix.ai/port": "http"], "10.0.0.5", "True", false, "bad model.aibrix.ai/port label"),
    ] as [([String: String], String?, String, Bool, String)])
    func notRoutable(_ labels: [String: String], _ ip: String?, _ ready: String, _ deleting: Bool, _ why: String) throws {
        let e = try #require(KubernetesPods.entry(pod(labels, ip: ip, ready: ready, deleting: deleting)))
        #expect(e.endpoint == nil)
        #expect(e.notRoutableBecause == why)
    }

    @Test func modelsKeepKnownModelsWithoutReadyPods() {
        let entries = ["a/1": KubernetesPods.Entry(key: "a/1", model: "m", endpoint: PodEndpoint(host: "1.1.1.1", port: 1)),
                       "a/2": KubernetesPods.Entry(key: "a/2", model: "n", endpoint: nil, notRoutableBecause: "not Ready")]
        #expect(KubernetesPods.models(entries) == ["m": [PodEndpoint(host: "1.1.1.1", port: 1)], "n": []])
    }

    @Test func kubeconfigAndInClusterConfiguration() throws {
        let dir = NSTemporaryDirectory() + "kc-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let ca = Data("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".utf8)
        try "t0k3n\n".write(toFile: "\(dir)/token", atomically: true, encoding: .utf8)
        try ca.write(to: URL(fileURLWithPath: "\(dir)/ca.crt"))
        let yaml = """
            apiVersion: v1
            current-context: prod
            clusters:
            - name: c
              cluster: {server: "https://api.example:6443", certificate-authority-data: \(ca.base64EncodedString())}
            users:
            - name: u
              user: {tokenFile: token}
            contexts:
            - name: prod
              context: {cluster: c, user: u}
            """
        try yaml.write(toFile: "\(dir)/kubeconfig", atomically: true, encoding: .utf8)
        let k = try KubernetesConfiguration.kubeconfig(path: "\(dir)/kubeconfig")
        #expect(k.host == "api.example" && k.port == 6443 && k.caPEM == Array(ca))
        #expect(k.currentToken() == "t0k3n")
        try "rotated".write(toFile: "\(dir)/token", atomically: true, encoding: .utf8)
        #expect(k.currentToken() == "rotated")

        let ic = try KubernetesConfiguration.inCluster(environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"],
                                                       directory: dir)
        #expect(ic.host == "10.96.0.1" && ic.port == 443 && ic.currentToken() == "rotated")
        #expect(throws: KubernetesConfiguration.ConfigError.self) { try KubernetesConfiguration.inCluster(environment: [:], directory: dir) }
        try "current-context: x\n".write(toFile: "\(dir)/bad", atomically: true, encoding: .utf8)
        #expect(throws: KubernetesConfiguration.ConfigError.self) { try KubernetesConfiguration.kubeconfig(path: "\(dir)/bad") }
    }
}

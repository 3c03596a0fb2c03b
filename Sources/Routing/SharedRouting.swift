import PodSnapshot

/// Where a replica's routing state changes go when gateway replicas share
/// state (`serve --shared-state`): every prefix-index insertion and every
/// fairness charge this replica makes, so the other replicas can apply it.
/// Called on the routing path: implementations only append to a buffer
/// (the exchange itself runs on the control loop).
public protocol RoutingStateSink: Sendable {
    /// `pod` now holds `keys` (the prompt it was just sent).
    func recorded(keys: [UInt64], pod: PodEndpoint, capacity: Int?)
    /// `user` was charged `tokens` weighted tokens (negative: a refund).
    func charged(user: String, tokens: Double)
}

/// A value that belongs to one event loop, carried across threads only to be
/// used back on that loop. Reading `value` off the loop is a programming
/// error and traps; that check is what makes the `@unchecked Sendable` sound.
public struct LoopBound<Value>: @unchecked Sendable {
    public let loop: EventLoop
    private let stored: Value

    /// Wraps `value`; call on `loop`.
    public init(_ value: Value, loop: EventLoop) {
        precondition(loop.inLoop, "LoopBound created off its loop")
        self.loop = loop
        self.stored = value
    }

    /// The value; only on `loop`.
    public var value: Value {
        precondition(loop.inLoop, "LoopBound used off its loop")
        return stored
    }

    /// Runs `body` with the value on its loop: at once when already there,
    /// otherwise as a task queued to the loop.
    public func run(_ body: @escaping @Sendable (Value) -> Void) {
        if loop.inLoop { body(stored) } else { loop.execute { body(self.value) } }
    }
}

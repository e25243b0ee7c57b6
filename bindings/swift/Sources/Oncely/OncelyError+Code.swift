// Hand-written (not generated): the stable code and the message of an OncelyError, as Kotlin's
// `OncelyException.code` / `.message`. Not compiled on the machines that test oncely (no Swift
// compiler there); keep it to plain switches over the generated cases.

extension OncelyError {
    /// The stable code: `"invalid_argument"`, `"conflict"`, `"in_progress"`, `"lease_lost"`,
    /// `"storage"`, `"corrupt_store"`, `"closed"`, `"timeout"` (the core's codes, listed by
    /// `errorCodes()`), or `"handler_failed"` / `"replayed_failure"` from `Inbox.process`.
    public var code: String {
        switch self {
        case .InvalidArgument: return "invalid_argument"
        case .Conflict: return "conflict"
        case .InProgress: return "in_progress"
        case .LeaseLost: return "lease_lost"
        case .Storage: return "storage"
        case .CorruptStore: return "corrupt_store"
        case .Closed: return "closed"
        case .Timeout: return "timeout"
        case .HandlerFailed: return "handler_failed"
        case .ReplayedFailure: return "replayed_failure"
        }
    }

    /// The core's message, the same text as in Rust, Python, Node and Kotlin.
    public var message: String {
        switch self {
        case .InvalidArgument(let m), .Conflict(let m), .InProgress(let m), .LeaseLost(let m),
             .Storage(let m), .CorruptStore(let m), .Closed(let m), .Timeout(let m),
             .HandlerFailed(let m), .ReplayedFailure(let m):
            return m
        }
    }
}

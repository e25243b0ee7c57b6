// Hand-written (not generated): the stable code of an OncelyException, the same string as the
// core's `ErrorCode::as_str()`, Python's `err.code` and Node's `err.code` (without `ONCELY_`).
package dev.oncely

/**
 * The stable code of this error: `"invalid_argument"`, `"conflict"`, `"in_progress"`,
 * `"lease_lost"`, `"storage"`, `"corrupt_store"`, `"closed"`, `"timeout"` (the core's codes,
 * listed by [errorCodes]), or `"handler_failed"` / `"replayed_failure"` from `Inbox.process`.
 * The `when` is exhaustive: a variant added to the binding does not compile until it has a code.
 */
val OncelyException.code: String
    get() = when (this) {
        is OncelyException.InvalidArgument -> "invalid_argument"
        is OncelyException.Conflict -> "conflict"
        is OncelyException.InProgress -> "in_progress"
        is OncelyException.LeaseLost -> "lease_lost"
        is OncelyException.Storage -> "storage"
        is OncelyException.CorruptStore -> "corrupt_store"
        is OncelyException.Closed -> "closed"
        is OncelyException.Timeout -> "timeout"
        is OncelyException.HandlerFailed -> "handler_failed"
        is OncelyException.ReplayedFailure -> "replayed_failure"
    }

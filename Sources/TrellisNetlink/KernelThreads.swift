import Foundation

/// A serial executor with a thread of its own, for an actor whose work blocks on the kernel (netlink
/// requests, libnftables): its jobs run there, one at a time, never on Swift's cooperative pool, whose
/// few threads (two on a two-core host) must stay free. The thread ends when the executor is released.
public final class DedicatedThreadExecutor: SerialExecutor, @unchecked Sendable {
    /// The jobs waiting for the thread; shared with it, so that the thread does not keep the executor alive.
    private final class Queue: @unchecked Sendable {
        let condition = NSCondition()
        var jobs: [UnownedJob] = []
        var closed = false
    }

    private let queue = Queue()

    public init(name: String) {
        let queue = queue, executor = UnownedSerialExecutor(ordinary: self)
        let thread = Thread { Self.serve(queue, on: executor) }
        thread.name = name
        thread.start()
    }

    deinit {
        queue.condition.lock()
        queue.closed = true
        queue.condition.signal()
        queue.condition.unlock()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.condition.lock()
        queue.jobs.append(job)
        queue.condition.signal()
        queue.condition.unlock()
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }

    private static func serve(_ queue: Queue, on executor: UnownedSerialExecutor) {
        while true {
            queue.condition.lock()
            while queue.jobs.isEmpty && !queue.closed { queue.condition.wait() }
            let jobs = queue.jobs
            queue.jobs.removeAll(keepingCapacity: true)
            queue.condition.unlock()
            if jobs.isEmpty { return }
            for job in jobs { job.runSynchronously(on: executor) }
        }
    }
}

/// Runs `body` on a thread of its own and returns what it returns: blocking kernel work (a netlink dump,
/// a probe waiting for its packet) called from async code, which must not hold a cooperative thread.
public func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

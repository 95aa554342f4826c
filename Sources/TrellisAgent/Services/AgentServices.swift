import ServiceLifecycle

/// One of the agent's long-running loops as a service: cancelled when the group shuts down gracefully.
struct AgentLoop: Service, CustomStringConvertible {
    let description: String
    let body: @Sendable () async throws -> Void

    init(_ name: String, _ body: @escaping @Sendable () async throws -> Void) {
        description = name
        self.body = body
    }

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown(body)
        } catch is CancellationError {
        }
    }
}

/// A service that handles graceful shutdown itself: it finishes its work (sends what is queued, stops the
/// threads it owns) rather than being cancelled.
struct DrainingService: Service, CustomStringConvertible {
    let description: String
    let body: @Sendable () async -> Void

    init(_ name: String, _ body: @escaping @Sendable () async -> Void) {
        description = name
        self.body = body
    }

    func run() async { await body() }
}

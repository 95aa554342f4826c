import Synchronization
import TrellisPolicy

/// Compiled policy programs by what they were compiled from (each input's path and revision), so that explaining
/// flows, and the flows every host reports, compile a domain's rules once per change rather than once per question:
/// a domain with a 10,000-rule policy costs a compilation per change, then a lookup.
final class CompiledPrograms: Sendable {
    private let programs = Mutex<[String: PolicyProgram]>([:])
    private let capacity: Int

    init(capacity: Int = 64) { self.capacity = capacity }

    /// The program compiled for `key`, compiling it with `compile` the first time.
    func program(for key: String, _ compile: () -> PolicyProgram) -> PolicyProgram {
        if let known = programs.withLock({ $0[key] }) { return known }
        let compiled = compile()
        programs.withLock { programs in
            if programs.count >= capacity { programs.removeAll(keepingCapacity: true) }
            programs[key] = compiled
        }
        return compiled
    }
}

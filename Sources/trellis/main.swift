import NIOCore
import NIOPosix
import TrellisCLI

// Swift's tasks run on NIO's event loops instead of a pool of their own, so a request's hops between its socket,
// the handlers and the actors stay on one thread rather than waking another each time (blocking work keeps to
// threads made for it: the kernel threads, GRDB's queues).
NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
await TrellisCommand.runMain()

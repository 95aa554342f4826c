import Foundation
import Glibc
import Synchronization
import Testing
@testable import TrellisAgent
import TrellisModel
import TrellisNetlink
import TrellisNetlinkWire

/// A domain's resolver alone, in a namespace of the test's, asked by dig before and after its names come.
@Suite(.enabled(if: isRoot && FileManager.default.fileExists(atPath: "/usr/bin/dig"), "needs root and dig"), .serialized)
struct ResolverTests {
    /// The resolver's names as the agent would set them: nil until the desired state comes.
    final class Names: Sendable {
        let zone = Mutex<DNSZone?>(nil)
    }

    func serve(in namespace: NetworkNamespace, names: Names) throws -> NamespaceListener {
        let loopback = IPv4Address("127.0.0.1")!
        return try NamespaceListener(
            namespace: URL(fileURLWithPath: namespace.path).lastPathComponent,
            open: { [try NamespaceListener.udpSocket(port: 53, address: loopback), try DNSServer.tcpListener(address: loopback)] },
            serve: { fds, listener in DNSServer(udp: fds[0], tcp: fds[1], listener: listener) { names.zone.withLock { $0 } }.run() })
    }

    func startDig(in namespace: NetworkNamespace, _ arguments: [String]) throws -> (Process, Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        process.arguments = ["--net=\(namespace.path)", "/usr/bin/dig", "@127.0.0.1", "+time=8", "+tries=1"] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        return (process, pipe)
    }

    func finish(_ dig: (Process, Pipe)) -> String {
        let output = String(decoding: dig.1.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        dig.0.waitUntilExit()
        return output
    }

    @Test func queriesBeforeTheNamesAreHeldThenAnsweredWhileOthersAreServed() throws {
        let namespaces = Namespaces()
        let namespace = try namespaces.make("dns")
        let names = Names()
        let listener = try serve(in: namespace, names: names)
        defer { listener.stop() }
        let early = try startDig(in: namespace, ["db.red.app1"])
        let earlyTCP = try startDig(in: namespace, ["+tcp", "db"])
        Thread.sleep(forTimeInterval: 0.5)
        #expect(early.0.isRunning && earlyTCP.0.isRunning, "held while the domain's names have not come")
        // The loop is not stuck on them: a client that connects and sends half a query now is read
        // (and its bytes kept) while the held queries wait.
        let late = try startDig(in: namespace, ["+tcp", "-x", "192.168.10.4"])
        Thread.sleep(forTimeInterval: 0.2)
        var zone = DNSZone()
        zone.add(name: "db", subnet: "acme/app1/web/red", domain: "acme/app1", address: IPv4Address("192.168.10.4")!)
        names.zone.withLock { $0 = zone }
        listener.wake()
        let answers = [finish(early), finish(earlyTCP), finish(late)]
        for (answer, transport) in zip(answers.prefix(2), ["(UDP)", "(TCP)"]) {
            #expect(answer.contains("status: NOERROR") && answer.contains("192.168.10.4") && answer.contains(transport), "\(answer)")
        }
        #expect(answers[2].contains("PTR\tdb.red.app1."), "\(answers[2])")
    }

    @Test func queriesWhoseNamesNeverComeGetSERVFAIL() throws {
        let namespaces = Namespaces()
        let namespace = try namespaces.make("dns")
        let listener = try serve(in: namespace, names: Names())
        defer { listener.stop() }
        let answer = finish(try startDig(in: namespace, ["db"]))
        #expect(answer.contains("status: SERVFAIL"), "\(answer)")
    }
}

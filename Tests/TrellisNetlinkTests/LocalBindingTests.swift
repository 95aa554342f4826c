import Foundation
import Testing
@testable import TrellisAgent
import TrellisModel

/// Local bindings without a kernel: which ports they name and make, which ones a desired state shows to
/// not list yet or any more, and that the file an agent restart reads holds exactly what was bound.
struct LocalBindingTests {
    func endpoint(_ id: Int, revision: Int, kind: EndpointKind = .container) -> Endpoint {
        Endpoint(id: id, path: "acme/app/web/red/e\(id)", name: "e\(id)", subnet: "acme/app/web/red", domain: "acme/app", kind: kind,
                 host: "h1", ip: IPv4Address(UInt32(0x0A01_0100 + id)), mac: .endpoint(sequence: UInt32(id)), state: .up,
                 externalIds: [:], revision: revision, createdAt: Date(timeIntervalSince1970: 0))
    }

    func state(revision: Int, endpoints: [Endpoint]) -> DesiredState {
        DesiredState(host: "h1", revision: revision, underlayIP: nil, domains: [], endpoints: endpoints, remoteEndpoints: [], profiles: [])
    }

    @Test func portsAreNamedAndMadeFromTheirBinding() {
        let veth = LocalBinding(endpoint(41, revision: 3), domainID: 7, port: .namespace(path: "/proc/99/ns/net", interface: "net1"))
        let tap = LocalBinding(endpoint(42, revision: 3, kind: .vm), domainID: 7, port: .tap(name: "vm-disk"))
        let handover = LocalBinding(endpoint(43, revision: 3), domainID: 7, port: .handover(interface: "trh43"))
        let table = LocalBindingTable([veth, tap, handover])
        #expect(table.portName(of: endpoint(41, revision: 3)) == "trv15")
        #expect(table.portName(of: endpoint(42, revision: 3, kind: .vm)) == "vm-disk", "a VM's port is its tap")
        #expect(table.portName(of: endpoint(44, revision: 3)) == "trv18", "an endpoint without a binding keeps its id's name")

        let mac = MACAddress.endpoint(sequence: 41)
        #expect(veth.plug(mac: mac, address: nil, namespaceExists: { $0 == "/proc/99/ns/net" })
                == .veth(namespacePath: "/proc/99/ns/net", interface: "net1", mac: mac, address: nil))
        #expect(veth.plug(mac: mac, address: nil, namespaceExists: { _ in false }) == nil, "a container that is gone gets no port")
        #expect(tap.plug(mac: mac, address: nil, namespaceExists: { _ in false }) == .tap)
        #expect(handover.plug(mac: mac, address: nil, namespaceExists: { _ in true }) == nil, "only its engine can move a veth again")
    }

    /// Attached at revision 7: a desired state of revision 6 does not list it yet; one of revision 7 or
    /// later should, so when it does not the binding is in doubt (the agent asks the controller).
    @Test func aDesiredStateShowsWhichBindingsItDoesNotListAndWhichAreInDoubt() {
        let listed = endpoint(1, revision: 2), fresh = endpoint(2, revision: 7)
        let port = PortBinding.namespace(path: "/x", interface: "eth0")
        let table = LocalBindingTable([listed, fresh].map { LocalBinding($0, domainID: 5, port: port) })
        #expect(table.unlisted(in: state(revision: 6, endpoints: [listed])).map(\.endpointID) == [2])
        #expect(table.inDoubt(in: state(revision: 6, endpoints: [listed])).isEmpty)
        #expect(table.unlisted(in: state(revision: 7, endpoints: [listed, fresh])).isEmpty)
        #expect(table.inDoubt(in: state(revision: 9, endpoints: [fresh])).map(\.endpointID) == [1])
        #expect(table.inDoubt(in: state(revision: 9, endpoints: [])).map(\.endpointID) == [1, 2])
    }

    @Test func theJournalHoldsWhatWasBoundAndABadLineIsNamed() throws {
        let path = "/tmp/trellis-bindings-\(UInt32.random(in: 0...UInt32.max)).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try LocalBindingStore(path: path)
        let first = LocalBinding(endpoint(1, revision: 2), domainID: 5, port: .namespace(path: "/run/netns/c1", interface: "eth0"))
        let second = LocalBinding(endpoint(2, revision: 3, kind: .vm), domainID: 5, port: .tap(name: "trt9"))
        try store.bind(first, second)
        try store.unbind([1, 7])
        try store.bind(second)
        let journal = try String(contentsOfFile: path, encoding: .utf8)
        #expect(journal.split(separator: "\n").count == 3, "one line per change, none for what changed nothing: \(journal)")
        #expect(try LocalBindingStore(path: path).current == LocalBindingTable([second]))
        #expect(try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").count == 1, "opening compacts the journal")

        // A crash in the middle of an append leaves a torn last line, which is dropped.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(#"{"bind":{"endpointID":3,"#.utf8))
        try handle.close()
        #expect(try LocalBindingStore(path: path).current == LocalBindingTable([second]))

        try Data("{not json\n".utf8).write(to: URL(fileURLWithPath: path))
        #expect { try LocalBindingStore(path: path) } throws: { error in
            "\(error)".contains(path) && "\(error)".contains("line 1") && "\(error)".contains("move the file away")
        }
    }
}

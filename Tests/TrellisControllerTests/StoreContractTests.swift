import Foundation
import Testing
import TrellisModel
import TrellisClient
import TrellisController
import TrellisStore
import TrellisTestSupport

/// Which store a test runs against.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, etcd
    var testDescription: String { rawValue }
    /// The kinds this machine can run: etcd only where Debian's etcd-server is installed.
    static let available = allCases.filter { $0 == .sqlite || etcdInstalled }
}

/// The stores' own promises, below the registry, for SQLite and etcd alike: what a rolled-back write
/// leaves, what a read sees, what the log records.
@Suite struct StoreContractTests {
    func withStore(_ kind: StoreKind, _ body: (any Store) async throws -> Void) async throws {
        switch kind {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("trellis-store-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: directory) }
            try await body(try SQLiteStore(path: directory.appendingPathComponent("trellis.db").path))
        case .etcd:
            let etcd = try await RunningEtcd()
            defer { etcd.stop() }
            let store = try await EtcdStore(members: [etcd.clientURL])
            do {
                try await body(store)
            } catch {
                await store.close()
                throw error
            }
            await store.close()
        }
    }

    struct Abandoned: Error {}

    /// A write that read its own new object and then failed is rolled back, and its revision is used again by
    /// the next write: a read must see what that next write stored, not what the abandoned one decoded.
    @Test(arguments: StoreKind.available) func aRolledBackWriteLeavesNothingBehindItsRevision(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            await #expect(throws: Abandoned.self) {
                _ = try await store.write(actor: "t") { tx in
                    _ = try tx.insert(Enterprise(name: "acme", description: "abandoned"))
                    #expect(try tx.get(Enterprise.self, "acme")?.description == "abandoned")
                    throw Abandoned()
                }
            }
            let (absent, before) = try await store.read { (try $0.get(Enterprise.self, "acme"), try $0.currentRevision()) }
            #expect(absent == nil)
            let written = try await store.write(actor: "t") { tx in
                let written = try tx.insert(Enterprise(name: "acme", description: "kept"))
                try tx.recordChange(.created, written)
                return written
            }
            #expect(written.revision == before + 1 && written.value.revision == written.revision)
            let read = try await store.read { try $0.get(Enterprise.self, "acme") }
            #expect(read?.description == "kept" && read?.revision == written.revision)
            #expect(written.events.map(\.revision) == [written.revision])
            #expect(try await store.write(actor: "t") { try $0.get(Enterprise.self, "acme") }.value?.description == "kept")
        }
    }

    /// Every read after an update sees the update, however often the object was read before it.
    @Test(arguments: StoreKind.available) func readsFollowUpdates(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            _ = try await store.write(actor: "t") { tx in try tx.insert(Enterprise(name: "acme", description: "0")) }
            for step in 1...5 {
                #expect(try await store.read { try $0.get(Enterprise.self, "acme") }?.description == String(step - 1))
                _ = try await store.write(actor: "t") { tx in
                    var enterprise = try tx.require(Enterprise.self, "acme")
                    enterprise.description = String(step)
                    let written = try tx.update(enterprise)
                    try tx.recordChange(.updated, written)
                }
            }
            #expect(try await store.read { try $0.get(Enterprise.self, "acme") }?.description == "5")
        }
    }

    /// A change event records the object as it was stored, read back from the log as from the write.
    @Test(arguments: StoreKind.available) func changeEventsCarryTheStoredObject(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let result = try await store.write(actor: "t") { tx in
                let written = try tx.insert(Enterprise(name: "acme", description: "first"))
                try tx.recordChange(.created, written)
                var changed = written
                changed.description = "second"
                try tx.recordChange(.updated, try tx.update(changed))
                return written
            }
            let logged = try await store.read { try $0.events(afterID: 0, limit: 10, enterprise: nil) }
            #expect(logged.map { $0.decodedObject(Enterprise.self)?.description } == ["first", "second"])
            #expect(result.events.map { $0.decodedObject(Enterprise.self)?.description } == ["first", "second"])
            #expect(logged.map(\.object) == result.events.map(\.object))
            #expect(logged[0].object?["description"] == .string("first"))
        }
    }

    /// A 10,000-rule profile, about 1 MiB of JSON, is stored, replaced, read back through another controller and
    /// logged, although etcd refuses any request over 1.5 MiB (and the object and its event together are more).
    @Test(arguments: StoreKind.available) func aProfileOfTenThousandRulesIsStored(_ kind: StoreKind) async throws {
        let etcd = kind == .etcd ? try await RunningEtcd() : nil
        defer { etcd?.stop() }
        let second = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: second) }
        let store = etcd.map { "etcd:\($0.clientURL)" }
        try await withController(store: store) { a in
            let client = a.client()
            let _: Enterprise = try await client.post("/api/v1/enterprises", EnterpriseCreate(name: "acme"))
            let rules = (0..<10_000).map {
                ACLRule(action: .deny, direction: .ingress, protocol: .tcp, remote: "172.16.\($0 / 250).\($0 % 250)/32",
                        ports: [try! PortRange(1 + $0 % 60_000)])
            }
            let made: PortProfile = try await client.post("/api/v1/profiles", ProfileCreate(enterprise: "acme", name: "many", rules: rules))
            #expect(made.rules == rules)
            let update = ProfileUpdate(rules: rules.reversed(), egressRate: nil, ingressRate: nil, flowStats: false, description: nil)
            let replaced: PortProfile = try await client.put("/api/v1/profiles/acme/many", update)
            #expect(replaced.rules == rules.reversed())
            let events: [String: [Event]] = try await client.get("/api/v1/events?limit=5")
            #expect(events["items"]?.last?.decodedObject(PortProfile.self)?.rules == rules.reversed())
            guard let store else { return }
            for shared in ["admin.token", "tls"] {
                try FileManager.default.copyItem(at: a.directory.appendingPathComponent(shared), to: second.appendingPathComponent(shared))
            }
            try await withController(directory: second, store: store) { b in
                let read: PortProfile = try await b.client(token: a.adminToken).get("/api/v1/profiles/acme/many")
                #expect(read.rules == rules.reversed() && read.revision == replaced.revision)
            }
            try await client.delete("/api/v1/profiles/acme/many")
        }
    }

    /// Two stores on one etcd, as two controllers: racing for the same addresses, every claim is held once,
    /// each sees what the other wrote, and losers are retried rather than failed.
    /// What was written through one controller is read through another as soon as the write has answered, even
    /// while the second one's watch lags behind a busy first one: 32 writers, each reading its object back through
    /// the other store at once.
    @Test(.enabled(if: etcdInstalled, "needs etcd-server")) func aReadThroughAnotherControllerSeesEveryEarlierWrite() async throws {
        try await withTwoEtcdStores { first, second in
            let missed = try await withThrowingTaskGroup(of: [String].self) { group in
                for worker in 0..<32 {
                    group.addTask {
                        var missed: [String] = []
                        for index in 0..<10 {
                            let name = "w\(worker)-\(index)"
                            _ = try await first.write(actor: "t") { tx in
                                try tx.recordChange(.created, try tx.insert(Enterprise(name: name, description: nil)))
                            }
                            if try await second.read({ try $0.get(Enterprise.self, name) }) == nil { missed.append(name) }
                        }
                        return missed
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(missed.isEmpty, "\(missed.count) of 320 objects were not read back through the other store: \(missed.prefix(5))")
        }
    }

    @Test(.enabled(if: etcdInstalled, "needs etcd-server")) func twoControllersNeverHandOutAnAddressTwice() async throws {
        try await withTwoEtcdStores { first, second in
            let stores = [first, second]
            let winners = try await withThrowingTaskGroup(of: [String].self) { group in
                for worker in 0..<8 {
                    group.addTask {
                        var taken: [String] = []
                        for _ in 0..<6 {
                            let owner = "w\(worker)-\(taken.count)"
                            // The lowest free address, as IPAM takes them: every worker wants the same one.
                            let address = try await stores[worker % 2].write(actor: "t") { tx -> String in
                                guard let free = try (0..<100).first(where: { try tx.claimOwner("ip:s", "10.0.0.\($0)") == nil }) else {
                                    throw TrellisError(.conflict, "full")
                                }
                                _ = try tx.claim("ip:s", "10.0.0.\(free)", owner: owner)
                                try tx.record(.created, kind: .endpoint, path: owner, enterprise: nil, object: nil)
                                return "10.0.0.\(free)"
                            }.value
                            taken.append(address)
                        }
                        return taken
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(winners.count == 48 && Set(winners).count == 48, "an address was handed out twice: \(winners.sorted())")
            #expect(first.conflictRetries + second.conflictRetries > 0, "the workers never raced")
            // Each store has its own writes at once and the other's as its watch brings them.
            let latest = stores.map(\.mirroredRevision).max() ?? 0
            for _ in 0..<500 where stores.contains(where: { $0.mirroredRevision < latest }) { try await Task.sleep(for: .milliseconds(10)) }
            for store in stores {
                let (count, events) = try await store.read {
                    (try $0.claimCount("ip:s"), try $0.events(afterID: 0, limit: 100, enterprise: nil))
                }
                #expect(count == 48 && events.count == 48 && Set(events.map(\.id)).count == 48)
            }
        }
    }

    /// Concurrent writes through one controller share etcd transactions (the group commit), and each keeps its own
    /// events: every event stored once, under an id of its own, as the write that recorded it returned it.
    @Test(.enabled(if: etcdInstalled, "needs etcd-server")) func concurrentWritesShareTransactionsAndKeepTheirEvents() async throws {
        try await withStore(.etcd) { store in
            let returned = try await withThrowingTaskGroup(of: [Event].self) { group in
                for worker in 0..<64 {
                    group.addTask {
                        try await store.write(actor: "t") { tx in
                            _ = try tx.claim("ip:s", "10.0.0.\(worker)", owner: "w\(worker)")
                            try tx.record(.created, kind: .endpoint, path: "w\(worker)", enterprise: nil, object: nil)
                            try tx.record(.updated, kind: .endpoint, path: "w\(worker)", enterprise: nil, object: nil)
                        }.events
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(store.commits == 64 && store.commitRequests < 64, "\(store.commitRequests) requests carried 64 commits")
            for events in returned {
                #expect(events.map(\.action) == [.created, .updated] && events[1].id == events[0].id + 1
                        && events[0].path == events[1].path)
            }
            let ids = returned.flatMap { $0.map(\.id) }
            let stored = try await store.read { try $0.events(afterID: 0, limit: 1000, enterprise: nil) }
            #expect(Set(ids).count == 128 && Set(stored.map(\.id)) == Set(ids))
            #expect(Set(stored.map(\.revision)).count < 64, "writes shared revisions")
        }
    }

    /// Three controllers on one etcd fill a /21 from 48 parallel clients: every address of the subnet handed out
    /// once (2,045: all but the network, gateway and broadcast addresses), every MAC distinct, each controller
    /// listing them all, and the next create answered 409 "full" by every controller.
    @Test(.enabled(if: etcdInstalled, "needs etcd-server")) func threeControllersFillASubnetWithoutADuplicate() async throws {
        let etcd = try await RunningEtcd()
        defer { etcd.stop() }
        let store = "etcd:\(etcd.clientURL)"
        let (second, third) = (try makeTemporaryDirectory(), try makeTemporaryDirectory())
        defer { for directory in [second, third] { try? FileManager.default.removeItem(at: directory) } }
        try await withController(store: store) { a in
            for directory in [second, third] {
                for shared in ["admin.token", "tls"] {
                    try FileManager.default.copyItem(at: a.directory.appendingPathComponent(shared),
                                                     to: directory.appendingPathComponent(shared))
                }
            }
            let subnet = try await makeSubnet(a.client(), cidr: "10.80.0.0/21")
            try await withController(directory: second, store: store) { b in
                try await withController(directory: third, store: store) { c in
                    let clients = [a.client(), b.client(token: a.adminToken), c.client(token: a.adminToken)]
                    let made = try await withThrowingTaskGroup(of: [Endpoint].self) { group in
                        for worker in 0..<48 {
                            group.addTask {
                                var made: [Endpoint] = []
                                while true {
                                    let body = EndpointCreate(subnet: subnet, name: "w\(worker)-\(made.count)")
                                    do {
                                        made.append(try await clients[worker % 3].post("/api/v1/endpoints", body))
                                    } catch let error as TrellisError where error.code == .conflict {
                                        #expect(error.message.contains("full"), "\(error.message)")
                                        return made
                                    }
                                }
                            }
                        }
                        return try await group.reduce(into: []) { $0 += $1 }
                    }
                    #expect(made.count == 2045)
                    #expect(Set(made.map(\.ip)).count == made.count, "an address was handed out twice")
                    #expect(Set(made.map(\.mac)).count == made.count, "a MAC was handed out twice")
                    #expect(Set(made.map(\.id)).count == made.count, "an id was handed out twice")
                    for client in clients {
                        let listed: ListBody<Endpoint> = try await client.get("/api/v1/endpoints?subnet=\(subnet)")
                        #expect(listed.items.count == made.count)
                        let full = try await rawRequest(client, "POST", "/api/v1/endpoints",
                                                        body: #"{"subnet":"\#(subnet)","name":"one-more"}"#)
                        #expect(full.status == 409 && full.error?.error.contains("full") == true)
                    }
                }
            }
        }
    }

    /// A controller whose etcd cannot be reached does not start, and says so naming etcd and the member;
    /// a malformed etcd store setting names the field.
    @Test func anUnreachableOrMisnamedEtcdIsAClearError() async throws {
        let dead = "http://127.0.0.1:\(try RunningEtcd.freePort())"
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        for (store, words) in [("etcd:\(dead)", ["no etcd member answered", dead]), ("etcd:10.0.0.1:2379", ["--store", "http://"])] {
            let configuration = try ControllerConfiguration(listen: "127.0.0.1:0", store: store,
                                                            adminTokenFile: directory.appendingPathComponent("admin.token").path)
            await #expect {
                _ = try await Controller(configuration: configuration)
            } throws: { error in
                words.allSatisfy { "\(error)".contains($0) }
            }
        }
    }

    /// etcd goes away under a running controller: a create answers 503 with a message that names etcd (and
    /// makes nothing), reads keep being served from the controller's mirror, and once etcd is back with its
    /// data the same create succeeds and the store holds it once.
    @Test(.enabled(if: etcdInstalled, "needs etcd-server")) func anEtcdThatGoesAwayIsA503NamingItUntilItIsBack() async throws {
        let etcd = try await RunningEtcd()
        defer { etcd.stop() }
        try await withController(store: "etcd:\(etcd.clientURL)") { controller in
            let client = controller.client()
            let red = try await makeSubnet(client)
            etcd.kill()
            let body = try JSONCoding.encoder().encode(EndpointCreate(subnet: red, name: "while-down"))
            let refused = try await client.exchange("POST", "/api/v1/endpoints", body: body)
            let message = String(decoding: refused.body, as: UTF8.self)
            #expect(refused.status == 503 && message.contains("etcd") && message.contains(etcd.clientURL), "\(refused.status) \(message)")
            let read = try await client.exchange("GET", "/api/v1/subnets/\(red)", body: nil)
            #expect(read.status == 200, "reads are served from the mirror while etcd is away")

            try await etcd.start()
            var made = try await client.exchange("POST", "/api/v1/endpoints", body: body)
            for _ in 0..<50 where made.status == 503 {
                try await Task.sleep(for: .milliseconds(200))
                made = try await client.exchange("POST", "/api/v1/endpoints", body: body)
            }
            #expect(made.status == 201, "\(made.status) \(String(decoding: made.body, as: UTF8.self))")
            let listed: ListBody<Endpoint> = try await client.get("/api/v1/endpoints")
            #expect(listed.items.map(\.name) == ["while-down"])
        }
    }

    /// Two controllers on one etcd serve the same state: a host watching controller B gets, as deltas in
    /// revision order, the endpoints created through controller A, and the snapshot plus those deltas is
    /// exactly what B answers afterwards.
    @Test(.enabled(if: etcdInstalled, "needs etcd-server")) func aWatcherOfOneControllerSeesChangesMadeThroughAnother() async throws {
        let etcd = try await RunningEtcd()
        defer { etcd.stop() }
        let second = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: second) }
        try await withController(store: "etcd:\(etcd.clientURL)") { a in
            // Controllers of one cluster share the admin token and the CA, as the README says to set them up.
            for shared in ["admin.token", "tls"] {
                try FileManager.default.copyItem(at: a.directory.appendingPathComponent(shared), to: second.appendingPathComponent(shared))
            }
            try await withController(directory: second, store: "etcd:\(etcd.clientURL)") { b in
                #expect(b.caFingerprint == a.caFingerprint)
                let throughA = a.client(), throughB = b.client(token: a.adminToken)
                let red = try await makeSubnet(throughA)
                for (host, ip) in [("h1", "10.99.0.1"), ("h2", "10.99.0.2")] {
                    let _: HostRecord = try await throughA.put("/api/v1/hosts/\(host)", HostRegistration(underlayIP: ip))
                }
                let _: Endpoint = try await throughA.post("/api/v1/endpoints", EndpointCreate(subnet: red, name: "local", host: "h1"))
                let (messages, watcher) = follow(throughB, "/api/v1/hosts/h1/desired?watch=1", as: WatchMessage.self)
                defer { watcher.cancel() }
                // B's reads wait until its mirror of etcd has what A wrote; on a machine as loaded as CI's (the
                // lab suites run beside this test) that took over 10 s once, so the watch is given 30.
                let first = try await messages.item(0, within: 30)
                #expect(first.type == .snapshot && first.state?.endpoints.map(\.name) == ["local"])
                var replayed = try #require(first.state)
                var made: [String] = []
                for index in 0..<5 {
                    let endpoint: Endpoint = try await throughA.post("/api/v1/endpoints",
                                                                     EndpointCreate(subnet: red, name: "r\(index)", host: "h2"))
                    made.append(endpoint.path)
                }
                var revisions: [Int] = []
                while Set(replayed.remoteEndpoints.map(\.path)) != Set(made) {
                    let message = try await messages.item(revisions.count + 1, within: 30)
                    #expect(message.type == .delta)
                    revisions.append(message.revision)
                    replayed = replayed.applying(try #require(message.delta), revision: message.revision)
                }
                #expect(revisions == revisions.sorted())
                let fresh: DesiredState = try await throughB.get("/api/v1/hosts/h1/desired")
                #expect(replayed == fresh)

                // The watcher moves to A after a change that is not its own (the revision moves on, its state
                // does not): naming its state's digest, it gets a bookmark, not the whole state again.
                _ = try await makeSubnet(throughA, enterprise: "globex", cidr: "10.77.0.0/24")
                func firstMessage(_ query: String) async throws -> WatchMessage {
                    let (messages, watcher) = follow(throughA, "/api/v1/hosts/h1/desired?watch=1&" + query, as: WatchMessage.self)
                    defer { watcher.cancel() }
                    return try await messages.item(0, within: 30)
                }
                let resumed = try await firstMessage("since=\(replayed.revision)&digest=\(replayed.contentDigest)")
                #expect(resumed.type == .bookmark && resumed.revision > replayed.revision)
                let stale = try await firstMessage("since=\(replayed.revision)&digest=\(String(repeating: "0", count: 64))")
                #expect(stale.type == .snapshot && stale.state?.remoteEndpoints == replayed.remoteEndpoints)
                await #expect(throws: TrellisError.self) {
                    try await throughA.stream("/api/v1/hosts/h1/desired?watch=1&digest=nope", as: WatchMessage.self) { _ in false }
                }
            }
        }
    }

    /// A client given the controllers of one cluster uses the first that answers and moves on when the one in
    /// use goes away: a create whose connection was refused is sent to the next controller and made once, the
    /// CLI does the same with TRELLIS_CONTROLLER naming several, and the CA is fetched from whichever answers.
    @Test(.enabled(if: etcdInstalled, "needs etcd-server")) func clientsMoveToTheNextControllerOfTheCluster() async throws {
        let etcd = try await RunningEtcd()
        defer { etcd.stop() }
        let store = "etcd:\(etcd.clientURL)"
        let first = try makeTemporaryDirectory(), second = try makeTemporaryDirectory()
        defer { for directory in [first, second] { try? FileManager.default.removeItem(at: directory) } }
        // Controllers of one cluster share the admin token and the CA.
        try await withController(directory: first, store: store) { _ in }
        for shared in ["admin.token", "tls"] {
            try FileManager.default.copyItem(at: first.appendingPathComponent(shared), to: second.appendingPathComponent(shared))
        }
        let nobody = "https://127.0.0.1:\(try RunningEtcd.freePort())"
        try await withController(directory: second, store: store) { b in
            let (client, red, urlOfA) = try await withController(directory: first, store: store) { a in
                let client = ControllerClient(baseURLs: [nobody, a.url, b.url], token: a.adminToken, trust: a.trust)
                let red = try await makeSubnet(client)
                #expect(client.baseURL == a.url, "the first controller that answers is used")
                let _: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: red, name: "before"))
                return (ControllerClient(baseURLs: [a.url, b.url], token: a.adminToken, trust: a.trust), red, a.url)
            }
            // A has stopped: its port refuses connections.
            let _: Endpoint = try await client.post("/api/v1/endpoints", EndpointCreate(subnet: red, name: "after"))
            #expect(client.baseURL == b.url)
            let names: ListBody<Endpoint> = try await b.client().get("/api/v1/endpoints")
            #expect(names.items.map(\.name).sorted() == ["after", "before"], "each create made once")

            let cli = try await runTrellis(["endpoint", "list"], environment: [
                "TRELLIS_CONTROLLER": "\(nobody),\(urlOfA), \(b.url)", "TRELLIS_TOKEN": b.adminToken,
                "TRELLIS_CA_FINGERPRINT": "sha256:" + (b.caFingerprint ?? "")])
            #expect(cli.status == 0 && cli.stdout.contains("after"), "the CLI lists through B: \(cli.stderr)")
            let none = try await runTrellis(["endpoint", "list"], environment: [
                "TRELLIS_CONTROLLER": "\(nobody),\(urlOfA)", "TRELLIS_TOKEN": b.adminToken, "TRELLIS_CA_FILE": b.caFile])
            #expect(none.status != 0 && none.stderr.contains(urlOfA), "with no controller up, the error names them: \(none.stderr)")
        }
    }
}

/// Two stores, as two controllers of a cluster, on a new etcd of their own; both are closed whatever `body` does.
func withTwoEtcdStores(_ body: (EtcdStore, EtcdStore) async throws -> Void) async throws {
    let etcd = try await RunningEtcd()
    defer { etcd.stop() }
    let first = try await EtcdStore(members: [etcd.clientURL]), second = try await EtcdStore(members: [etcd.clientURL])
    do {
        try await body(first, second)
    } catch {
        await first.close(); await second.close()
        throw error
    }
    await first.close(); await second.close()
}

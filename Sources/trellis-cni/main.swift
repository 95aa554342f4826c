import FoundationEssentials
import Glibc
import TrellisCNI

/// The Trellis CNI plugin: run by a container runtime once per call (installed as `trellis` in the
/// runtime's plugin directories), it reads the call from its environment and stdin, asks the host's
/// agent over its unix socket, and prints the result or the spec's error on stdout. It keeps no
/// state but the DELs the agent could not take, which the agent carries out when it is back.
/// Linked with the Swift runtime inside and only FoundationEssentials, so it starts in milliseconds.
struct Plugin {
    let environment: [String: String]
    let input: [UInt8]

    func run() -> Int32 {
        do {
            if let output = try answer() { print(output) }
            return 0
        } catch {
            print(encode(error))
            return 1
        }
    }

    func answer() throws(CNIError) -> String? {
        let call = try CNIEnvironment(environment)
        if call.command == .version {
            struct Versions: Encodable { var cniVersion: String; var supportedVersions: [String] }
            return encode(Versions(cniVersion: CNI.latestVersion, supportedVersions: CNI.supportedVersions))
        }
        let configuration = try CNINetworkConfiguration.parse(input, needsSubnet: call.command == .add)
        let socket = configuration.agentSocket ?? CNINetworkConfiguration.defaultAgentSocket
        let agent = Agent(socket: socket, version: configuration.cniVersion)
        switch call.command {
        case .add:
            let request = CNIAddRequest(network: configuration.name, subnet: configuration.subnet ?? "", containerID: call.containerID,
                                        netns: call.netns, ifname: call.ifname, name: call.endpointName,
                                        ip: configuration.requestedAddress(call), profile: configuration.profile, user: configuration.user,
                                        bandwidth: configuration.runtimeConfig?.bandwidth)
            let attached: CNIAttachmentResult = try agent.call("POST", "/v1/cni/add", request)
            return encode(CNIResult(version: configuration.cniVersion, attachment: attached, ifname: call.ifname, netns: call.netns))
        case .del:
            let request = CNIAttachmentRequest(network: configuration.name, containerID: call.containerID, ifname: call.ifname)
            do {
                try agent.send("POST", "/v1/cni/del", request)
            } catch let error where error.code == CNIError.Code.tryAgainLater.rawValue {
                // The agent is away: the DEL waits on disk and the agent carries it out when it is back.
                try agent.postpone(request)
            }
            return nil
        case .check:
            try agent.send("POST", "/v1/cni/check", CNIAttachmentRequest(network: configuration.name, containerID: call.containerID,
                                                                         ifname: call.ifname, netns: call.netns))
            return nil
        case .gc:
            let _: CNIGarbageReply = try agent.call("POST", "/v1/cni/gc", CNIGarbageRequest(network: configuration.name,
                                                                                           valid: configuration.validAttachments ?? []))
            return nil
        case .status:
            struct AgentStatus: Decodable { var connected: Bool }
            let status: AgentStatus
            do {
                status = try agent.call("GET", "/v1/status", nil as CNIAttachmentRequest?)
            } catch {
                throw CNIError(.unavailable, "the Trellis agent is not available: \(error.msg)", version: configuration.cniVersion)
            }
            guard status.connected else {
                throw CNIError(.unavailable, "the Trellis agent cannot reach its controller; no container can be added now",
                               version: configuration.cniVersion)
            }
            return nil
        case .version:
            return nil
        }
    }

    func encode(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        let bytes: Data = (try? encoder.encode(value)) ?? Data()
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// The agent's `{"error", "field"}` answer to a request it refused.
struct Refusal: Decodable {
    var error: String
    var field: String?
}

/// The host's agent, one HTTP request per connection on its unix socket.
struct Agent {
    let socket: String
    let version: String

    func call<Reply: Decodable>(_ method: String, _ path: String, _ body: (some Encodable)?) throws(CNIError) -> Reply {
        let answer = try exchange(method, path, body)
        do {
            return try JSONDecoder().decode(Reply.self, from: Data(answer))
        } catch {
            throw CNIError(.ioFailure, "the Trellis agent's answer to \(path) cannot be read", version: version)
        }
    }

    func send(_ method: String, _ path: String, _ body: (some Encodable)?) throws(CNIError) { _ = try exchange(method, path, body) }

    /// The body of a 2xx answer; the agent's `{"error", "field"}` as a CNI error otherwise.
    private func exchange(_ method: String, _ path: String, _ body: (some Encodable)?) throws(CNIError) -> [UInt8] {
        let encoded = body.flatMap { try? JSONEncoder().encode($0) }.map { Array($0) }
        let raw = try roundTrip(HTTPMessage.request(method, path, body: encoded))
        guard let (status, answer) = HTTPMessage.response(raw) else {
            throw CNIError(.ioFailure, "the Trellis agent at \(socket) did not answer in HTTP", version: version)
        }
        guard !(200..<300).contains(status) else { return answer }
        let refusal = try? JSONDecoder().decode(Refusal.self, from: Data(answer))
        let message = refusal?.error ?? "the Trellis agent answered \(status)"
        if status == 503 { throw CNIError(.tryAgainLater, message, version: version) }
        // A subnet that cannot be used is the network configuration's fault; the rest is Trellis refusing.
        let code: CNIError.Code = refusal?.field == "subnet" ? .invalidConfiguration : .refused
        throw CNIError(code, message, details: refusal?.field.map { "field: \($0)" }, version: version)
    }

    private func roundTrip(_ request: [UInt8]) throws(CNIError) -> [UInt8] {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw unreachable("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array(socket.utf8)
        guard path.count < MemoryLayout.size(ofValue: address.sun_path) else { throw unreachable("the socket path is too long") }
        withUnsafeMutableBytes(of: &address.sun_path) { bytes in
            for (index, byte) in path.enumerated() { bytes[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw unreachable(String(cString: strerror(errno))) }
        var timeout = timeval(tv_sec: 60, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var sent = 0
        while sent < request.count {
            let count = request[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { throw unreachable("sending: \(String(cString: strerror(errno)))") }
            sent += count
        }
        var answer: [UInt8] = [], buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else {
                throw CNIError(.ioFailure, "reading the Trellis agent's answer: \(String(cString: strerror(errno)))", version: version)
            }
            if count == 0 { return answer }
            answer += buffer[0..<count]
        }
    }

    private func unreachable(_ reason: String) -> CNIError {
        CNIError(.tryAgainLater, "the Trellis agent at \(socket) is not reachable (\(reason)); is trellis agent running?", version: version)
    }

    /// Records a DEL for the agent to carry out when it is back (one file per attachment, written whole).
    func postpone(_ request: CNIAttachmentRequest) throws(CNIError) {
        let directory = cniPendingDirectory(agentSocket: socket)
        let name = "\(request.network)_\(request.containerID)_\(request.ifname)".map {
            $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "-"
        }
        let path = "\(directory)/\(String(name)).json"
        guard mkdir(directory, 0o700) == 0 || errno == EEXIST,
              let bytes = try? JSONEncoder().encode(request),
              (try? Data(bytes).write(to: URL(filePath: path + ".tmp"))) != nil, rename(path + ".tmp", path) == 0 else {
            throw CNIError(.ioFailure, "the Trellis agent is not reachable and the DEL cannot be kept in \(directory)", version: version)
        }
    }
}

var input: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 65536)
while true {
    let count = read(0, &chunk, chunk.count)
    if count < 0 && errno == EINTR { continue }
    if count <= 0 { break }
    input += chunk[0..<count]
}
exit(Plugin(environment: ProcessInfo.processInfo.environment, input: input).run())

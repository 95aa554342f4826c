import FoundationEssentials

/// Just enough HTTP/1.1 for one request to the agent on its unix socket and its answer, read to
/// the end of the connection (`Connection: close`). Pure, so the plugin's start-up stays small.
public enum HTTPMessage {
    public static func request(_ method: String, _ path: String, body: [UInt8]?) -> [UInt8] {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: trellis-agent\r\nConnection: close\r\n"
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        return Array((head + "\r\n").utf8) + (body ?? [])
    }

    /// The status and body of a whole response (chunked or with a length); nil when it is not HTTP.
    public static func response(_ bytes: [UInt8]) -> (status: Int, body: [UInt8])? {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = bytes.indices.first(where: { bytes[$0...].starts(with: separator) }) else { return nil }
        let lines = String(decoding: bytes[..<end], as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusWords = lines[0].split(separator: " ")
        guard statusWords.count >= 2, statusWords[0].hasPrefix("HTTP/1."), let status = Int(statusWords[1]) else { return nil }
        let headers = lines.dropFirst().map { $0.lowercased() }
        let rest = Array(bytes[(end + 4)...])
        if headers.contains(where: { $0.hasPrefix("transfer-encoding:") && $0.contains("chunked") }) {
            return dechunk(rest).map { (status, $0) }
        }
        if let length = headers.first(where: { $0.hasPrefix("content-length:") }).flatMap({ Int(trimmed($0.dropFirst(15))) }) {
            return rest.count >= length ? (status, Array(rest.prefix(length))) : nil
        }
        return (status, rest)
    }

    static func trimmed(_ text: Substring) -> Substring {
        var text = text
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return text
    }

    static func dechunk(_ bytes: [UInt8]) -> [UInt8]? {
        var body: [UInt8] = [], offset = 0
        while true {
            guard let lineEnd = bytes[offset...].indices.first(where: { bytes[$0...].starts(with: [13, 10]) }) else { return nil }
            let sizeText = String(decoding: bytes[offset..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(trimmed(sizeText), radix: 16) else { return nil }
            if size == 0 { return body }
            let start = lineEnd + 2
            guard start + size <= bytes.count else { return nil }
            body += bytes[start..<(start + size)]
            offset = start + size + 2
            guard offset <= bytes.count else { return nil }
        }
    }
}

import HTTPTypes
import Hummingbird
import NIOCore

/// The web console: static files built into the controller, served at `/ui/` without a token (the page asks
/// for one and sends it with every API call). The console speaks only the public REST API.
enum Console {
    static let files: [String: (type: String, body: [UInt8])] = [
        "index.html": ("text/html; charset=utf-8", PackageResources.index_html),
        "app.js": ("text/javascript; charset=utf-8", PackageResources.app_js),
        "style.css": ("text/css; charset=utf-8", PackageResources.style_css),
    ]

    /// Scripts, styles and connections only from the controller itself; no framing.
    static let securityHeaders: HTTPFields = [
        .contentSecurityPolicy: "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        .cacheControl: "no-cache",
        HTTPField.Name("Referrer-Policy")!: "no-referrer",
    ]

    static func response(_ name: String) -> Response {
        guard let file = files[name] else {
            return Response(status: .notFound, headers: [.contentType: "text/plain"],
                            body: .init(byteBuffer: ByteBuffer(string: "no such file\n")))
        }
        var headers = securityHeaders
        headers[.contentType] = file.type
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: file.body)))
    }

    static func addRoutes(to router: Router<TrellisRequestContext>) {
        // Hummingbird treats /ui and /ui/ as one path; the page names its files by absolute path.
        router.get("/ui") { _, _ in response("index.html") }
        router.get("/ui/{file}") { _, context in response(context.parameters.get("file") ?? "") }
    }
}

import Foundation
import HTTPTypes
import Testing
@testable import TrellisController
import TrellisTestSupport

/// The console's files as the controller serves them; the console itself is tested in Chromium by
/// scripts/test-console.
@Suite struct ConsoleTests {
    @Test func theConsoleIsServedWithoutATokenAndTheAPIStillNeedsOne() async throws {
        try await withController { controller in
            let anonymous = controller.anonymousClient()
            for path in ["/ui", "/ui/", "/ui/app.js", "/ui/style.css"] {
                let answer = try await anonymous.exchange("GET", path, body: nil)
                #expect(answer.status == 200 && !answer.body.isEmpty, "\(path): \(answer.status)")
            }
            let page = String(decoding: try await anonymous.exchange("GET", "/ui", body: nil).body, as: UTF8.self)
            #expect(page.contains(#"<script type="module" src="/ui/app.js">"#))
            for path in ["/ui/nothing.js", "/ui/..%2Fadmin.token", "/ui/app.js/x"] {
                #expect(try await anonymous.exchange("GET", path, body: nil).status == 404, "\(path)")
            }
            #expect(try await anonymous.exchange("GET", "/api/v1/enterprises", body: nil).status == 401)
            #expect(try await anonymous.exchange("GET", "/uiapi/v1/enterprises", body: nil).status == 401)
        }
    }

    @Test func theConsoleAllowsOnlyItsOwnScriptsAndCannotBeFramed() {
        let response = Console.response("index.html")
        let policy = response.headers[.contentSecurityPolicy] ?? ""
        #expect(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'") && !policy.contains("unsafe"))
        #expect(response.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
        #expect(Console.response("app.js").headers[.contentType] == "text/javascript; charset=utf-8")
    }
}

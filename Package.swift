// swift-tools-version:6.1
import PackageDescription

/// Layers, lowest first; a target only imports the ones above it in this list.
/// TrellisModel (pure types, IPAM math, wire bodies) → TrellisStore (SQLite) →
/// TrellisController (HTTP API) ; TrellisClient (HTTP client) → TrellisCLI (command tree).
let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "trellis",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "trellis", targets: ["trellis"]),
        .executable(name: "trellis-bench", targets: ["trellis-bench"]),
        .executable(name: "trellis-cni", targets: ["trellis-cni"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
    ],
    targets: [
        .target(name: "TrellisModel", swiftSettings: strict),
        // The CNI wire format, on FoundationEssentials alone: the plugin that links it starts in milliseconds.
        .target(name: "TrellisCNI", swiftSettings: strict),
        // Policy compiled to first-match rule runs: what the agent loads into nftables and the controller explains.
        .target(name: "TrellisPolicy", dependencies: ["TrellisModel"], swiftSettings: strict),
        .target(name: "TrellisNetlinkWire", dependencies: ["TrellisModel"], swiftSettings: strict),
        .target(name: "CTrellisLinux"),
        .systemLibrary(name: "CNFTables", pkgConfig: "libnftables", providers: [.apt(["libnftables-dev"])]),
        .target(name: "TrellisNetlink", dependencies: ["CTrellisLinux", "CNFTables", "TrellisModel", "TrellisNetlinkWire"],
                swiftSettings: strict),
        .systemLibrary(name: "CBPF", pkgConfig: "libbpf", providers: [.apt(["libbpf-dev"])]),
        // Compiles a target's Programs/*.bpf.c with clang at build time and embeds the objects.
        .executableTarget(name: "bpf-embed", swiftSettings: strict),
        .plugin(name: "BPFObjectEmbedder", capability: .buildTool(), dependencies: ["bpf-embed"]),
        // The eBPF fast path: its program (C, in Programs/) loaded, attached to ports and fed through its maps.
        .target(name: "TrellisFastPath", dependencies: ["CBPF", "TrellisModel", "TrellisNetlink"], exclude: ["Programs"],
                swiftSettings: strict, plugins: ["BPFObjectEmbedder"]),
        .target(
            name: "TrellisAgent",
            dependencies: [
                "CTrellisLinux", "TrellisFastPath", "TrellisModel", "TrellisNetlinkWire", "TrellisNetlink", "TrellisClient", "TrellisCNI",
                "TrellisPolicy",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "TrellisDocker",
            dependencies: [
                "TrellisModel", "TrellisClient", "TrellisAgent",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "TrellisEtcd",
            dependencies: [.product(name: "AsyncHTTPClient", package: "async-http-client")],
            swiftSettings: strict
        ),
        .testTarget(name: "TrellisEtcdTests", dependencies: ["TrellisEtcd", "TrellisTestSupport"], swiftSettings: strict),
        .target(
            name: "TrellisStore",
            dependencies: ["TrellisModel", "TrellisEtcd", .product(name: "GRDB", package: "GRDB.swift"),
                           .product(name: "HashTreeCollections", package: "swift-collections")],
            swiftSettings: strict
        ),
        .target(
            name: "TrellisController",
            dependencies: [
                "TrellisModel", "TrellisStore", "TrellisPolicy",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            // The web console's files, compiled into the controller as bytes.
            resources: [.embedInCode("Console/index.html"), .embedInCode("Console/app.js"), .embedInCode("Console/style.css")],
            swiftSettings: strict
        ),
        .target(
            name: "TrellisClient",
            dependencies: [
                "TrellisModel",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "TrellisCLI",
            dependencies: [
                "TrellisModel", "TrellisClient", "TrellisController", "TrellisStore", "TrellisAgent", "TrellisDocker", "TrellisNetlink",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(name: "trellis", dependencies: ["TrellisCLI", .product(name: "NIOCore", package: "swift-nio"),
                                                       .product(name: "NIOPosix", package: "swift-nio")], swiftSettings: strict),
        // Run once per CNI call by a runtime: linked fully static, so it needs nothing of /opt/swift and the dynamic
        // loader has nothing to relocate (an exec took 5.9 ms with -static-stdlib, 3.5 ms so; Go's bridge plugin 4.3 ms).
        .executableTarget(name: "trellis-cni", dependencies: ["TrellisCNI"], swiftSettings: strict,
                          linkerSettings: [.unsafeFlags(["-static-executable"]), .linkedLibrary("_FoundationCollections"),
                                           .linkedLibrary("_FoundationCShims"), .linkedLibrary("swiftSynchronization")]),
        .executableTarget(
            name: "trellis-bench",
            dependencies: [
                "CTrellisLinux", "TrellisModel", "TrellisClient", "TrellisController", "TrellisAgent", "TrellisNetlink",
                "TrellisNetlinkWire", "TrellisEtcd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "TrellisModelTests", dependencies: ["TrellisModel"], swiftSettings: strict),
        .testTarget(name: "TrellisPolicyTests", dependencies: ["TrellisModel", "TrellisPolicy"], swiftSettings: strict),
        .testTarget(name: "TrellisCNITests", dependencies: ["TrellisCNI"], swiftSettings: strict),
        .testTarget(name: "TrellisNetlinkWireTests", dependencies: ["TrellisModel", "TrellisNetlinkWire"], swiftSettings: strict),
        .testTarget(name: "TrellisNetlinkTests",
                    dependencies: ["TrellisModel", "TrellisNetlinkWire", "TrellisNetlink", "TrellisAgent", "TrellisPolicy",
                                   "TrellisFastPath",
                                   "TrellisTestSupport"],
                    swiftSettings: strict),
        .target(
            name: "TrellisTestSupport",
            dependencies: [
                "TrellisModel", "TrellisController", "TrellisClient", "TrellisEtcd", "TrellisStore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
            ],
            path: "Tests/TrellisTestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "TrellisControllerTests",
            dependencies: ["TrellisModel", "TrellisStore", "TrellisEtcd", "TrellisController", "TrellisClient", "TrellisTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TrellisLabTests",
            dependencies: ["TrellisModel", "TrellisClient", "TrellisAgent", "TrellisNetlink", "TrellisNetlinkWire", "TrellisTestSupport"],
            exclude: ["fresh-machine.sh", "dns-abuse.py", "arp-forge.py", "socket-fuzz.py"],
            swiftSettings: strict
        ),
        .testTarget(name: "TrellisDockerTests", dependencies: ["TrellisModel", "TrellisDocker"], swiftSettings: strict),
        .testTarget(
            name: "TrellisCLITests",
            dependencies: ["TrellisModel", "TrellisClient", "TrellisTestSupport"],
            swiftSettings: strict
        ),
    ]
)

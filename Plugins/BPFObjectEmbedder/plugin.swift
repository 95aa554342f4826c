import Foundation
import PackagePlugin

/// Compiles each `Programs/NAME.bpf.c` of a target with clang (`-target bpf`) at build time and embeds the
/// object as `BPFObjects.NAME`, so the programs' source lives in the repository and no object file is
/// looked for at run time.
@main
struct BPFObjectEmbedder: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let programs = target.directoryURL.appending(path: "Programs")
        let sources = (try? FileManager.default.contentsOfDirectory(atPath: programs.path)) ?? []
        let clang = try context.tool(named: "clang").url
        let embed = try context.tool(named: "bpf-embed").url
        return sources.filter { $0.hasSuffix(".bpf.c") }.sorted().map { file in
            let name = String(file.dropLast(".bpf.c".count))
            let source = programs.appending(path: file)
            let output = context.pluginWorkDirectoryURL.appending(path: "\(name)Object.swift")
            return .buildCommand(displayName: "Compiling BPF program \(file)", executable: embed,
                                 arguments: [clang.path, source.path, output.path, name],
                                 inputFiles: [source], outputFiles: [output])
        }
    }
}

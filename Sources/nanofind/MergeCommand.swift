import ArgumentParser
import Foundation
import MicrographIO
import Segmentation

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Combine the outputs of several `segment --shard` runs into one report.",
        discussion: """
            Reads summary.json and the per-image particle tables of each folder and writes \
            particles.csv, summary.json, size_histogram.png and report.html of all of them into \
            -o (which may be one of the folders).

            Example: nanofind merge shard1 shard2 shard3 -o all
            """)

    @Argument(help: "Output folders of segment runs.") var folders: [String]
    @Option(name: [.short, .customLong("output")], help: "Folder for the combined report.") var outputDir: String

    func run() throws {
        let dirs = folders.map { URL(fileURLWithPath: $0) }
        var summaries: [ImageSummary] = []
        var settings: [String: String] = [:]
        do {
            for dir in dirs {
                let r = try RunReport.read(dir)
                summaries += r.summaries
                for (k, v) in r.settings where k != "shard" { settings[k] = v }
            }
            let out = URL(fileURLWithPath: outputDir)
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
            summaries.sort { $0.image < $1.image }
            settings["merged_from"] = folders.joined(separator: ", ")
            try RunReport(summaries: summaries, settings: settings).write(into: out, sources: [out] + dirs)
        } catch {
            throw exitWithInputError(error)
        }
        print("\(summaries.count) images, \(summaries.reduce(0) { $0 + $1.particles }) particles -> \(outputDir)/report.html")
    }
}

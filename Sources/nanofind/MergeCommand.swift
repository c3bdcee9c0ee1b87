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
            -o. -o may be one of the folders, once: its summary.json is then a merge's, which a \
            later merge refuses (merge the shards' folders again, into a folder of their own).

            Example: nanofind merge shard1 shard2 shard3 -o all
            """)

    @Argument(help: "Output folders of segment runs.") var folders: [String]
    @Option(name: [.short, .customLong("output")], help: "Folder for the combined report.") var outputDir: String

    func run() throws {
        let dirs = folders.map { URL(fileURLWithPath: $0) }
        var summaries: [ImageSummary] = []
        var failures: [RunReport.Failure] = []  // each shard's failed inputs
        var settings: [String: String] = [:]
        var from: [String: String] = [:]  // image name → the folder it came from
        var source: [String: URL] = [:]  // … as a URL, which its table and overlay are read from
        // What shapes the results (model, threshold, preparation, smallest particle, splitting,
        // --pixel-size): one run's shards share it; a table mixing two would be reported under one.
        let notResultShaping: Set<String> = ["shard", "merged_from", "prob_format"]
        var reference: (folder: String, settings: [String: String])?
        do {
            for (dir, folder) in zip(dirs, folders) {
                let r = try RunReport.read(dir)
                // A merge's summary lists images whose tables are in the folders it merged.
                if let sources = r.settings["merged_from"] {
                    throw MicrographError(url: dir.appendingPathComponent("summary.json"),
                                          reason: "is a merge's summary (of \(sources)); merge the folders it was made from")
                }
                // The same weights under two names (the default, and its file named with --model)
                // are one model: where the digest is recorded, it decides.
                let shaping = r.settings.filter { !notResultShaping.contains($0.key) && !($0.key == "model" && r.settings["model_digest"] != nil) }
                if let reference, reference.settings != shaping {
                    let keys = Set(shaping.keys).union(reference.settings.keys).filter { shaping[$0] != reference.settings[$0] }.sorted()
                    let differences = keys.prefix(3).map { "\($0) \(shaping[$0] ?? "(none)") against \(reference.settings[$0] ?? "(none)")" }
                    throw MicrographError(url: dir.appendingPathComponent("summary.json"),
                                          reason: "was made with other settings than \(reference.folder) (\(differences.joined(separator: "; "))); merge the shards of one run")
                }
                if reference == nil { reference = (folder, shaping) }
                for s in r.summaries {
                    // Shards never share an image name; two folders that do would merge into a
                    // table with one image's rows twice and the other's lost.
                    if let other = from[s.image] {
                        throw MicrographError(url: dir.appendingPathComponent("summary.json"),
                                              reason: "image \(s.image) is also in \(other); merged folders must not share image names")
                    }
                    from[s.image] = folder
                    source[s.image] = dir
                }
                summaries += r.summaries
                // A missing input is every shard's failure: listed once.
                failures += r.failures.filter { !failures.contains($0) }
                for (k, v) in r.settings where k != "shard" { settings[k] = v }
            }
        } catch {
            throw exitWithInputError(error)
        }
        let out = try OutputFolderOption.prepare(outputDir)
        do {
            summaries.sort { naturalOrder($0.image, $1.image) }
            settings["merged_from"] = folders.joined(separator: ", ")
            // Each image's table and overlay are read from the folder whose summary lists it (not
            // from an earlier run's leftovers in another folder, or an earlier merge's in -o).
            try RunReport(summaries: summaries, settings: settings, failures: failures).write(into: out, sources: source)
        } catch {
            throw exitWithInputError(error)
        }
        let failed = failures.isEmpty ? "" : "; \(failures.count) input\(failures.count == 1 ? "" : "s") failed in the runs merged (listed in the report)"
        print("\(summaries.count) images, \(summaries.reduce(0) { $0 + $1.particles }) particles\(failed) -> \(outputDir)/report.html")
    }
}

import ArgumentParser
import Foundation
import NanoTensor
import MicrographIO
import NanoNet
import ParticleAnalysis
import Preprocessing
import Segmentation
import Simulation
import Training

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The whole job on built-in data: simulate micrographs, segment them with the default model, compare with the truth.",
        discussion: """
            Needs nothing but this repository: simulates four HRTEM micrographs (Au and CdSe as in \
            the default model's training data, Pt and CdS which it never saw), segments them with \
            the default model, prints per image the particles found against the true ones, the \
            pixel dice and the mean diameters, and where the overlays, particle table, size \
            histogram and report.html are.
            """)

    @Option(name: [.short, .customLong("output")], help: "Output folder.") var outputDir = "out/demo"
    @OptionGroup var threads: ThreadOptions

    static let cases: [(Material, UInt64, Bool)] = [(.Au, 11, true), (.CdSe, 12, true), (.Pt, 13, false), (.CdS, 14, false)]
    static var stems: [String] { cases.map { "\($0.0.rawValue.lowercased())_demo" } }
    /// The run files demo writes beside its images' (micrographs/ and segmented/).
    static let runFiles: Set<String> = ["manifest.jsonl", "contact_sheet.png", "particles.csv", "summary.json", "size_histogram.png",
                                        "report.html"]
    /// The files file browsers write into a folder they show, which demo may clear with its own.
    static let browserFiles: Set<String> = [".DS_Store", "Thumbs.db", "desktop.ini"]

    func run() throws {
        threads.apply()
        let model: Model
        do { model = try DefaultModel.load() } catch { throw exitWithInputError(error) }
        let root = try OutputFolderOption.prepare(outputDir)
        do { try run(model: model, root: root) } catch { throw exitWithInputError(error) }
    }

    /// Clears what an earlier demo wrote into `folder`, and nothing else: a file demo does not
    /// write (someone's data) is an error, not something to delete.
    func clearEarlierDemo(_ folder: URL) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDir) else { return }
        guard isDir.boolValue else { throw MicrographError(url: folder, reason: "is a file; demo writes a folder there") }
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path)
        // Demo's files: the run files, NAME.ext and NAME_suffix.ext of its images, and the
        // temporary `.FILE.partial-PID` of any of them, or the `.NAME.writing` mark of an image,
        // an interrupted run left; regular files only. Also what a file browser leaves in a
        // folder it has shown (macOS Finder's `.DS_Store`, the `._NAME` AppleDouble files macOS
        // writes on FAT, exFAT and network drives, Windows' `Thumbs.db` and `desktop.ini`).
        func isDemo(_ name: String) -> Bool {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder.appendingPathComponent(name).path, isDirectory: &isDir), !isDir.boolValue else { return false }
            if Demo.browserFiles.contains(name) || name.hasPrefix("._") { return true }
            var file = name
            if file.hasPrefix("."), let r = file.range(of: ".partial-") { file = String(file[file.index(after: file.startIndex)..<r.lowerBound]) }
            if file.hasPrefix("."), file.hasSuffix(".writing") {  // an image's mark: `.IMAGE.writing`
                let image = file.dropFirst().dropLast(".writing".count)
                return Demo.stems.contains { image == $0 || image.hasPrefix($0 + "_") }
            }
            return Demo.runFiles.contains(file) || Demo.stems.contains { file.hasPrefix($0 + ".") || file.hasPrefix($0 + "_") }
        }
        if let other = names.sorted().first(where: { !isDemo($0) }) {
            throw MicrographError(url: folder.appendingPathComponent(other),
                                  reason: "was not written by nanofind demo; give demo an empty or new folder (-o)")
        }
        for name in names { try FileManager.default.removeItem(at: folder.appendingPathComponent(name)) }
    }

    func run(model: Model, root: URL) throws {
        let start = Date()
        let input = root.appendingPathComponent("micrographs"), results = root.appendingPathComponent("segmented")
        try clearEarlierDemo(input)
        try clearEarlierDemo(results)
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        let cases = Demo.cases
        var simulated: [(name: String, image: SimulatedMicrograph, seen: Bool)] = []
        let pixel = model.metadata.trainingPixelSizeNm ?? 0.055
        writeStandardError("simulating \(cases.count) micrographs (multislice, 512² at \(String(format: "%.3f", pixel)) nm/px)…\n")
        final class Box: @unchecked Sendable { var items: [SimulatedMicrograph?]; init(_ n: Int) { items = Array(repeating: nil, count: n) } }
        let box = Box(cases.count)
        ThreadPool.sideBySide(cases.count) { i in
            var p = SimulationParameters()
            p.material = cases[i].0; p.seed = cases[i].1; p.pixelSizeNm = pixel; p.particles = 2...4; p.diameterNm = 3...6
            p.defocusNm = 4; p.doseEPerA2 = 1000; p.carbonThicknessNm = 3
            p.oversampling = SimulationParameters.automaticOversampling(pixelSizeNm: pixel, size: p.size)  // as `simulate` samples it
            box.items[i] = Simulator.simulate(p)
        }
        var manifest: [String] = []
        for (i, c) in cases.enumerated() {
            guard let m = box.items[i] else { continue }
            let name = Demo.stems[i]
            manifest.append(try m.write(name: name, into: input))
            simulated.append((name, m, c.2))
        }
        try writeAtomically(Array((manifest.joined(separator: "\n") + "\n").utf8), to: input.appendingPathComponent("manifest.jsonl"))
        let simulatedAt = Date()
        try FileManager.default.createDirectory(at: results, withIntermediateDirectories: true)
        let batch = BatchSegmentation(segmenter: Segmenter(model: model), settings: BatchSettings(outputDir: results),
                                      modelName: "default")
        var summaries: [ImageSummary] = []
        print("material  in training  particles found/true  pixel dice  mean diameter of the uncut found/true (nm)")
        for s in simulated {
            let url = input.appendingPathComponent("\(s.name).mrc")
            let summary = try batch.process(url)
            summaries += summary
            let mask = try BinaryMask(MicrographReader.open(results.appendingPathComponent("\(s.name)_mask.png"))[0])
            let truth = BinaryMask(width: s.image.parameters.size, height: s.image.parameters.size, values: s.image.mask.map { $0 == 0 ? 0 : 1 })
            let dice = ConfusionCounts(predicted: mask, truth: truth).dice
            // Both sides without the particles cut by the border, as the summary sizes them.
            let uncut = s.image.particles.filter { !$0.touchesBorder }
            let trueMean = uncut.isEmpty ? nil : uncut.map(\.eqDiameterNm).reduce(0, +) / Double(uncut.count)
            func pad(_ t: String, _ n: Int) -> String { t.padding(toLength: max(n, t.count), withPad: " ", startingAt: 0) }
            let found = summary[0].meanEqDiameterNm.map { String(format: "%.2f", $0) } ?? "–"
            print(pad(s.image.parameters.material.rawValue, 10) + pad(s.seen ? "yes" : "no (unseen)", 13)
                  + pad(String(format: "%9d / %d", summary[0].particles, s.image.particles.count), 22)
                  + pad(String(format: "%10.3f", dice), 14) + "\(found) / \(trueMean.map { String(format: "%.2f", $0) } ?? "–")")
        }
        try RunReport(summaries: summaries, settings: ["model": "default", "data": "nanofind demo (simulated)"]).write(into: results)
        let end = Date()
        print(String(format: "\nsimulated in %.1f s, segmented in %.1f s", simulatedAt.timeIntervalSince(start), end.timeIntervalSince(simulatedAt)))
        print("overlays:      \(results.path)/*_overlay.png")
        print("particles:     \(results.path)/particles.csv")
        print("size histogram \(results.path)/size_histogram.png")
        print("report:        \(results.path)/report.html")
    }
}

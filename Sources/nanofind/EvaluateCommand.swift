import ArgumentParser
import Foundation
import MicrographIO
import Segmentation
import Training

enum EvaluationMethod: String, ExpressibleByArgument, CaseIterable { case unet, bragg }

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score a model against labelled micrographs (pixel accuracy, dice, IoU, precision, recall).",
        discussion: """
            DATA are folders laid out as for `nanofind train` (NAME.ext + NAME_mask.png or NAME_mask.tif). Scores are \
            given per image, pooled over all images (from the summed pixel counts, so images with \
            empty masks do not break dice) and per material when a manifest.jsonl is beside or \
            above the folder. Writes evaluation.csv, evaluation.json and confusion.png into OUTDIR; \
            --json prints the JSON (keys model, method, threshold, pooled, groups, particles, images, \
            settings: how the masks were made) \
            to stdout.

            Example: nanofind evaluate ../shared/data/sim-v1/test --json
            """)

    @Argument(help: "Folders of micrographs with NAME_mask.png (or .tif) beside each.") var data: [String]
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Method: unet (the model) or bragg (automatic Bragg filtering, no model).") var method: EvaluationMethod = .unet
    @Option(name: [.short, .customLong("output")], help: "Folder for evaluation.csv, evaluation.json, confusion.png.")
    var outputDir = "evaluation"
    @Option(parsing: .unconditional, help: "Particle where probability > T (default: the model's threshold).") var threshold: Float?
    @OptionGroup var calibration: PixelSizeOption
    var pixelSize: Double? { calibration.pixelSize }
    @Flag(help: "Average over the 8 flips and rotations (test-time augmentation).") var tta = false
    @Flag(help: "Print the JSON report to stdout.") var json = false
    @OptionGroup var split: ParticleSplitOption
    @OptionGroup var flatten: FlattenOption
    @OptionGroup var threads: ThreadOptions

    func validate() throws {
        if let threshold, !(threshold.isFinite && (0...1).contains(threshold)) { throw ValidationError("--threshold must be in [0, 1]") }
        if method == .bragg {
            // The Bragg filter has no model: options that only a model uses would be dropped unseen.
            let modelOnly = [(threshold != nil, "--threshold"), (tta, "--tta"), (modelOptions.model != nil, "--model"),
                             (flatten.flatten != SegmentationOptions.flattenByDefault, flatten.flatten ? "--flatten" : "--no-flatten"),
                             (modelOptions.preprocess != .model, "--preprocess")].filter(\.0).map(\.1)
            if !modelOnly.isEmpty {
                throw ValidationError("\(modelOnly.joined(separator: ", ")) \(modelOnly.count == 1 ? "applies" : "apply") to the U-Net only (--method unet), not to --method bragg")
            }
        }
    }

    func run() throws {
        threads.apply()
        let outURL = try OutputFolderOption.prepare(outputDir)
        var evaluation = Evaluation(data: data.map { URL(fileURLWithPath: $0) })
        evaluation.open = IsolatedReader.open
        evaluation.splitTouching = split.splitTouching
        evaluation.pixelSizeOverride = pixelSize  // particles measured at the scale they were predicted at
        evaluation.warn = { writeStandardError("warning: \(oneLine($0))\n") }
        var report: EvaluationReport
        var settings: [String: String] = ["split_touching": split.splitTouching ? "yes" : "no"]
        if let pixelSize { settings["pixel_size_nm (--pixel-size)"] = "\(pixelSize)" }
        let name: String, shownThreshold: Float?
        do {
            if method == .bragg {
                name = "Bragg filter"; shownThreshold = nil
                let filter = BraggFilter()
                var warned = false  // once, for the first image too coarse for the metals' planes
                report = try evaluation.run(model: name, method: method.rawValue, threshold: nil) { image in
                    guard let p = pixelSize ?? image.pixelSizeNm else {
                        throw MicrographError(url: image.url, reason: "has no pixel size, which Bragg filtering needs (give --pixel-size NM)")
                    }
                    if let problem = filter.problem(pixelSizeNm: p) ?? filter.sizeProblem(width: image.image.width, height: image.image.height) {
                        throw MicrographError(url: image.url, reason: problem)
                    }
                    if !warned, let warning = filter.warning(pixelSizeNm: p) {
                        warned = true
                        writeStandardError("warning: \(oneLine(image.url.path)) (and any image as coarse): \(warning)\n")
                    }
                    return filter.segment(image.image, pixelSizeNm: p).mask
                }
            } else {
                let model = try modelOptions.load()
                var options = SegmentationOptions(threshold: threshold, pixelSizeOverride: pixelSize, recipe: modelOptions.preprocess.recipe)
                options.testTimeAugmentation = tta
                options.flattenIllumination = flatten.flatten
                let segmenter = Segmenter(model: model, options: options)
                // As segment records them in its run settings.
                settings["preprocessing"] = segmenter.recipe.description
                settings["flatten"] = segmenter.flattens ? "quadratic" : "no"
                settings["tta"] = tta ? "yes" : "no"
                name = modelOptions.model.map { URL(fileURLWithPath: $0).lastPathComponent } ?? "default"
                shownThreshold = segmenter.threshold
                // Said once the images are scored (a refusal stays one line), as segment says it:
                // segmented as it is, so a wrong scale is not a surprise.
                var uncalibrated: (first: String, count: Int)? = nil
                report = try evaluation.run(model: name, method: method.rawValue, threshold: segmenter.threshold) { image in
                    let p = options.pixelSizeOverride ?? image.pixelSizeNm
                    if p == nil { uncalibrated = (uncalibrated?.first ?? image.url.path, (uncalibrated?.count ?? 0) + 1) }
                    // As segment: an image too small for the network (as it is, or at the model's scale) is refused.
                    if let problem = segmenter.sizeProblem(width: image.image.width, height: image.image.height, pixelSizeNm: p) {
                        throw MicrographError(url: image.url, reason: problem)
                    }
                    // As segment: an image that does not fit the memory (at the model's scale) is refused.
                    if case .failure(let shortfall) = segmenter.memoryPlan(width: image.image.width, height: image.image.height, pixelSizeNm: p) {
                        throw MicrographError(url: image.url, reason: segmenter.refusal(
                            width: image.image.width, height: image.image.height, pixelSizeNm: p, shortfall,
                            budget: "the budget (a quarter of this machine's memory)"))
                    }
                    return segmenter.segment(image.image, pixelSizeNm: p, source: options.pixelSizeOverride != nil ? .option : .file).mask
                }
                if let (first, count) = uncalibrated, let m = model.metadata.trainingPixelSizeNm {
                    writeStandardError("warning: \(oneLine(first))\(count > 1 ? " and \(count - 1) other images" : "") \(count > 1 ? "have" : "has") no pixel size; segmented as if at the model's \(String(format: "%.4g", m)) nm/px, particle sizes not compared (give --pixel-size NM)\n")
                }
            }
            report.settings = settings
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let jsonData = try encoder.encode(report)
            // Together: a full disk leaves an earlier evaluation's three files as they were.
            let chart = report.confusionChart()
            try writeTogether([(outURL.appendingPathComponent("evaluation.csv"), { try writeFile(bytes: Array(report.csv.utf8), to: $0) }),
                               (outURL.appendingPathComponent("evaluation.json"), { try writeFile(bytes: Array(jsonData), to: $0) }),
                               (outURL.appendingPathComponent("confusion.png"), { try chart.write(to: $0) })])
            if json {
                writeStandardOutput(String(decoding: jsonData, as: UTF8.self) + "\n")
                return
            }
        } catch {
            throw exitWithInputError(error)
        }
        print("\(method == .bragg ? "method" : "model") \(name)\(shownThreshold.map { String(format: ", threshold %.4f", $0) } ?? "")\(tta && method == .unet ? ", 8-fold TTA" : "")")
        // The group column as wide as its longest name (two groups once printed alike, cut at 12).
        let rows = report.groups.sorted(by: { $0.key < $1.key }) + [("(all)", report.pooled)]
        let width = max(12, rows.map { $0.0.count }.max() ?? 0)
        print("group".padding(toLength: width, withPad: " ", startingAt: 0) + " images  pixel acc.   dice    IoU   precision  recall")
        for (g, s) in rows {
            print(g.padding(toLength: width, withPad: " ", startingAt: 0) + String(format: " %6d   %7.2f %%  %6.4f  %6.4f   %6.4f   %6.4f", s.images, 100 * s.pixelAccuracy, s.dice, s.iou, s.precision, s.recall))
        }
        let ps = report.particles
        if let e = ps.medianRelativeDiameterError {
            print(String(format: "particles: median |diameter error| %.1f %% over %d particles not touching the border (%d not found)",
                         100 * e, ps.particlesCompared, ps.particlesMissed))
        }
        if let m = ps.countsMatchManifest {
            print(String(format: "particle counts equal the manifest's on %.0f %% of images (the true mask's, measured alike: %.0f %%)",
                         100 * m, 100 * ps.countsMatchMask))
        }
        print("-> \(outURL.path)/evaluation.csv, evaluation.json, confusion.png")
    }
}

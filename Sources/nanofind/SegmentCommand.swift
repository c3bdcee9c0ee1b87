import ArgumentParser
import Foundation
import MicrographIO
import NanoNet
import Segmentation

extension ImageOutputs.ProbabilityFormat: ExpressibleByArgument {}

/// `--shard K/N`.
struct Shard: ExpressibleByArgument {
    var k: Int, n: Int
    init?(argument: String) {
        let parts = argument.split(separator: "/")
        guard parts.count == 2, let k = Int(parts[0]), let n = Int(parts[1]) else { return nil }
        self.k = k; self.n = n
    }
}

struct Segment: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Segment micrographs and measure every particle.",
        discussion: """
            INPUT: micrograph files in any format `nanofind inspect` reads, or folders (searched \
            recursively). Every image (and every frame of a stack) of any size from 64 px up is \
            segmented whole, in exact tiles: the result equals one whole-image pass. When the \
            image's pixel size (from the file, or --pixel-size) differs from the one the model was \
            trained at, it is resampled to the model's scale and the probabilities mapped back.

            Per image in OUTDIR: NAME_mask.png (0/255), NAME_mask.tif, NAME_labels.tif (uint16 \
            particle ids), NAME_prob.tif (float32; --prob-format npy for .npy), all calibrated in \
            nm for Fiji; NAME_overlay.png (outlines and ids); NAME_particles.csv. For the run: \
            particles.csv, summary.json, size_histogram.png and report.html (self-contained).

            A re-run skips inputs whose outputs are newer (--overwrite redoes them). A bad file is \
            reported on one line and skipped; exit status 1 if any failed (2 when the only input \
            failed). --shard K/N processes a fixed 1/N of the inputs (for cluster job arrays; \
            combine the shards with `nanofind merge`).

            Example: nanofind segment micrographs/ -o results --pixel-size 0.05
            """)

    @Argument(help: "Micrograph files or folders.") var inputs: [String]
    @OptionGroup var output: OutputFolderOption
    @OptionGroup var modelOptions: ModelOptions
    @Option(help: "Particle where probability > T (default: the model's threshold).") var threshold: Float?
    @OptionGroup var calibration: PixelSizeOption
    @Option(help: "Memory for the network's activations in GB (default: a quarter of this machine's).") var memory: Double?
    @Option(help: "Smallest particle in nm² (smaller objects are dropped; 20 px without a pixel size).") var minArea = 0.5
    @Option(help: "Probability map format: tif or npy.") var probFormat: ImageOutputs.ProbabilityFormat = .tif
    @Flag(help: "Redo inputs whose outputs are already there.") var overwrite = false
    @Option(help: "Process shard K of N of the inputs (e.g. 3/8).") var shard: Shard?
    @OptionGroup var threads: ThreadOptions

    func validate() throws {
        if let threshold, !(threshold.isFinite && (0...1).contains(threshold)) { throw ValidationError("--threshold must be in [0, 1]") }
        if let memory, !(memory.isFinite && memory >= 0.1) { throw ValidationError("--memory must be at least 0.1 (GB)") }
        if !(minArea.isFinite && minArea >= 0) { throw ValidationError("--min-area must be 0 or more (nm²)") }
        if let shard, !(shard.n >= 1 && shard.k >= 1 && shard.k <= shard.n) {
            throw ValidationError("--shard \(shard.k)/\(shard.n): K must be between 1 and N")
        }
    }

    func run() throws {
        threads.apply()
        let model = try modelOptions.load()
        let outURL = try output.prepare()
        let pixelSize = calibration.pixelSize
        var options = SegmentationOptions(threshold: threshold, pixelSizeOverride: pixelSize, recipe: modelOptions.preprocess.recipe)
        if let memory { options.memoryBytes = Int(memory * 1e9) }
        let segmenter = Segmenter(model: model, options: options)
        var settings = BatchSettings(outputDir: outURL)
        settings.overwrite = overwrite; settings.probabilityFormat = probFormat; settings.minimumAreaNm2 = minArea
        if let shard { settings.shard = (shard.k, shard.n) }
        let modelName = modelOptions.model.map { URL(fileURLWithPath: $0).lastPathComponent } ?? "default (\(DefaultModel.url?.lastPathComponent ?? "?"))"
        let batch = BatchSegmentation(segmenter: segmenter, settings: settings, modelName: modelName)
        batch.open = IsolatedReader.open
        batch.removeStaleTemporaries()
        let (files, missing) = batch.expand(inputs)
        var failures = missing.count
        for m in missing { printError(m) }
        var summaries: [ImageSummary] = []
        let bar = ProgressBar()
        var processed = 0, skipped = 0, particles = 0, seconds = 0.0
        var warnedUncalibrated = false
        for (i, url) in files.enumerated() {
            if let previous = batch.previousResults(for: url) {
                summaries += previous; skipped += 1
                particles += previous.reduce(0) { $0 + $1.particles }
                continue
            }
            let start = Date()
            do {
                let s = try batch.process(url)
                summaries += s
                processed += 1
                particles += s.reduce(0) { $0 + $1.particles }
                if !warnedUncalibrated, s.contains(where: { $0.pixelSizeSource == "none" }) {
                    warnedUncalibrated = true
                    FileHandle.standardError.write(Data("warning: \(url.path) has no pixel size; sizes are in pixels (give --pixel-size NM)\n".utf8))
                }
                for r in s {
                    print(String(format: "%@: %d×%d, %@, %d particles, %.1f %% area -> %@_*", r.input, r.width, r.height,
                                      r.pixelSizeNm.map { String(format: "%.4g nm/px", $0) } ?? "uncalibrated", r.particles,
                                      100 * r.areaFraction, r.image))
                }
            } catch {
                failures += 1
                printError(error)
            }
            seconds += Date().timeIntervalSince(start)
            let perFile = seconds / Double(max(1, processed))
            if bar.isTerminal { bar.update("files", done: i + 1, of: files.count, detail: String(format: "%d particles, %.2f s/file", particles, perFile),
                       secondsLeft: perFile * Double(files.count - i - 1)) }
        }
        if !summaries.isEmpty {
            var runSettings: [String: String] = ["model": modelName, "threshold": String(format: "%.4f", segmenter.threshold),
                                                 "preprocessing": segmenter.recipe.description, "min_area_nm2": "\(minArea)"]
            if let p = model.metadata.trainingPixelSizeNm { runSettings["model_pixel_size_nm"] = String(format: "%.4g", p) }
            if let pixelSize { runSettings["pixel_size_nm (--pixel-size)"] = "\(pixelSize)" }
            if let shard { runSettings["shard"] = "\(shard.k)/\(shard.n)" }
            do { try RunReport(summaries: summaries, settings: runSettings).write(into: outURL) } catch { throw exitWithInputError(error) }
        }
        if bar.isTerminal { bar.finish("") }
        print("\(processed) processed, \(skipped) already done, \(failures) failed; \(particles) particles -> \(outURL.path)/report.html")
        if failures > 0 { throw ExitCode(files.count + missing.count == 1 ? 2 : 1) }
    }
}


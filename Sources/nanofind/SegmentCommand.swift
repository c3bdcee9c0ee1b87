import ArgumentParser
import Foundation
import MicrographIO
import ParticleAnalysis
import NanoNet
import NanoTensor
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
            INPUT: micrograph files in any format `nanofind inspect` reads (by content, whatever \
            their name), or folders, searched recursively for files with those formats' extensions \
            (.mrc .mrcs .map .st .ali .rec .preali .tif .tiff .dm3 .dm4 .ser .emd .png .npy). Every image (and every frame of a stack) from 64 px up (as it is and at the model's scale) that fits \
            --memory is segmented in exact tiles: the result equals one whole-image pass. When the \
            image's pixel size (from the file, or --pixel-size) differs from the one the model was \
            trained at, it is resampled to the model's scale and the probabilities mapped back; an \
            image without one is segmented as it is, as if at the model's scale (a warning says so). \
            A folder search skips hidden files and NanoFind's own outputs (NAME_mask, _labels, \
            _prob, _overlay, contact_sheet). Files of one name in a folder (x.dm4 beside its x.tif \
            export) are one input: a file named on the command line, else the microscope's own \
            format first (dm4, dm3, emd, ser, MRC, TIFF, npy, png), the others named in a warning; \
            when that one cannot be segmented, the next that can is, said in a warning. \
            Two inputs of one name from different folders (or both named) would write the same \
            outputs: the first by path is segmented, the other reported as a failure. Each image's \
            fitted illumination (a quadratic surface: a gradient, a bright centre) is divided out before the network \
            (--no-flatten keeps it, as --preprocess none does).

            Per image in OUTDIR: NAME_mask.png (0/255), NAME_mask.tif, NAME_labels.tif (uint16 \
            particle ids; float32 past 65535 particles), NAME_prob.tif (float32; --prob-format npy for .npy, none for no map), the \
            TIFFs calibrated in nm for Fiji; NAME_overlay.png (outlines and ids); NAME_particles.csv \
            (lengths in pixels, and in nm when the pixel size is known); NAME.summary.json. For the \
            run: particles.csv, summary.json, size_histogram.png and report.html (self-contained).

            A re-run skips inputs whose outputs are newer and were made with the same model, \
            threshold, --pixel-size, --default-pixel-size, splitting, --min-area, --preprocess, \
            --tta and --flatten, and whose map in \
            --prob-format's format is there (--overwrite \
            redoes them). A bad file is \
            reported on one line and skipped; exit status 1 if any failed (2 when the one \
            input named, a file, failed). --shard K/N processes a fixed 1/N of the inputs (for cluster job arrays; \
            combine the shards with `nanofind merge`). --pixel-size replaces every input's own \
            calibration (a warning at the end names the first input, by path, whose own differs by \
            over 2 %, and counts the others): give it for \
            uncalibrated exports.

            Example: nanofind segment micrographs/ -o results
            """)

    @Argument(help: "Micrograph files or folders.") var inputs: [String]
    @OptionGroup var output: OutputFolderOption
    @OptionGroup var modelOptions: ModelOptions
    @Option(parsing: .unconditional, help: "Particle where probability > T (default: the model's threshold).") var threshold: Float?
    @OptionGroup var calibration: PixelSizeOption
    @Option(parsing: .unconditional, help: "nm per pixel for inputs without a calibration (PNG exports), the others keeping their own (unlike --pixel-size, which replaces every input's).") var defaultPixelSize: Double?
    @Option(parsing: .unconditional, help: "Memory in GB for the files segmented at once (each of --jobs N gets 1/N; an image that needs more is segmented alone afterwards with all of it): an image's full-size arrays (about 19 bytes per pixel, a 16384² int16 one 5.5 GB in all) and the network's pass, over the whole image where what remains holds it (1.2 GB for 4096²), else in tiles sized from what remains; an image that cannot fit is refused (default: a quarter of this machine's memory).") var memory: Double?
    @Option(parsing: .unconditional, help: "Smallest particle in nm² (smaller objects are dropped; 20 px without a pixel size).") var minArea = ParticleMeasurement.smallestParticleNm2
    @OptionGroup var split: ParticleSplitOption
    @OptionGroup var flatten: FlattenOption
    @Option(help: "Probability map format: tif, npy, or none (no map; a 4096² one is 64 MB).") var probFormat: ImageOutputs.ProbabilityFormat = .tif
    @Flag(help: "Redo inputs whose outputs are already there.") var overwrite = false
    @Option(help: "Process shard K of N of the inputs (e.g. 3/8).") var shard: Shard?
    @Flag(help: "Average the probabilities over the 8 flips and quarter turns (8× the network time).") var tta = false
    @Option(parsing: .unconditional, help: "Files segmented at once, each with CPUs / N threads and --memory / N (default: one per two threads of --threads, at most one per input and one per 1.1 GB of --memory, what a 4096² image needs in 2144² tiles). An image that needs more than its share of --memory is segmented alone after the others. Where one particle fills most of each image, --jobs 2 on two threads is faster (its split runs on one thread).")
    var jobs: Int?
    @OptionGroup var threads: ThreadOptions

    func validate() throws {
        if let threshold, !(threshold.isFinite && (0...1).contains(threshold)) { throw ValidationError("--threshold must be in [0, 1]") }
        if let memory, !(memory.isFinite && memory >= 0.3 && memory <= 1e6) { throw ValidationError("--memory must be between 0.3 and 1000000 (GB)") }
        if !(minArea.isFinite && minArea >= 0) { throw ValidationError("--min-area must be 0 or more (nm²)") }
        if let jobs, !(1...64).contains(jobs) { throw ValidationError("--jobs must be between 1 and 64") }
        try PixelSizeOption.check(defaultPixelSize, flag: "--default-pixel-size")
        if defaultPixelSize != nil && calibration.pixelSize != nil {
            throw ValidationError("--default-pixel-size applies to inputs without a calibration; --pixel-size replaces every input's: give one of them")
        }
        if let shard, !(shard.n >= 1 && shard.k >= 1 && shard.k <= shard.n) {
            throw ValidationError("--shard \(shard.k)/\(shard.n): K must be between 1 and N")
        }
    }

    func run() throws {
        threads.apply()
        prepareMemoryForSegmenting()
        let model = try modelOptions.load()
        let outURL = try output.prepare()
        let pixelSize = calibration.pixelSize
        var options = SegmentationOptions(threshold: threshold, pixelSizeOverride: pixelSize, recipe: modelOptions.preprocess.recipe)
        if let memory { options.memoryBytes = Int(memory * 1e9) }
        options.testTimeAugmentation = tta
        options.flattenIllumination = flatten.flatten
        options.fallbackPixelSize = defaultPixelSize
        let segmenter = Segmenter(model: model, options: options)
        var settings = BatchSettings(outputDir: outURL)
        settings.overwrite = overwrite; settings.probabilityFormat = probFormat; settings.minimumAreaNm2 = minArea
        settings.splitTouching = split.splitTouching
        if let shard { settings.shard = (shard.k, shard.n) }
        let modelName = modelOptions.model.map { URL(fileURLWithPath: $0).lastPathComponent } ?? "default (\(DefaultModel.url?.lastPathComponent ?? "?"))"
        let batch = BatchSegmentation(segmenter: segmenter, settings: settings, modelName: modelName)
        // The model's weights, not only its file's name, decide whether earlier results are this run's.
        batch.modelDigest = model.contentDigest
        batch.open = IsolatedReader.open
        final class Notices: @unchecked Sendable { let lock = NSLock(); var replaced: [(path: String, own: Double)] = [] }
        let notices = Notices()
        batch.imageNote = { url, name, note in
            notices.lock.lock(); defer { notices.lock.unlock() }
            writeStandardError("warning: \(oneLine(url.path)) (\(name)): \(note)\n")
        }
        // Calibrations that --pixel-size replaced, told once at the end, in the order of the paths
        // (the jobs finish in any order).
        batch.calibrationReplaced = { url, own, _ in
            notices.lock.lock(); defer { notices.lock.unlock() }
            notices.replaced.append((url.path, own))
        }
        let (files, missing, empty, sameName) = batch.expand(inputs)
        for m in missing { printError(m) }
        for (skipped, taken) in sameName {
            writeStandardError("warning: \(oneLine(skipped.path)): skipped: \(oneLine(taken.lastPathComponent)) beside it has the same name and is segmented instead (one file per name in a folder: one named on the command line, else the microscope's own format)\n")
        }
        for folder in empty {
            writeStandardError("warning: \(oneLine(folder.path)) holds no micrographs (files ending .\(BatchSegmentation.imageExtensions.sorted().joined(separator: " .")), not NanoFind's own outputs)\n")
        }
        final class Progress: @unchecked Sendable {
            var summaries: [ImageSummary] = []
            var processed = 0, skipped = 0, particles = 0, failures = 0, done = 0, seconds = 0.0
            var uncalibrated: [String] = []
            /// Each failed input and the line that said why, for the run's report.
            var failed: [RunReport.Failure] = []
        }
        let progress = Progress()
        progress.failures = missing.count
        progress.failed = missing.map { RunReport.Failure(input: $0.file, error: oneLine(describe($0))) }
        let bar = ProgressBar()
        let jobs = BatchSegmentation.jobs(self.jobs, files: files.count, threads: ThreadPool.shared.threadCount, segmenter: segmenter)
        // One call at a time (BatchSegmentation.run).
        batch.segmentedInstead = { url, error, other in
            writeStandardError("warning: \(oneLine(describe(error))); \(oneLine(other.lastPathComponent)) beside it, of the same name, is segmented instead\n")
        }
        batch.run(files, alternates: BatchSegmentation.alternates(sameName), jobs: jobs) { url, outcome, seconds in
            switch outcome {
            case .skipped(let previous):
                progress.summaries += previous; progress.skipped += 1
                progress.particles += previous.reduce(0) { $0 + $1.particles }
            case .processed(let s):
                progress.summaries += s; progress.processed += 1; progress.seconds += seconds
                progress.particles += s.reduce(0) { $0 + $1.particles }
                if s.contains(where: { $0.pixelSizeSource == "none" }) { progress.uncalibrated.append(url.path) }
                for r in s {
                    print(String(format: "%@: %d×%d, %@, %d particles, %.1f %% area -> %@_*", r.input, r.width, r.height,
                                 r.pixelSizeNm.map { String(format: "%.4g nm/px", $0) } ?? "uncalibrated", r.particles,
                                 100 * r.areaFraction, r.image))
                }
            case .failed(let error):
                progress.failures += 1; progress.seconds += seconds
                progress.failed.append(.init(input: url.path, error: oneLine(describe(error))))
                printError(error)
            }
            progress.done += 1
            let perFile = progress.seconds / Double(max(1, progress.processed)) / Double(jobs)
            if bar.isTerminal {
                bar.update("files", done: progress.done, of: files.count,
                           detail: String(format: "%d particles, %.2f s/file", progress.particles, perFile),
                           secondsLeft: perFile * Double(files.count - progress.done))
            }
        }
        let summaries = progress.summaries
        let processed = progress.processed, skipped = progress.skipped, particles = progress.particles, failures = progress.failures
        // A shard writes its run files even with no image done (none of the inputs fell to it, or
        // all failed), so that `merge` over every shard's folder finds each one's summary.json.
        // So does a run whose every input failed into a folder holding an earlier run's report,
        // which would otherwise stand, listing no failure (a fresh folder gets none: a bad input
        // leaves no output).
        let earlierReport = FileManager.default.fileExists(atPath: outURL.appendingPathComponent("summary.json").path)
        var wroteReport = !summaries.isEmpty || shard != nil || (!progress.failed.isEmpty && earlierReport), reportFailed = false
        if wroteReport {
            var runSettings: [String: String] = ["model": modelName, "threshold": String(format: "%.4f", segmenter.threshold),
                                                 "preprocessing": segmenter.recipe.description,
                                                 "min_area": "\(minArea) nm² where the pixel size is known, else \(settings.minimumAreaPx) px",
                                                 "split_touching": split.splitTouching ? "yes" : "no", "prob_format": probFormat.rawValue]
            if let p = model.metadata.trainingPixelSizeNm { runSettings["model_pixel_size_nm"] = String(format: "%.4g", p) }
            if let digest = batch.modelDigest { runSettings["model_digest"] = digest }
            if let pixelSize { runSettings["pixel_size_nm (--pixel-size)"] = "\(pixelSize)" }
            if let defaultPixelSize { runSettings["pixel_size_nm where none (--default-pixel-size)"] = "\(defaultPixelSize)" }
            runSettings["flatten"] = segmenter.flattens ? "quadratic" : "no"
            if let shard { runSettings["shard"] = "\(shard.k)/\(shard.n)" }
            do {
                try RunReport(summaries: summaries, settings: runSettings, failures: progress.failed).write(into: outURL)
            } catch {
                // The images' own outputs are written; the run's files are as they were (a full
                // disk, a folder in the way): said, and counted as the batch's failure.
                printError(error)
                wroteReport = false; reportFailed = true
            }
        }
        if bar.isTerminal { bar.finish("") }
        // Segmented as they are, as if at the model's scale: said once, with a count, so a wrong
        // scale is not a surprise.
        if let first = progress.uncalibrated.min() {
            let n = progress.uncalibrated.count
            let scale = model.metadata.trainingPixelSizeNm.map { String(format: " and segmented as if at the model's %.4g nm/px", $0) } ?? ""
            writeStandardError("warning: \(oneLine(first))\(n > 1 ? " and \(n - 1) more input\(n > 2 ? "s" : "")" : "") \(n > 1 ? "have" : "has") no pixel size; sizes are in pixels, the nm columns empty\(scale) (give --default-pixel-size NM for the inputs without one, or --pixel-size NM for all)\n")
        }
        if let pixelSize, let first = notices.replaced.min(by: { $0.path < $1.path }) {
            let n = notices.replaced.count
            writeStandardError(String(format: "warning: %@ says %.4g nm/px; --pixel-size %.4g replaced it%@\n", oneLine(first.path),
                                                       first.own, pixelSize,
                                                       n == 1 ? "" : n == 2 ? ", and the calibration of 1 more input that differs from it by over 2 %"
                                                           : ", and the calibration of \(n - 1) more inputs that differ from it by over 2 %"))
        }
        print("\(processed) processed, \(skipped) already done, \(failures) failed; \(particles) particles"
              + (wroteReport ? " -> \(outURL.path)/report.html"
                 : reportFailed ? " (the run's report could not be written)" : " (no report: no image was segmented)"))
        // Exit 2 when the one file named failed; 1 for a batch (a folder, several inputs, or a shard
        // of a cluster job, whose failed inputs must not read as a failed job).
        var isFolder: ObjCBool = false
        let single = inputs.count == 1 && shard == nil
            && !(FileManager.default.fileExists(atPath: inputs[0], isDirectory: &isFolder) && isFolder.boolValue)
        if failures > 0 || reportFailed { throw ExitCode(single ? 2 : 1) }
    }
}


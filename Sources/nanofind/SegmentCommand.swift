import ArgumentParser
import Foundation
import MicrographIO
import NanoNet
import NanoTensor
import Preprocessing

struct Segment: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Segment micrographs into particle and background.",
        discussion: """
            For every input image writes OUTDIR/<stem>_prob.npy (float32 H×W particle probability, \
            softmax channel 1) and OUTDIR/<stem>_mask.png (0/255, particle where p > threshold). \
            Inputs may be any format `nanofind inspect` reads; the first frame of each image is used. \
            Image sides must be multiples of 16 for now. A file that cannot be read is reported on \
            one line and skipped; the exit status is 2 when the only input failed, 1 when some of \
            several failed.

            Example: nanofind segment image.npy -o out --model unet32_AuCdSeDots_09_final.h5
            """)

    @Argument(help: "Micrograph files.") var inputs: [String]
    @Option(name: [.short, .customLong("output")], help: "Output folder (created if missing).") var outputDir: String
    @Option(help: "Model file: a NanoFind .safetensors model or a Keras-2 .h5 weight file.") var model: String
    @Option(help: "Particle where probability > T (default: the model's threshold).") var threshold: Float?
    @Option(help: "Input preparation: 'model' (what the model file records), 'none' (feed pixels as they are), or 'median3+max'.")
    var preprocess: String = "model"
    @Option(help: "Worker threads (default: one per available CPU).") var threads: Int?

    func run() throws {
        if let threads {
            guard (1...256).contains(threads) else { throw ValidationError("--threads must be between 1 and 256") }
            ThreadPool.setSharedThreadCount(threads)
        }
        if let threshold, !(threshold.isFinite && (0...1).contains(threshold)) { throw ValidationError("--threshold must be in [0, 1]") }
        guard ["model", "none", "median3+max"].contains(preprocess) else {
            throw ValidationError("--preprocess must be 'model', 'none' or 'median3+max'")
        }
        let loaded: Model
        do { loaded = try Model.load(URL(fileURLWithPath: model)) } catch { throw exitWithInputError(error) }
        let outURL = URL(fileURLWithPath: outputDir)
        do {
            try FileManager.default.createDirectory(at: outURL, withIntermediateDirectories: true)
        } catch {
            throw exitWithInputError(MicrographError(url: outURL, reason: "cannot create the output folder"))
        }
        let engine = UNetInference(loaded.network)
        let recipe = preprocess == "model" ? loaded.metadata.preprocessing : preprocess
        let t = threshold ?? loaded.metadata.threshold
        var failures = 0
        var usedNames = Set<String>()
        for input in inputs {
            do {
                try segmentFile(URL(fileURLWithPath: input), engine: engine, network: loaded.network,
                                recipe: recipe, threshold: t, outURL: outURL, usedNames: &usedNames)
            } catch {
                failures += 1
                FileHandle.standardError.write(Data(("error: " + String(describing: error) + "\n").utf8))
            }
        }
        if failures > 0 { throw ExitCode(inputs.count == 1 ? 2 : 1) }
    }

    func segmentFile(_ url: URL, engine: UNetInference, network: UNet, recipe: String, threshold: Float, outURL: URL,
                     usedNames: inout Set<String>) throws {
        let images = try IsolatedReader.open(url)
        let stem = url.deletingPathExtension().lastPathComponent
        // Check every image before writing anything, so a failing file leaves no outputs.
        let names = images.indices.map { images.count == 1 ? stem : "\(stem)_\($0)" }
        for (name, image) in zip(names, images) {
            if let problem = network.validateInput(Shape(1, 1, image.height, image.width)) {
                throw MicrographError(url: url, reason: problem + " (padding of arbitrary sizes is not supported yet)")
            }
            // The network keeps about 160 bytes per pixel of activations at once.
            let (bytes, overflow) = image.width.multipliedReportingOverflow(by: image.height * 160)
            let budget = Int(ProcessInfo.processInfo.physicalMemory / 2)
            if overflow || bytes > budget {
                throw MicrographError(url: url, reason: "image is \(image.width)×\(image.height) pixels; segmenting it whole needs about \(overflow ? Int.max >> 30 : bytes >> 30) GiB, more than half of this machine's memory")
            }
            if usedNames.contains(name) {
                throw MicrographError(url: url, reason: "its outputs would overwrite those of an earlier input named \(name); segment it into another folder")
            }
        }
        var results: [(name: String, prob: [Float], mask: [UInt8], image: Micrograph)] = []
        for (name, image) in zip(names, images) {
            let shape = Shape(1, 1, image.height, image.width)
            var pixels = FloatImage(width: image.width, height: image.height, pixels: image.floatFrame(0))
            if recipe == "median3+max" {
                pixels = minMaxNormalise(medianFilter3x3(pixels))
            } else if recipe != "none" {
                throw MicrographError(url: url, reason: "the model asks for unknown preprocessing '\(recipe)'")
            }
            let p = engine.probabilities(Tensor(shape, values: pixels.pixels))
            let prob = Array(UnsafeBufferPointer(start: p.plane(0, 1), count: image.width * image.height))
            results.append((name, prob, prob.map { $0 > threshold ? UInt8(255) : 0 }, image))
        }
        var written: [URL] = []
        do {
            for r in results {
                let probURL = outURL.appendingPathComponent("\(r.name)_prob.npy")
                let maskURL = outURL.appendingPathComponent("\(r.name)_mask.png")
                try NPYFile.write(r.prob, shape: [r.image.height, r.image.width], to: probURL)
                written.append(probURL)
                try PNGWriter.writeGrey8(r.mask, width: r.image.width, height: r.image.height, to: maskURL)
                written.append(maskURL)
            }
        } catch {
            for w in written { try? FileManager.default.removeItem(at: w) }  // never leave half the outputs
            throw error
        }
        for (index, r) in results.enumerated() {
            usedNames.insert(r.name)
            let fraction = Double(r.mask.reduce(0) { $0 + ($1 == 0 ? 0 : 1) }) / Double(max(1, r.mask.count))
            let scale = r.image.pixelSize.map { String(format: ", %.4g nm/px", $0.x) } ?? ", uncalibrated"
            print(String(format: "%@: %d×%d%@, %.1f %% particle (p > %.2f) -> %@_prob.npy, %@_mask.png",
                         url.path + (results.count == 1 ? "" : " [\(index)]"), r.image.width, r.image.height, scale,
                         100 * fraction, threshold, r.name, r.name))
        }
    }
}

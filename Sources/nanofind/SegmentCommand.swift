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
        if let threshold, !(0...1).contains(threshold) { throw ValidationError("--threshold must be in [0, 1]") }
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
        for input in inputs {
            do {
                try segmentFile(URL(fileURLWithPath: input), engine: engine, network: loaded.network,
                                recipe: recipe, threshold: t, outURL: outURL)
            } catch {
                failures += 1
                FileHandle.standardError.write(Data(("error: " + String(describing: error) + "\n").utf8))
            }
        }
        if failures > 0 { throw ExitCode(inputs.count == 1 ? 2 : 1) }
    }

    func segmentFile(_ url: URL, engine: UNetInference, network: UNet, recipe: String, threshold: Float, outURL: URL) throws {
        let images = try MicrographReader.open(url)
        let stem = url.deletingPathExtension().lastPathComponent
        for (index, image) in images.enumerated() {
            let shape = Shape(1, 1, image.height, image.width)
            if let problem = network.validateInput(shape) {
                throw MicrographError(url: url, reason: problem + " (padding of arbitrary sizes is not supported yet)")
            }
            var pixels = FloatImage(width: image.width, height: image.height, pixels: image.floatFrame(0))
            if recipe == "median3+max" {
                pixels = minMaxNormalise(medianFilter3x3(pixels))
            } else if recipe != "none" {
                throw MicrographError(url: url, reason: "the model asks for unknown preprocessing '\(recipe)'")
            }
            let p = engine.probabilities(Tensor(shape, values: pixels.pixels))
            let prob = Array(UnsafeBufferPointer(start: p.plane(0, 1), count: image.width * image.height))
            let mask = prob.map { $0 > threshold ? UInt8(255) : 0 }
            let name = images.count == 1 ? stem : "\(stem)_\(index)"
            let probURL = outURL.appendingPathComponent("\(name)_prob.npy")
            let maskURL = outURL.appendingPathComponent("\(name)_mask.png")
            try NPYFile.write(prob, shape: [image.height, image.width], to: probURL)
            do {
                try PNGWriter.writeGrey8(mask, width: image.width, height: image.height, to: maskURL)
            } catch {
                try? FileManager.default.removeItem(at: probURL)  // never leave half an output
                throw error
            }
            let fraction = Double(mask.reduce(0) { $0 + ($1 == 0 ? 0 : 1) }) / Double(mask.count)
            let scale = image.pixelSize.map { String(format: ", %.4g nm/px", $0.x) } ?? ", uncalibrated"
            print(String(format: "%@: %d×%d%@, %.1f %% particle (p > %.2f) -> %@, %@",
                         url.path + (images.count == 1 ? "" : " [\(index)]"), image.width, image.height, scale,
                         100 * fraction, threshold, probURL.lastPathComponent, maskURL.lastPathComponent))
        }
    }
}

import ArgumentParser
import CNanoSupport
import Foundation
import MicrographIO
import NanoNet
import NanoTensor
import Segmentation
import Training

/// `--threads`, for every command that computes.
struct ThreadOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Worker threads (default: one per available CPU).") var threads: Int?

    func validate() throws {
        if let threads, !(1...256).contains(threads) { throw ValidationError("--threads must be between 1 and 256") }
    }

    func apply() { if let threads { ThreadPool.setSharedThreadCount(threads) } }
}

/// How to prepare a micrograph for the network.
enum PreprocessChoice: String, ExpressibleByArgument, CaseIterable {
    /// What the model file records.
    case model
    case none
    /// pyNanoFind: 3×3 median, per-image min-max (the name `train --normalise` uses).
    case pyNanoFind = "median3+min-max"
    /// 3×3 median, per-image 0.5–99.5 % percentiles.
    case robust = "median3+percentile"

    /// The names above, the older "median3+max", and a recipe as summary.json writes it
    /// (e.g. "median3+percentile(0.5, 99.5)").
    init?(argument: String) {
        if argument == "median3+max" { self = .pyNanoFind; return }
        if let named = PreprocessChoice(rawValue: argument) { self = named; return }
        guard let same = PreprocessChoice.allCases.first(where: { $0.recipe?.description == argument }) else { return nil }
        self = same
    }

    /// The recipe to use instead of the model's, nil for the model's own.
    var recipe: InputRecipe? {
        switch self {
        case .model: return nil
        case .none: return InputRecipe.none
        case .pyNanoFind: return .pyNanoFind
        case .robust: return .robust
        }
    }
}

/// `--model` and `--preprocess`, for every command that runs a model.
struct ModelOptions: ParsableArguments {
    @Option(help: "Model file: a NanoFind .safetensors model, a Keras-2 .h5 weight file, or a training's .checkpoint (its best epoch so far, at a provisional threshold of 0.5: the threshold is chosen when training ends). Default: the file NANOFIND_DEFAULT_MODEL names, else Models/default.safetensors of the checkout this nanofind was built in (or one up to four folders above the binary).")
    var model: String?
    @Option(help: "Input preparation: \(PreprocessChoice.allCases.map(\.rawValue).joined(separator: ", ")) ('model': what the model file records).")
    var preprocess: PreprocessChoice = .model

    /// The model, or a one-line error (exit 2). Segmenting takes a one-channel micrograph to
    /// two classes (carbon, particle): a valid model file of another network is refused here,
    /// before any image meets it (`forSegmenting` false: any one-channel network, as
    /// `activations` shows).
    func load(forSegmenting: Bool = true) throws -> Model {
        do {
            let loaded: Model
            if let model {
                let url = URL(fileURLWithPath: model)
                // A training checkpoint: the best epoch so far of a run in progress or interrupted.
                loaded = url.pathExtension == "checkpoint" ? try Trainer.bestModel(fromCheckpoint: url) : try IsolatedReader.loadModel(url)
            } else {
                loaded = try DefaultModel.load()
            }
            let file = model ?? DefaultModel.url?.path ?? "the default model"
            if forSegmenting, let problem = loaded.segmentationProblem { throw ModelFileError(file: file, reason: problem) }
            if loaded.network.config.inputChannels != 1 {
                throw ModelFileError(file: file, reason: "takes \(loaded.network.config.inputChannels) input channels; micrographs have one")
            }
            return loaded
        } catch {
            throw exitWithInputError(error)
        }
    }
}

/// `-o OUTDIR` for commands that write a folder of results.
struct OutputFolderOption: ParsableArguments {
    @Option(name: [.short, .customLong("output")], help: "Output folder (created if missing).") var outputDir: String

    /// The folder, created if missing; a one-line error (exit 2) when it is a file or cannot be made.
    func prepare() throws -> URL { try OutputFolderOption.prepare(outputDir) }

    static func prepare(_ path: String) throws -> URL {
        let url = URL(fileURLWithPath: path)
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), !isDir.boolValue {
            throw exitWithInputError(MicrographError(url: url, reason: "is a file, not a folder; -o names the output folder"))
        }
        do { try CreatedFolders.create(url) } catch {
            throw exitWithInputError(MicrographError(url: url, reason: "cannot create the output folder"))
        }
        removeStaleTemporaries(in: url)  // what a killed run of any command left there
        return url
    }
}

/// The output folders this run made: a run that ends with an error (`NanoFindCommand.main`)
/// removes those still empty, so a refusal leaves no trace (not even the `-o` folder it made).
enum CreatedFolders {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var made: [String] = []

    /// Makes `url` and any missing folder above it, remembering which were made.
    static func create(_ url: URL) throws {
        var missing: [String] = []
        var u = url.standardizedFileURL
        while !FileManager.default.fileExists(atPath: u.path) && u.path != "/" {
            missing.append(u.path)
            u = u.deletingLastPathComponent()
        }
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        lock.lock(); made += missing.reversed(); lock.unlock()
    }

    /// Removes the folders this run made that are empty, deepest first (`rmdir` leaves any
    /// that holds something).
    static func removeEmpty() {
        lock.lock(); defer { lock.unlock() }
        for path in made.reversed() { rmdir(path) }
        made = []
    }
}

/// Whether an illumination or thickness gradient is divided out first (segment, evaluate).
struct FlattenOption: ParsableArguments {
    @Flag(inversion: .prefixedNo, help: "Divide out the smooth surface (quadratic) fitted to each image (an illumination gradient or a bright centre, a thickness gradient) before the network sees it (not with --preprocess none).")
    var flatten = SegmentationOptions.flattenByDefault
}

/// Whether touching particles are split into one each (segment, evaluate, measure).
struct ParticleSplitOption: ParsableArguments {
    @Flag(inversion: .prefixedNo, help: "Split particles that touch along the neck between them (a watershed on the distance to the background), one particle each.")
    var splitTouching = true
}

/// `--pixel-size NM`, for inputs without a calibration or with a wrong one.
struct PixelSizeOption: ParsableArguments {
    @Option(parsing: .unconditional, help: "nm per pixel, for inputs without a calibration (PNG exports) or with a wrong one.") var pixelSize: Double?

    func validate() throws { try PixelSizeOption.check(pixelSize, flag: "--pixel-size") }

    /// A pixel size given by `flag` must be a plausible one.
    static func check(_ value: Double?, flag: String) throws {
        if let value, !(value.isFinite && value >= 1e-6 && value <= 1000) {
            throw ValidationError("\(flag) must be between 1e-6 and 1000 nm per pixel, got \(value)")
        }
    }
}

/// A batch allocates the same large arrays for every image (the image, its probability map, mask
/// and labels, the outputs' bytes): with glibc's defaults each array above 32 MiB is a fresh
/// mapping, faulted in and zeroed page by page every time, and freed memory is trimmed. Asking
/// glibc to serve blocks up to 300 MB (an 8192² image's float and Int32 maps, 256 MiB each)
/// from its heap and to keep what is freed spares those faults. Measured: with 96 MB (a 4096²
/// image's maps) six 4096² MRCs 6.23-6.42 -> 5.67-6.01 s, system time 3.3-3.5 -> 2.0-2.1 s,
/// 1.32 M -> 0.60 M faults (AMD EPYC fam 25 mod 17, 2 vCPUs, alternating), peak resident
/// unchanged (1.6-1.7 GB); raised to 300 MB, `segment_8192` 1.65-1.83 -> 1.38-1.50 s (its read
/// 0.10 -> 0.02 s, preprocessing 0.10 -> 0.06 s; AMD EPYC fam 26 mod 2, alternating). Larger
/// blocks (a 16384² image's 1 GiB maps) stay mappings of their own, so such an image's peak
/// with --memory 6 stays within it (4.82 GB, the same machine). The
/// jobs of a batch run on threads of their own, whose blocks came from per-thread arenas (heaps of
/// at most 64 MiB, so larger blocks were fresh mappings again) until every thread was given the
/// one heap: eight 4096² MRCs in two jobs 4.34-4.58 -> 4.01-4.20 s, system time 0.94-1.18 ->
/// 0.57-0.63 s, 0.52-0.71 M -> 0.29 M faults, peak resident 1.27-1.35 -> 1.19-1.26 GB (Intel
/// Xeon fam 6 mod 207, alternating). Elsewhere (macOS) that part does nothing.
///
/// The network's buffers also go on huge pages (`BufferPool.hugePages`): a whole 4096² image's
/// pass (`Segmenter.memoryPlan`) faults in about 1 GB, which on 4 KiB pages made a single
/// 4096² file's `segment` 0.94-0.97 s against 0.79-0.84 s with them, and 2144² tiles with them
/// 0.69-0.76 against 0.73-0.80 s (`--memory 1.5`); eight in a batch 3.67-4.06 against
/// 3.97-4.23 s (Intel Xeon fam 6 mod 207, alternating). `segment` and bench's segment rows call it.
func prepareMemoryForSegmenting() {
    _ = nf_reuse_freed_memory(300 << 20)
    BufferPool.hugePages = true
}

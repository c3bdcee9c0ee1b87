import Foundation
import NanoTensor

/// Why a model file could not be read or written: names the file and the problem.
public struct ModelFileError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public var file: String
    public var reason: String
    public init(file: String, reason: String) { self.file = file; self.reason = reason }
    public var description: String { "\(file): \(reason)" }
    public var errorDescription: String? { description }
}

/// What a model needs besides its weights: how to prepare the input and read the output, and
/// where it came from.
public struct ModelMetadata: Codable, Equatable, Sendable {
    public var architecture: String
    public var config: UNetConfig
    /// Particle where p > threshold.
    public var threshold: Float
    /// nm per pixel of the training data (median of the training images' calibrations), when known.
    public var trainingPixelSizeNm: Double?
    /// Input preparation (older files hold "median3+max" or "none", read as the typed recipe).
    public var preprocessing: InputRecipe
    /// Where the weights come from.
    public var provenance: String
    /// The training data: folders and image counts, one line each.
    public var trainingData: [String]?
    /// The training recipe: every setting, by flag name.
    public var trainingRecipe: [String: String]?
    /// Metrics measured when the model was made (validation dice, pixel accuracy, …).
    public var metrics: [String: Double]?

    public init(architecture: String = "unet", config: UNetConfig, threshold: Float = 0.5,
                trainingPixelSizeNm: Double? = nil, preprocessing: InputRecipe = .pyNanoFind, provenance: String,
                trainingData: [String]? = nil, trainingRecipe: [String: String]? = nil, metrics: [String: Double]? = nil) {
        self.architecture = architecture; self.config = config; self.threshold = threshold
        self.trainingPixelSizeNm = trainingPixelSizeNm; self.preprocessing = preprocessing; self.provenance = provenance
        self.trainingData = trainingData; self.trainingRecipe = trainingRecipe; self.metrics = metrics
    }

    /// The training pixel sizes a model may record: those the readers take as calibrations
    /// (`MicrographReader.plausiblePixelSizeNm`), so that any model `train` writes loads again.
    public static let plausibleTrainingPixelSizeNm: ClosedRange<Double> = 1e-6...1e7

    /// Why a model with this metadata cannot be used (its file is edited, damaged or from a
    /// tool that wrote nonsense), or nil: checked when a model or a checkpoint is read, before
    /// any image meets it.
    public var problem: String? {
        if let p = config.problem { return "metadata describes an impossible network: \(p)" }
        guard threshold.isFinite, (0...1).contains(threshold) else { return "threshold \(threshold) is outside [0, 1]" }
        if let p = preprocessing.problem { return "preprocessing cannot be applied: \(p)" }
        if let p = trainingPixelSizeNm, !(p.isFinite && Self.plausibleTrainingPixelSizeNm.contains(p)) {
            return "training pixel size \(p) nm is outside \(Self.plausibleTrainingPixelSizeNm.lowerBound)…\(Self.plausibleTrainingPixelSizeNm.upperBound) nm"
        }
        return nil
    }
}

/// A U-Net with its metadata, loaded from or saved to a model file.
public struct Model: @unchecked Sendable {
    public var network: UNet
    public var metadata: ModelMetadata

    /// Why `segment` (and `evaluate`, `bench`'s segment rows) cannot run this model, or nil:
    /// they take a one-channel micrograph to two classes, carbon and particle. A valid file of
    /// another network is refused with this before any image meets it.
    public var segmentationProblem: String? {
        let c = network.config
        if c.inputChannels == 1 && c.classes == 2 { return nil }
        return "takes \(c.inputChannels) input channel(s) to \(c.classes) classes; NanoFind segments one-channel micrographs into 2 (carbon, particle)"
    }

    public init(network: UNet, metadata: ModelMetadata) { self.network = network; self.metadata = metadata }

    /// Loads a native `.safetensors` model or a Keras-2 HDF5 weight file (by content).
    public static func load(_ url: URL) throws -> Model {
        try checkRegularFile(url)
        guard let fh = FileHandle(forReadingAtPath: url.path) else {
            throw ModelFileError(file: url.path, reason: FileManager.default.fileExists(atPath: url.path) ? "cannot be read" : "no such file")
        }
        let head = (try? fh.read(upToCount: 8)) ?? Data()
        try? fh.close()
        if head.starts(with: [0x89, 0x48, 0x44, 0x46]) { return try KerasWeights.load(url) }
        return try SafeTensorsModel.load(url)
    }
}

/// Model inputs must be regular files: a FIFO would block, a device could be endless.
func checkRegularFile(_ url: URL) throws {
    var st = stat()
    guard stat(url.path, &st) == 0 else {
        throw ModelFileError(file: url.path, reason: errno == ENOENT ? "no such file" : "cannot be read")
    }
    if (st.st_mode & S_IFMT) == S_IFDIR { throw ModelFileError(file: url.path, reason: "is a folder, not a model file") }
    guard (st.st_mode & S_IFMT) == S_IFREG else { throw ModelFileError(file: url.path, reason: "is not a regular file") }
}

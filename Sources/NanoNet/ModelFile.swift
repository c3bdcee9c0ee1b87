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

/// What a model needs besides its weights: how to prepare the input and read the output.
public struct ModelMetadata: Codable, Equatable, Sendable {
    public var architecture: String
    public var config: UNetConfig
    /// Particle where p > threshold.
    public var threshold: Float
    /// nm per pixel of the training data, when known.
    public var trainingPixelSizeNm: Double?
    /// Input preparation: "median3+max" (pyNanoFind: 3×3 median filter, then divide by the
    /// maximum to scale to [0, 1]) or "none".
    public var preprocessing: String
    /// Where the weights come from.
    public var provenance: String

    public init(architecture: String = "unet", config: UNetConfig, threshold: Float = 0.5,
                trainingPixelSizeNm: Double? = nil, preprocessing: String = "median3+max", provenance: String) {
        self.architecture = architecture; self.config = config; self.threshold = threshold
        self.trainingPixelSizeNm = trainingPixelSizeNm; self.preprocessing = preprocessing; self.provenance = provenance
    }
}

/// A U-Net with its metadata, loaded from or saved to a model file.
public struct Model: @unchecked Sendable {
    public var network: UNet
    public var metadata: ModelMetadata

    public init(network: UNet, metadata: ModelMetadata) { self.network = network; self.metadata = metadata }

    /// Loads a native `.safetensors` model or a Keras-2 HDF5 weight file (by content).
    public static func load(_ url: URL) throws -> Model {
        guard let fh = FileHandle(forReadingAtPath: url.path) else {
            throw ModelFileError(file: url.path, reason: FileManager.default.fileExists(atPath: url.path) ? "cannot be read" : "no such file")
        }
        let head = (try? fh.read(upToCount: 8)) ?? Data()
        try? fh.close()
        if head.starts(with: [0x89, 0x48, 0x44, 0x46]) { return try KerasWeights.load(url) }
        return try SafeTensorsModel.load(url)
    }
}

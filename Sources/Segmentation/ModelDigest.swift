import Foundation
import MicrographIO
import NanoNet

extension Model {
    /// SHA-256 (hex) of what a segmentation's result depends on: every weight and batch-norm
    /// statistic with its name, and the architecture, threshold, training pixel size and input
    /// preparation. Provenance, training data and metrics are left out, so a checkpoint whose best
    /// epoch has not changed keeps its digest. Hashed from the loaded model itself: a file
    /// rewritten after it was read (a training still saving checkpoints) cannot lend its digest to
    /// results of the weights read before.
    public var contentDigest: String {
        struct Settings: Encodable {
            var architecture: String, config: UNetConfig, threshold: Float, trainingPixelSizeNm: Double?, preprocessing: InputRecipe
        }
        var digest = ContentDigest()
        for (name, tensor) in network.namedTensors {
            digest.add(name)
            digest.add(UnsafeRawBufferPointer(start: tensor.data, count: tensor.count * MemoryLayout<Float>.size))
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let m = metadata
        let settings = Settings(architecture: m.architecture, config: m.config, threshold: m.threshold,
                                trainingPixelSizeNm: m.trainingPixelSizeNm, preprocessing: m.preprocessing)
        // A Codable value of plain numbers and strings: encoding it cannot fail.
        let json = (try? encoder.encode(settings)) ?? Data()
        json.withUnsafeBytes { digest.add($0) }
        return digest.hexDigest()
    }
}

import Foundation
import NanoNet
import Segmentation
import XCTest

final class ModelDigestTests: XCTestCase {
    func model(seed: UInt64 = 3) -> Model {
        let net = UNet(config: .pyNanoFind, seed: seed)
        return Model(network: net, metadata: ModelMetadata(config: net.config, threshold: 0.5, trainingPixelSizeNm: 0.05,
                                                           provenance: "test", metrics: ["dice": 0.9]))
    }

    /// What changes a segmentation changes the digest; what only describes the model does not.
    func testTheDigestFollowsWeightsAndSettingsNotDescriptions() throws {
        let base = model()
        let digest = base.contentDigest
        XCTAssertEqual(digest.count, 64)
        XCTAssertEqual(model().contentDigest, digest, "same weights, same digest")
        var described = model()
        described.metadata.provenance = "best epoch (12) at step 4000"
        described.metadata.metrics = ["dice": 0.8, "steps": 4000]
        described.metadata.trainingData = ["somewhere: 12 images"]
        XCTAssertEqual(described.contentDigest, digest)

        let nudged = model()
        let (name, tensor) = nudged.network.namedTensors[3]
        var values = tensor.array
        values[0] = values[0].nextUp
        tensor.assign(from: values)
        XCTAssertNotEqual(nudged.contentDigest, digest, "one ulp of \(name)")
        XCTAssertNotEqual(model(seed: 4).contentDigest, digest)

        var other = model()
        other.metadata.threshold = 0.6
        XCTAssertNotEqual(other.contentDigest, digest, "threshold")
        other = model()
        other.metadata.trainingPixelSizeNm = 0.1
        XCTAssertNotEqual(other.contentDigest, digest, "training pixel size")
        other = model()
        other.metadata.preprocessing = .robust
        XCTAssertNotEqual(other.contentDigest, digest, "input preparation")
    }

    /// Saved and loaded again, the model has the digest it had in memory.
    func testTheDigestSurvivesASaveAndLoad() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("digest-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        let m = model()
        try SafeTensorsModel.save(m, to: url)
        XCTAssertEqual(try Model.load(url).contentDigest, m.contentDigest)
    }
}

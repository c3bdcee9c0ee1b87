import Foundation
import MicrographIO
import NanoTensor
import XCTest

/// Locates ../shared (beside the package root) and reads its float32 .npy fixtures.
enum SharedFixtures {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let shared = packageRoot.deletingLastPathComponent().appendingPathComponent("shared")
    static let pynanofind = shared.appendingPathComponent("reference/pynanofind")
    static let models = ["unet32_AuCdSeDots_09_final", "unet481632_AuDots_07b_final", "unet481632_CdSeDots_08b_final"]
    static let inputs = ["input_lattice_512", "input_noise_512", "input_lattice_256", "input_rect_128x384"]

    static func require(_ url: URL) throws {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw XCTSkip("../shared is not present (\(url.path)); skipping the TensorFlow reference comparison")
        }
    }

    static func modelURL(_ stem: String) -> URL { pynanofind.appendingPathComponent("models/\(stem).h5") }

    /// A float32 .npy as (values, shape).
    static func floats(_ url: URL) throws -> ([Float], [Int]) {
        let a = try NPYFile.read(url)
        XCTAssertEqual(a.dtype, .float32)
        let v = a.data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        return (v, a.shape)
    }

    /// An H×W×C (NHWC without N) array as a (1, C, H, W) tensor.
    static func nhwcToTensor(_ v: [Float], _ shape: [Int]) -> Tensor {
        let h = shape[0], w = shape[1], c = shape.count > 2 ? shape[2] : 1
        let t = Tensor(Shape(1, c, h, w))
        for y in 0..<h { for x in 0..<w { for k in 0..<c { t[0, k, y, x] = v[(y * w + x) * c + k] } } }
        return t
    }
}

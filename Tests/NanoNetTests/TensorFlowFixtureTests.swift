import Foundation
import MicrographIO
import NanoNet
import NanoTensor
import TestSupport
import XCTest

/// The published pyNanoFind models through our engine against TensorFlow's outputs
/// (../shared/reference/pynanofind/fixtures): 12 softmax outputs within 1e-5, as the README
/// states (issue 13 asks 1e-4 at every vector width; measured 6.9e-6 at 16, 8 and 4 lanes), and
/// every stored intermediate activation within 1e-4 + 1e-5·|x|.
final class TensorFlowFixtureTests: XCTestCase {
    func testTwelveSoftmaxOutputsMatchTensorFlow() throws {
        try SharedFixtures.require(SharedFixtures.pynanofind)
        var worst: Float = 0
        for stem in SharedFixtures.models {
            let model = try Model.load(SharedFixtures.modelURL(stem))
            XCTAssertEqual(model.network.config, .pyNanoFind)
            XCTAssertEqual(model.network.parameterCount, 65_490)
            let engine = UNetInference(model.network)
            for input in SharedFixtures.inputs {
                let (xv, xs) = try SharedFixtures.floats(SharedFixtures.pynanofind.appendingPathComponent("fixtures/\(input).npy"))
                let x = Tensor(Shape(1, 1, xs[0], xs[1]), values: xv)
                let p = engine.probabilities(x)
                let (ev, es) = try SharedFixtures.floats(SharedFixtures.pynanofind.appendingPathComponent("fixtures/out__\(stem)__\(input).npy"))
                let expected = SharedFixtures.nhwcToTensor(ev, es)
                XCTAssertEqual(p.shape, expected.shape)
                let d = maxAbsDifference(p.array, expected.array)
                worst = worse(worst, d)
                XCTAssertLessThanOrEqual(d, 1e-5, "\(stem) on \(input): max |diff| \(d)")
            }
        }
        print("TensorFlowFixtureTests: 12 softmax outputs, worst max |diff| = \(worst)")
    }

    func testNamedActivationsMatchTensorFlow() throws {
        try SharedFixtures.require(SharedFixtures.pynanofind)
        let model = try Model.load(SharedFixtures.modelURL(SharedFixtures.models[0]))
        let (xv, xs) = try SharedFixtures.floats(SharedFixtures.pynanofind.appendingPathComponent("fixtures/input_rect_128x384.npy"))
        var seen: [String: Tensor] = [:]
        let tape = Tape()
        let logits = model.network.forward(Variable(Tensor(Shape(1, 1, xs[0], xs[1]), values: xv)), tape: tape, training: false) { name, t in
            seen[name] = t.copy()
        }
        seen["final_conv"] = logits.value
        let dir = SharedFixtures.pynanofind.appendingPathComponent("fixtures/activations")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("act__") && $0.hasSuffix(".npy") }
        XCTAssertEqual(files.count, 29)
        var checked = 0
        for f in files.sorted() {
            let layer = String(f.dropFirst(5).dropLast(4))
            guard let ours = seen[layer] else { XCTFail("no activation named \(layer)"); continue }
            let (ev, es) = try SharedFixtures.floats(dir.appendingPathComponent(f))
            let expected = SharedFixtures.nhwcToTensor(ev, es)
            XCTAssertEqual(ours.shape, expected.shape, layer)
            var bad = 0
            for (a, b) in zip(ours.array, expected.array) where abs(a - b) > 1e-4 + 1e-5 * abs(b) { bad += 1 }
            XCTAssertEqual(bad, 0, "\(layer): \(bad) values outside 1e-4 + 1e-5|x|")
            checked += 1
        }
        print("TensorFlowFixtureTests: \(checked) activations within 1e-4 + 1e-5|x|")
    }
}

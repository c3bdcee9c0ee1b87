import NanoNet
import NanoTensor
import XCTest

/// The fused training ops (BN+ReLU, upsample+concat+conv) give the same gradients as the
/// separate ops they replace, through a whole network.
final class FusedOpsAgreementTests: XCTestCase {
    func testFusedAndSeparateOpsGiveTheSameGradients() {
        func grads(fused: Bool) -> [[Float]] {
            let net = UNet(config: UNetConfig(widths: [2, 3], centreWidth: 4, dropout: 0.2), seed: 5)
            var rng = SplitMix64(seed: 3)
            let x = Variable(Tensor.randomNormal(Shape(2, 1, 8, 12), std: 3, rng: &rng), requiresGrad: true)
            let tape = Tape()
            // An observer makes the network run BN and ReLU as separate ops.
            let logits = net.forward(x, tape: tape, training: true, dropoutSeed: 3, observe: fused ? nil : { _, _ in })
            tape.backward(tape.weightedSum(logits, Tensor.randomNormal(logits.shape, rng: &rng)))
            return [x.grad!.array] + net.parameters.map { $0.grad?.array ?? [] }
        }
        let a = grads(fused: true), b = grads(fused: false)
        for (i, (ga, gb)) in zip(a, b).enumerated() {
            let scale = max(1e-6, gb.map(abs).max() ?? 0)
            let diff = zip(ga, gb).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(diff, 1e-4 * scale, "gradient \(i): fused and separate differ by \(diff) (scale \(scale))")
        }
    }
}

import NanoNet
import NanoTensor
import XCTest

/// `Tape.stageObserver` (what `bench --only train_stage_512` reads): every layer of a training
/// step reports its forward once and its backward steps, under the plan's names, and observing
/// changes no value.
final class TapeStageTests: XCTestCase {
    func testEveryLayerReportsItsForwardAndBackwardWithoutChangingTheGradients() {
        let config = UNetConfig(widths: [2, 3], centreWidth: 4, dropout: 0.2)
        func step(observed: Bool) -> (gradients: [[Float]], forward: [String], backward: [String: Int]) {
            let net = UNet(config: config, seed: 5)
            var rng = SplitMix64(seed: 3)
            let x = Tensor.randomNormal(Shape(2, 1, 8, 12), std: 3, rng: &rng)
            let labels = Tensor(Shape(2, 1, 8, 12))
            for k in 0..<labels.count { labels.data[k] = rng.nextFloat() < 0.3 ? 1 : 0 }
            let tape = Tape()
            var forward: [String] = [], backward: [String: Int] = [:]
            if observed {
                tape.stageObserver = { name, isBackward, seconds in
                    XCTAssertGreaterThanOrEqual(seconds, 0)
                    if isBackward { backward[name, default: 0] += 1 } else { forward.append(name) }
                }
            }
            let logits = net.forward(Variable(x), tape: tape, training: true, dropoutSeed: 3)
            tape.beginStage("loss")
            tape.backward(tape.loss(.crossEntropy, logits: logits, labels: labels))
            return (net.parameters.map { $0.grad?.array ?? [] }, forward, backward)
        }
        let plain = step(observed: false), observed = step(observed: true)
        XCTAssertEqual(plain.gradients, observed.gradients, "observing the stages changed a gradient")
        XCTAssertTrue(plain.forward.isEmpty && plain.backward.isEmpty)

        let plan = UNetPlan(config)
        var expected = plan.encoders.map(\.name) + plan.centre.map(\.name)
        for level in stride(from: config.depth - 1, through: 0, by: -1) {
            let (first, second) = plan.decoders[level]
            expected.append(first.name)
            expected.append(second.trainingOp == .convBatchNormHead ? second.name + "+" + plan.head.name : second.name)
        }
        if plan.decoders[0].second.trainingOp != .convBatchNormHead { expected.append(plan.head.name) }
        expected.append("loss")
        XCTAssertEqual(observed.forward, expected, "each stage's forward once, in the plan's order")
        // Every stage recorded at least one backward step (the loss its softmax's), and no step
        // fell outside a stage.
        XCTAssertEqual(Set(observed.backward.keys), Set(expected))
    }
}

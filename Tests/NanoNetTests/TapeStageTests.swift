import NanoNet
import NanoTensor
import XCTest

/// `Tape.stageObserver` (what `bench --only train_stage_512` reads): every layer of a training
/// step reports its forward once and its backward steps, under the plan's names and in reverse
/// order, with the fused ops and with the separate ones, and observing changes no value.
final class TapeStageTests: XCTestCase {
    let config = UNetConfig(widths: [2, 3], centreWidth: 4, dropout: 0.2)

    /// One training step's gradients and what the observer saw: the forward stages in order, and
    /// the backward steps' stages in the order they ran.
    func step(observed: Bool, separateOps: Bool) -> (gradients: [[Float]], forward: [String], backward: [String]) {
        let net = UNet(config: config, seed: 5)
        var rng = SplitMix64(seed: 3)
        let x = Tensor.randomNormal(Shape(2, 1, 8, 12), std: 3, rng: &rng)
        let labels = Tensor(Shape(2, 1, 8, 12))
        for k in 0..<labels.count { labels.data[k] = rng.nextFloat() < 0.3 ? 1 : 0 }
        let tape = Tape()
        var forward: [String] = [], backward: [String] = []
        if observed {
            tape.stageObserver = { name, isBackward, seconds in
                XCTAssertGreaterThanOrEqual(seconds, 0)
                if isBackward { backward.append(name) } else { forward.append(name) }
            }
        }
        // An observer of the activations makes the network run its separate ops.
        let logits = net.forward(Variable(x), tape: tape, training: true, dropoutSeed: 3, observe: separateOps ? { _, _ in } : nil)
        tape.beginStage("loss")
        tape.backward(tape.loss(.crossEntropy, logits: logits, labels: labels))
        return (net.parameters.map { $0.grad?.array ?? [] }, forward, backward)
    }

    /// The stages in forward order: every convolution by its plan name, the last block fused
    /// with the head joined by "+" where the fused ops run, then the loss.
    func expectedStages(separateOps: Bool) -> [String] {
        let plan = UNetPlan(config)
        var expected = plan.encoders.map(\.name) + plan.centre.map(\.name)
        for level in stride(from: config.depth - 1, through: 0, by: -1) {
            let (first, second) = plan.decoders[level]
            expected.append(first.name)
            let joined = !separateOps && second.trainingOp == .convBatchNormHead
            expected.append(joined ? second.name + "+" + plan.head.name : second.name)
            if level == 0 && !joined { expected.append(plan.head.name) }
        }
        return expected + ["loss"]
    }

    func testEveryLayerReportsItsForwardAndBackwardWithoutChangingTheGradients() {
        for separateOps in [false, true] {
            let plain = step(observed: false, separateOps: separateOps), observed = step(observed: true, separateOps: separateOps)
            XCTAssertEqual(plain.gradients, observed.gradients, "observing the stages changed a gradient (separate ops: \(separateOps))")
            XCTAssertTrue(plain.forward.isEmpty && plain.backward.isEmpty)
            let expected = expectedStages(separateOps: separateOps)
            XCTAssertEqual(observed.forward, expected, "each stage's forward once, in the plan's order (separate ops: \(separateOps))")
            // The backward steps run in reverse: their stages, each run of one stage's steps
            // taken once, are the forward's reversed (every stage recorded a step, none outside).
            var runs: [String] = []
            for name in observed.backward where runs.last != name { runs.append(name) }
            XCTAssertEqual(runs, expected.reversed(), "backward stages (separate ops: \(separateOps))")
        }
    }

    /// An observer set in the middle of a pass reports nothing of it (not a stage timed across
    /// the change), and the pass's gradients are those of an unobserved one.
    func testAnObserverSetMidPassReportsNothingOfThatPass() {
        let net = UNet(config: config, seed: 5), reference = UNet(config: config, seed: 5)
        var rng = SplitMix64(seed: 3)
        let x = Tensor.randomNormal(Shape(2, 1, 8, 12), std: 3, rng: &rng)
        let weights = Tensor.randomNormal(Shape(2, 2, 8, 12), rng: &rng)
        var reports = 0
        let tape = Tape()
        tape.stageObserver = { _, _, _ in }
        let logits = net.forward(Variable(x), tape: tape, training: true, dropoutSeed: 3)
        tape.stageObserver = { _, _, _ in reports += 1 }
        tape.backward(tape.weightedSum(logits, weights))
        XCTAssertEqual(reports, 0)
        let plainTape = Tape()
        plainTape.backward(plainTape.weightedSum(reference.forward(Variable(x), tape: plainTape, training: true, dropoutSeed: 3), weights))
        XCTAssertEqual(net.parameters.map { $0.grad?.array ?? [] }, reference.parameters.map { $0.grad?.array ?? [] })
    }
}

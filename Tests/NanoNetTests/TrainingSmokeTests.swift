import NanoNet
import NanoTensor
import XCTest

/// The U-Net must overfit a handful of small synthetic tiles, reproducibly.
final class TrainingSmokeTests: XCTestCase {
    /// 8 tiles of 32×32: a disc of lattice fringes (the particle) on a noisy background.
    func syntheticBatch() -> (Tensor, Tensor) {
        var rng = SplitMix64(seed: 77)
        let n = 8, s = 32
        let x = Tensor(Shape(n, 1, s, s)), t = Tensor(Shape(n, 1, s, s))
        for i in 0..<n {
            let cx = Float(8 + Int(rng.next() % 16)), cy = Float(8 + Int(rng.next() % 16)), r = Float(5 + Int(rng.next() % 4))
            let angle = rng.nextFloat() * .pi
            for y in 0..<s { for xx in 0..<s {
                let inside = (Float(xx) - cx) * (Float(xx) - cx) + (Float(y) - cy) * (Float(y) - cy) < r * r
                var v = 0.5 + 0.05 * rng.nextGaussian()
                if inside { v += 0.3 * cos((Float(xx) * cos(angle) + Float(y) * sin(angle)) * 2 * .pi / 4) }
                x[i, 0, y, xx] = v
                t[i, 0, y, xx] = inside ? 1 : 0
            } }
        }
        return (x, t)
    }

    func train(seed: UInt64, steps: Int, pool: ThreadPool = .shared) -> (first: Float, last: Float, weights: [Float]) {
        let net = UNet(config: .pyNanoFind, seed: seed)
        let adam = Adam(learningRate: 3e-3)
        let (x, t) = syntheticBatch()
        var first: Float = 0, last: Float = 0
        for step in 0..<steps {
            let tape = Tape(pool: pool)
            let logits = net.forward(Variable(x), tape: tape, training: true, dropoutSeed: UInt64(step))
            let loss = tape.loss(.crossEntropy, logits: logits, labels: t)
            tape.backward(loss)
            adam.update(net.parameters)
            if step == 0 { first = loss.value.data[0] }
            last = loss.value.data[0]
        }
        return (first, last, net.namedTensors.flatMap { $0.1.array })
    }

    func testOverfitsEightTilesReproducibly() {
        let a = train(seed: 1, steps: 150)
        print("TrainingSmokeTests: cross-entropy \(a.first) -> \(a.last) (\(a.first / a.last)x) in 150 steps")
        XCTAssertGreaterThanOrEqual(a.first / a.last, 10, "loss fell only from \(a.first) to \(a.last)")
        // Same seed on one thread instead of two: bit-identical weights (no result depends on scheduling).
        let b = train(seed: 1, steps: 150, pool: ThreadPool(threads: 1, pin: false))
        XCTAssertEqual(a.weights, b.weights, "same seed must give bit-identical weights")
    }
}

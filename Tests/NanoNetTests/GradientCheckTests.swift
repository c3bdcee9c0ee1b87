import NanoNet
import NanoTensor
import TestSupport
import XCTest

/// Every differentiable op and loss against central finite differences.
final class GradientCheckTests: XCTestCase {
    /// Compares the tape's gradients of `f` with respect to `inputs` with (f(v+ε) − f(v−ε)) / 2ε
    /// at `samples` random positions per input. `f` returns the output whose Double-summed
    /// weighted sum (with fixed random weights) is the scalar being differentiated, or a scalar loss.
    func check(_ name: String, _ inputs: [Variable], eps: Float = 1e-2, tol: Double = 2e-2, samples: Int = 12,
               seed: UInt64 = 9, file: StaticString = #filePath, line: UInt = #line, _ f: (Tape) -> Variable) {
        var rng = SplitMix64(seed: seed)
        let probe = f(Tape())
        let weights = probe.value.count == 1 ? Tensor(probe.shape, repeating: 1)
                                             : Tensor.randomNormal(probe.shape, rng: &rng)
        func scalar() -> Double {
            let y = f(Tape())
            var s = 0.0
            for k in 0..<y.value.count { s += Double(y.value.data[k]) * Double(weights.data[k]) }
            return s
        }
        for v in inputs { v.zeroGrad() }
        let tape = Tape()
        let loss = tape.weightedSum(f(tape), weights)
        tape.backward(loss)
        for (vi, v) in inputs.enumerated() {
            guard let g = v.grad else { XCTFail("\(name): input \(vi) got no gradient", file: file, line: line); continue }
            // Tolerance relative to the size of this input's gradient (not an absolute floor, which
            // would let a zero gradient pass when the true one is small).
            let rms = (g.array.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(g.count)).squareRoot()
            XCTAssertGreaterThan(rms, 0, "\(name): input \(vi) has an all-zero gradient", file: file, line: line)
            for _ in 0..<samples {
                let k = Int(rng.next() % UInt64(v.value.count))
                let old = v.value.data[k]
                v.value.data[k] = old + eps; let lp = scalar()
                v.value.data[k] = old - eps; let lm = scalar()
                v.value.data[k] = old
                let numeric = (lp - lm) / Double(2 * eps)
                let analytic = Double(g.data[k])
                XCTAssertLessThanOrEqual(abs(numeric - analytic), tol * max(rms, abs(numeric)),
                                         "\(name): input \(vi)[\(k)] analytic \(analytic) numeric \(numeric)", file: file, line: line)
            }
        }
    }

    func param(_ s: Shape, _ seed: UInt64, std: Float = 1) -> Variable {
        var rng = SplitMix64(seed: seed)
        return Variable(Tensor.randomNormal(s, std: std, rng: &rng), requiresGrad: true)
    }

    func testConv3x3() {
        let x = param(Shape(2, 3, 5, 19), 1), w = param(Shape(5, 3, 3, 3), 2), b = param(Shape(1, 1, 1, 5), 3)
        check("conv3x3", [x, w, b]) { $0.conv3x3(x, weight: w, bias: b) }
    }

    func testConvOfFusedConcatUpsampleReLU() {
        let skip = param(Shape(2, 3, 6, 10), 31), low = param(Shape(2, 2, 3, 5), 32)
        let w = param(Shape(4, 5, 3, 3), 33), b = param(Shape(1, 1, 1, 4), 34)
        check("conv3x3([skip, upsample(low)])", [skip, low, w, b]) {
            $0.conv3x3([(skip, .copy), (low, .upsample2x)], weight: w, bias: b)
        }
        // The same through the separate ops gives the same values.
        let t = Tape()
        let fused = t.conv3x3([(skip, .copy), (low, .upsample2x)], weight: w, bias: b).value.array
        let plain = t.conv3x3(t.concat([skip, t.upsample2x(low)]), weight: w, bias: b).value.array
        // Equal up to round-off: the fused one sums the weights each upsampled pixel meets first.
        XCTAssertLessThan(maxAbsDifference(fused, plain), 1e-5 * largest(plain.map(abs))!)
        // ReLU on the way in: away from kinks
        let spaced = Variable(Tensor(Shape(1, 2, 4, 6), values: (0..<48).map { Float($0) * 0.41 - 9.9 }), requiresGrad: true)
        let w2 = param(Shape(3, 2, 3, 3), 35), b2 = param(Shape(1, 1, 1, 3), 36)
        check("conv3x3([relu(x)])", [spaced, w2, b2]) { $0.conv3x3([(spaced, .relu)], weight: w2, bias: b2) }
    }

    func testConv1x1() {
        let x = param(Shape(2, 4, 3, 7), 4), w = param(Shape(2, 4, 1, 1), 5), b = param(Shape(1, 1, 1, 2), 6)
        check("conv1x1", [x, w, b]) { $0.conv1x1(x, weight: w, bias: b) }
    }

    func testReLUPoolUpsampleConcat() {
        // Values spaced well apart so no finite-difference step crosses a kink or a tie.
        var rng = SplitMix64(seed: 7)
        let base = (0..<(2 * 3 * 6 * 8)).map { Float($0) * 0.37 }.shuffled(using: &rng)
        let x = Variable(Tensor(Shape(2, 3, 6, 8), values: base.map { $0 - 26 }), requiresGrad: true)
        check("relu", [x], eps: 1e-2) { $0.relu(x) }
        check("maxPool2x2", [x], eps: 1e-2) { $0.maxPool2x2(x) }
        check("upsample2x", [x]) { $0.upsample2x(x) }
        let y = param(Shape(2, 2, 6, 8), 8)
        check("concat", [x, y]) { $0.concat([x, y]) }
    }

    func testDropoutWithFixedSeed() {
        let x = param(Shape(2, 3, 8, 8), 9)
        check("dropout", [x]) { $0.dropout(x, rate: 0.2, seed: 42) }
    }

    func testBatchNormTrainingAndInference() {
        let x = param(Shape(3, 4, 5, 6), 10, std: 2)
        let bn = BatchNorm(channels: 4, epsilon: 1e-3, momentum: 0.99, name: "bn")
        var rng = SplitMix64(seed: 11)
        for k in 0..<4 { bn.gamma.value.data[k] = 0.5 + rng.nextFloat(); bn.beta.value.data[k] = rng.nextGaussian() }
        check("batchNorm(training)", [x, bn.gamma, bn.beta], eps: 1e-2, tol: 3e-2) { $0.batchNorm(x, bn, training: true) }
        for k in 0..<4 { bn.runningMean.data[k] = rng.nextGaussian(); bn.runningVariance.data[k] = 0.5 + rng.nextFloat() }
        check("batchNorm(inference)", [x, bn.gamma, bn.beta]) { $0.batchNorm(x, bn, training: false) }
        check("batchNormReLU(training)", [x, bn.gamma, bn.beta], eps: 1e-3, tol: 3e-2) { $0.batchNormReLU(x, bn, training: true) }
        let t = Tape()
        XCTAssertEqual(t.batchNormReLU(x, bn, training: true).value.array,
                       t.relu(t.batchNorm(x, bn, training: true)).value.array)
    }

    func labels(_ s: Shape) -> Tensor {
        var rng = SplitMix64(seed: 12)
        let t = Tensor(Shape(s.n, 1, s.h, s.w))
        for k in 0..<t.count { t.data[k] = rng.nextFloat() < 0.4 ? 1 : 0 }
        return t
    }

    func testLosses() {
        let z = param(Shape(2, 2, 4, 5), 13)
        let t = labels(z.shape)
        check("crossEntropy", [z], eps: 1e-3, tol: 2e-2) { $0.loss(.crossEntropy, logits: z, labels: t) }
        check("dice", [z], eps: 1e-3, tol: 2e-2) { $0.loss(.dice, logits: z, labels: t) }
        check("bce+dice", [z], eps: 1e-3, tol: 2e-2) { $0.loss(.crossEntropyDice, logits: z, labels: t) }
        let z3 = param(Shape(1, 3, 4, 4), 14)
        let t3 = labels(z3.shape)
        for k in stride(from: 0, to: t3.count, by: 5) { t3.data[k] = 2 }
        check("crossEntropy(3 classes)", [z3], eps: 1e-3, tol: 2e-2) { $0.loss(.crossEntropy, logits: z3, labels: t3) }
    }

    func testWholeSmallUNetDirectionalDerivative() {
        // Inference mode only: in training mode the batch statistics of a 2-image, 2×3-pixel centre
        // make the loss so curved that central differences wander by a few per cent with the step.
        // Training-mode BN, BN+ReLU and dropout are checked op by op above, and the fused training
        // ops against the separate ones in FusedOpsAgreementTests.
        wholeUNetDirectionalCheck(training: false)
    }

    func wholeUNetDirectionalCheck(training: Bool) {
        // The whole network's gradient against a central difference along one random direction in
        // the space of all parameters and the input (per-element differences through a whole
        // network cross too many ReLU kinks to be exact). Batch norm in inference mode with
        // non-trivial running statistics, or in training mode with batch statistics and dropout
        // (a fixed seed; the running averages it updates do not enter the training-mode output).
        let net = UNet(config: UNetConfig(widths: [2, 3], centreWidth: 4, dropout: 0.2), seed: 5)
        var rng = SplitMix64(seed: 40)
        for name in net.layerOrder {
            guard let bn = net.norms[name] else { continue }
            for k in 0..<bn.channels {
                bn.runningMean.data[k] = 0.2 * rng.nextGaussian(); bn.runningVariance.data[k] = 0.5 + rng.nextFloat()
            }
        }
        let x = param(Shape(2, 1, 8, 12), 15, std: 3)
        let vars = [x] + net.parameters
        let weights = Tensor.randomNormal(Shape(2, 2, 8, 12), rng: &rng)
        func scalar() -> Double {
            let y = net.forward(x, tape: Tape(), training: training, dropoutSeed: 3)
            return (0..<y.value.count).reduce(0.0) { $0 + Double(y.value.data[$1]) * Double(weights.data[$1]) }
        }
        let tape = Tape()
        tape.backward(tape.weightedSum(net.forward(x, tape: tape, training: training, dropoutSeed: 3), weights))
        // A unit direction: small steps in every coordinate, so few ReLU kinks are crossed.
        let directions = vars.map { Tensor.randomNormal($0.shape, rng: &rng) }
        let norm = directions.reduce(0.0) { $0 + $1.array.reduce(0.0) { $0 + Double($1) * Double($1) } }.squareRoot()
        for d in directions { for k in 0..<d.count { d.data[k] /= Float(norm) } }
        var analytic = 0.0
        for (v, d) in zip(vars, directions) {
            for k in 0..<v.value.count { analytic += Double(v.grad!.data[k]) * Double(d.data[k]) }
        }
        let original = vars.map { $0.value.copy() }
        func shifted(_ e: Float) -> Double {
            for (v, d) in zip(vars, directions) { for k in 0..<v.value.count { v.value.data[k] += e * d.data[k] } }
            defer { for (v, o) in zip(vars, original) { v.value.data.update(from: o.data, count: o.count) } }  // exact restore
            return scalar()
        }
        let eps: Float = 3e-3
        let numeric = (shifted(eps) - shifted(-eps)) / Double(2 * eps)
        XCTAssertEqual(numeric, analytic, accuracy: 0.01 * abs(analytic), "directional derivative (training: \(training))")
        XCTAssertGreaterThan(abs(analytic), 0.1)
    }

    func testConvBiasBeforeTrainingBatchNormGetsNoGradient() {
        // The batch mean absorbs a bias that feeds a training-mode batch norm: its gradient is 0.
        let net = UNet(config: UNetConfig(widths: [2, 3], centreWidth: 4, dropout: 0.2), seed: 5)
        let x = param(Shape(2, 1, 8, 12), 15, std: 3)
        var rng = SplitMix64(seed: 1)
        let tape = Tape()
        let logits = net.forward(x, tape: tape, training: true, dropoutSeed: 3)
        tape.backward(tape.weightedSum(logits, Tensor.randomNormal(logits.shape, rng: &rng)))
        for (name, conv) in net.convs where name != "final_conv" {
            let weightScale = conv.weight.grad!.array.map(abs).max()!
            XCTAssertGreaterThan(weightScale, 1e-3, name)
            XCTAssertLessThan(largest(conv.bias.grad!.array.map(abs))!, 1e-5 * max(1, weightScale), name)
        }
        XCTAssertGreaterThan(largest(net.convs["final_conv"]!.bias.grad!.array.map(abs))!, 1e-3)
    }
}

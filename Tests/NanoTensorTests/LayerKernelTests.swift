import NanoTensor
import TestSupport
import XCTest

/// Pooling, upsampling, concat, batch-norm statistics and dropout against hand-computed values.
final class LayerKernelTests: XCTestCase {
    func testMaxPoolAndBackwardByHand() {
        let x = Tensor(Shape(1, 1, 2, 4), values: [1, 5, -2, -3, 4, 2, -1, -7])
        XCTAssertEqual(PoolingKernels.maxPool2x2(x).array, [5, -1])
        let dx = PoolingKernels.maxPool2x2Backward(x: x, dy: Tensor(Shape(1, 1, 1, 2), values: [10, 20]))
        XCTAssertEqual(dx.array, [0, 10, 0, 0, 0, 0, 20, 0])
    }

    func testUpsampleAndBackwardByHand() {
        let x = Tensor(Shape(1, 1, 1, 2), values: [1, 2])
        XCTAssertEqual(PoolingKernels.upsample2x(x).array, [1, 1, 2, 2, 1, 1, 2, 2])
        let g = Tensor(Shape(1, 1, 2, 4), values: [1, 2, 3, 4, 5, 6, 7, 8])
        XCTAssertEqual(PoolingKernels.upsample2xBackward(dy: g).array, [14, 22])
    }

    func testConcatAndSplit() {
        let a = Tensor(Shape(2, 1, 1, 2), values: [1, 2, 3, 4])
        let b = Tensor(Shape(2, 2, 1, 2), values: [5, 6, 7, 8, 9, 10, 11, 12])
        let c = ChannelKernels.concat([a, b])
        XCTAssertEqual(c.array, [1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12])
        let parts = ChannelKernels.split(c, channels: [1, 2])
        XCTAssertEqual(parts[0].array, a.array)
        XCTAssertEqual(parts[1].array, b.array)
    }

    func testBatchNormStatistics() {
        let x = Tensor(Shape(2, 2, 1, 2), values: [1, 3, 10, 10, 5, 7, 20, 40])
        let (m, v) = BatchNormKernels.statistics(x)
        XCTAssertEqual(m, [4, 20])
        XCTAssertEqual(v[0], 5, accuracy: 1e-5)    // (9+1+1+9)/4
        XCTAssertEqual(v[1], 150, accuracy: 1e-3)  // (100+100+0+400)/4
    }

    func testDropoutMaskIsSeededAndScaled() {
        let a = ElementwiseKernels.dropoutMask(Shape(2, 3, 32, 32), rate: 0.2, seed: 7)
        let b = ElementwiseKernels.dropoutMask(Shape(2, 3, 32, 32), rate: 0.2, seed: 7)
        XCTAssertEqual(a.array, b.array)
        let zeros = a.array.filter { $0 == 0 }.count
        XCTAssertEqual(Double(zeros) / Double(a.count), 0.2, accuracy: 0.03)
        XCTAssertTrue(a.array.allSatisfy { $0 == 0 || $0 == 1.25 })
        // Planes draw independent masks: plane c+1 must not be plane c shifted by one draw, and
        // two planes agree on about 0.8² + 0.2² = 68 % of pixels, not all.
        let plane = 32 * 32
        var shifted = 0, same = 0
        for k in 0..<(plane - 1) { if a.data[plane + k] == a.data[k + 1] { shifted += 1 } }
        for k in 0..<plane { if a.data[plane + k] == a.data[k] { same += 1 } }
        XCTAssertLessThan(Double(shifted) / Double(plane), 0.8)
        XCTAssertEqual(Double(same) / Double(plane), 0.68, accuracy: 0.05)
        XCTAssertNotEqual(ElementwiseKernels.dropoutMask(Shape(2, 3, 32, 32), rate: 0.2, seed: 8).array, a.array)
    }

    func testVectorisedMaxPoolBackwardMatchesReference() {
        var rng = SplitMix64(seed: 31)
        for (h, w) in [(2, 2), (4, 6), (6, 34), (5, 33), (8, 64), (3, 130), (2, 18), (4, 16)] {
            // Values from a small set, so windows often tie.
            let x = Tensor(Shape(2, 3, h, w))
            for k in 0..<x.count { x.data[k] = Float(rng.next() % 4) }
            let dy = Tensor.randomNormal(Shape(2, 3, h / 2, w / 2), rng: &rng)
            XCTAssertEqual(PoolingKernels.maxPool2x2Backward(x: x, dy: dy).array,
                           PoolingReference.maxPool2x2Backward(x: x, dy: dy).array, "\(h)x\(w)")
        }
    }

    func testVectorisedMaxPoolMatchesReference() {
        var rng = SplitMix64(seed: 35)
        for (h, w) in [(2, 2), (4, 34), (5, 67), (8, 64), (2, 130)] {
            let x = Tensor.randomNormal(Shape(2, 3, h, w), rng: &rng)
            let ref = PoolingReference.maxPool2x2(x)
            XCTAssertEqual(PoolingKernels.maxPool2x2(x).array, ref.array, "\(h)x\(w)")
            let planes = PaddedPlanes(n: 2, channels: 3, height: h / 2, width: w / 2)
            planes.fillMaxPool2x2(of: x)
            XCTAssertEqual(planes.interior().array, ref.array, "into planes \(h)x\(w)")
        }
    }

    func testMaxPoolBackwardAddingIntoAnExistingGradient() {
        var rng = SplitMix64(seed: 32)
        for (h, w) in [(4, 6), (5, 33), (8, 64), (2, 34)] {
            let x = Tensor(Shape(2, 3, h, w))
            for k in 0..<x.count { x.data[k] = Float(rng.next() % 4) }
            let dy = Tensor.randomNormal(Shape(2, 3, h / 2, w / 2), rng: &rng)
            let existing = Tensor.randomNormal(x.shape, rng: &rng)
            let expected = zip(existing.array, PoolingReference.maxPool2x2Backward(x: x, dy: dy).array).map { $0 + $1 }
            PoolingKernels.maxPool2x2Backward(x: x, dy: dy, addingInto: existing)
            XCTAssertEqual(existing.array, expected, "\(h)x\(w)")
        }
    }

    func testVectorisedUpsampleAndReLUBackwardMatchReference() {
        var rng = SplitMix64(seed: 33)
        for (h, w) in [(2, 2), (4, 6), (6, 34), (8, 64), (2, 66), (4, 32)] {
            let dy = Tensor.randomNormal(Shape(2, 3, h, w), rng: &rng)
            XCTAssertEqual(PoolingKernels.upsample2xBackward(dy: dy).array,
                           PoolingReference.upsample2xBackward(dy: dy).array, "\(h)x\(w)")
            let x = Tensor.randomNormal(Shape(2, 3, h, w + 1), rng: &rng)
            for k in stride(from: 0, to: x.count, by: 7) { x.data[k] = 0 }  // exact zeros get no gradient
            let g = Tensor.randomNormal(x.shape, rng: &rng)
            XCTAssertEqual(ElementwiseKernels.reluBackward(x: x, dy: g).array,
                           PoolingReference.reluBackward(x: x, dy: g).array, "\(h)x\(w + 1)")
        }
    }

    func testBatchNormKernelsApplyTheDropoutMaskOnTheFly() {
        var rng = SplitMix64(seed: 34)
        for (h, w) in [(5, 37), (4, 16), (3, 3)] {
            let s = Shape(3, 2, h, w)
            let x = Tensor.randomNormal(s, rng: &rng), g = Tensor.randomNormal(s, rng: &rng)
            let scale: [Float] = [1.5, -0.7], shift: [Float] = [0.2, 0.1]
            let mask = DropoutMask(rate: 0.3, seed: 99)
            let maskTensor = ElementwiseKernels.dropoutMask(s, rate: 0.3, seed: 99)
            // Forward: BN + ReLU + dropout in one pass = BN + ReLU, then the mask tensor.
            let fused = Tensor(s), plain = Tensor(s)
            BatchNormKernels.affine(x, scale: scale, shift: shift, relu: true, dropout: mask, into: fused)
            BatchNormKernels.affine(x, scale: scale, shift: shift, relu: true, into: plain)
            XCTAssertEqual(fused.array, ElementwiseKernels.multiply(plain, maskTensor).array, "\(h)x\(w)")
            // Backward: the fused gradient = the plain one of the masked output gradient.
            let (mean, variance) = BatchNormKernels.statistics(x)
            let invStd = variance.map { 1 / ($0 + 1e-3).squareRoot() }
            let gamma = zip(scale, invStd).map { $0 / $1 }
            let norm = BatchNormKernels.Normalisation(mean: mean, invStd: invStd, gamma: gamma, scale: scale, shift: shift)
            var dG1: [Float] = [0, 0], dB1: [Float] = [0, 0], dG2: [Float] = [0, 0], dB2: [Float] = [0, 0]
            let a = BatchNormKernels.backward(x: x, dy: g, norm,
                                              reluAfter: true, dropout: mask, dGamma: &dG1, dBeta: &dB1)
            let b = BatchNormKernels.backward(x: x, dy: ElementwiseKernels.multiply(g, maskTensor), norm, reluAfter: true, dGamma: &dG2, dBeta: &dB2)
            XCTAssertEqual(a.array, b.array, "\(h)x\(w)")
            XCTAssertEqual(dG1, dG2); XCTAssertEqual(dB1, dB2)
        }
        // The mask does not depend on how many threads draw it.
        XCTAssertEqual(ElementwiseKernels.dropoutMask(Shape(2, 3, 9, 40), rate: 0.2, seed: 5, pool: ThreadPool(threads: 1)).array,
                       ElementwiseKernels.dropoutMask(Shape(2, 3, 9, 40), rate: 0.2, seed: 5, pool: ThreadPool(threads: 2)).array)
    }

    /// The encoder stage's fused kernels against the separate ones: BN output y, then its ReLU
    /// and its 2×2 max pooling; backward, y's gradient = ReLU gradient + pooling gradient, then
    /// the batch-norm gradient. The same floating-point operations in the same order, so equal.
    func testEncoderAffineAndBackwardMatchSeparateOps() {
        var rng = SplitMix64(seed: 35)
        for (h, w) in [(6, 40), (5, 37), (4, 34), (2, 2), (3, 1), (8, 64)] {
            let s = Shape(3, 2, h, w)
            let x = Tensor.randomNormal(s, rng: &rng)
            for k in stride(from: 0, to: x.count, by: 5) { x.data[k] = x.data[k / 2] }  // ties inside windows, exact zeros of y
            let scale: [Float] = [1.5, -0.7], shift: [Float] = [0.2, 0.1]
            let y = Tensor(s)
            BatchNormKernels.affine(x, scale: scale, shift: shift, into: y)
            let rectified = PaddedPlanes(n: 3, channels: 2, height: h, width: w)
            let pooled = PaddedPlanes(n: 3, channels: 2, height: h / 2, width: w / 2)
            BatchNormKernels.affine(x, scale: scale, shift: shift, rectifiedInto: rectified, pooledInto: pooled)
            XCTAssertEqual(rectified.interior().array, ElementwiseKernels.relu(y).array, "\(h)x\(w)")
            XCTAssertEqual(pooled.interior().array, PoolingKernels.maxPool2x2(y).array, "\(h)x\(w)")

            let (mean, variance) = BatchNormKernels.statistics(x)
            let invStd = variance.map { 1 / ($0 + 1e-3).squareRoot() }
            let gamma = zip(scale, invStd).map { $0 / $1 }
            let norm = BatchNormKernels.Normalisation(mean: mean, invStd: invStd, gamma: gamma, scale: scale, shift: shift)
            let gr = Tensor.randomNormal(s, rng: &rng), gp = Tensor.randomNormal(Shape(3, 2, h / 2, w / 2), rng: &rng)
            for (useR, useP) in [(true, true), (true, false), (false, true)] {
                let dy = useR ? ElementwiseKernels.reluBackward(x: y, dy: gr) : Tensor(s)
                if useP { PoolingKernels.maxPool2x2Backward(x: y, dy: gp, addingInto: dy) }
                var dG1: [Float] = [0, 0], dB1: [Float] = [0, 0], dG2: [Float] = [0, 0], dB2: [Float] = [0, 0]
                let expected = PaddedPlanes(n: 3, channels: 2, height: h, width: w), fused = PaddedPlanes(n: 3, channels: 2, height: h, width: w)
                BatchNormKernels.backward(x: x, dy: dy, norm,
                                          dGamma: &dG1, dBeta: &dB1, into: expected)
                BatchNormKernels.backward(x: x, rectifiedGradient: useR ? gr : nil, pooledGradient: useP ? gp : nil, norm, dGamma: &dG2, dBeta: &dB2,
                                          into: fused)
                let what = "\(h)x\(w) rectified \(useR) pooled \(useP)"
                XCTAssertEqual(fused.interior().array, expected.interior().array, what)
                XCTAssertEqual(dG1, dG2, what); XCTAssertEqual(dB1, dB2, what)
                if useR || (h >= 2 && w >= 2) { XCTAssertTrue(dB1.allSatisfy { $0 != 0 }, what) }
            }
        }
    }

    func testMaxPoolBackwardTiesAndOddSizes() {
        // Ties go to the first maximum in row-major order, as the forward's value.
        let x = Tensor(Shape(1, 1, 3, 5), values: [2, 2, 1, 0, 9, 2, 2, 3, 3, 9, 7, 7, 7, 7, 7])
        XCTAssertEqual(PoolingKernels.maxPool2x2(x).array, [2, 3])
        let dx = PoolingKernels.maxPool2x2Backward(x: x, dy: Tensor(Shape(1, 1, 1, 2), values: [1, 5]))
        XCTAssertEqual(dx.array, [1, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0], "odd last row and column get no gradient")
    }

    func testSoftmaxOverChannels() {
        let z = Tensor(Shape(1, 2, 1, 2), values: [0, 1, 0, -1])
        let p = ChannelKernels.softmax(z).array
        XCTAssertEqual(p[0], 0.5, accuracy: 1e-6)
        XCTAssertEqual(p[1], 1 / (1 + exp(-2)), accuracy: 1e-6)
        XCTAssertEqual(p[2], 0.5, accuracy: 1e-6)
    }

    func testVectorExpAccuracy() {
        var worst: Float = 0
        var x: Float = -87
        while x < 88 {
            let v = vectorExp(FloatVector(repeating: x))[0]
            let e = Float(exp(Double(x)))
            worst = worse(worst, abs(v - e) / e)
            x += 0.0137
        }
        XCTAssertLessThan(worst, 1e-6, "vectorExp relative error \(worst)")
    }

    func testVectorLogAccuracy() {
        var worst = 0.0
        var x: Float = 1e-30
        while x < 1e30 {
            var v = FloatVector.zero
            for l in 0..<vectorWidth { v[l] = x * (1 + Float(l) * 0.031) }
            let got = vectorLog(v)
            for l in 0..<vectorWidth {
                let want = log(Double(v[l]))
                worst = worse(worst, abs(Double(got[l]) - want) / max(1, abs(want)))
            }
            x *= 1.37
        }
        XCTAssertLessThan(worst, 3e-7, "vectorLog error \(worst)")
        // Around 1, where log is near 0, the absolute error stays at float resolution.
        let nearOne = vectorLog(FloatVector(repeating: 1 + 1e-6))[0]
        XCTAssertEqual(Double(nearOne), log(Double(Float(1 + 1e-6))), accuracy: 1e-10)
    }

    func testCrossEntropySumAndGradientMatchPlainLoops() {
        var rng = SplitMix64(seed: 36)
        for (classes, h, w) in [(2, 7, 37), (3, 5, 16), (2, 64, 80)] {
            let z = Tensor.randomNormal(Shape(2, classes, h, w), std: h == 64 ? 8 : 3, rng: &rng)
            let labels = Tensor(Shape(2, 1, h, w))
            for k in 0..<labels.count { labels.data[k] = Float(rng.next() % UInt64(classes)) }
            let p = ChannelKernels.softmax(z)
            var want = 0.0
            // Keras' clip: probabilities below 1e-7 count as 1e-7 (logits of std 8 give some).
            var clipped = 0
            for i in 0..<2 { for k in 0..<(h * w) {
                let pt = Double(p.plane(i, Int(labels.plane(i, 0)[k]))[k])
                if pt < 1e-7 { clipped += 1 }
                want -= log(max(pt, Double(Float(1e-7))))
            } }
            if h == 64 { XCTAssertGreaterThan(clipped, 0, "some probabilities below the floor") }
            let (total, pixels) = ChannelKernels.crossEntropySum(probabilities: p, labels: labels)
            XCTAssertEqual(pixels, 2 * h * w)
            XCTAssertEqual(total, want, accuracy: 1e-5 * abs(want), "\(classes) classes \(h)x\(w)")
            let g = ChannelKernels.crossEntropyGradient(probabilities: p, labels: labels, scale: 0.5)
            for i in 0..<2 { for c in 0..<classes { for k in 0..<(h * w) {
                let onehot: Float = Int(labels.plane(i, 0)[k]) == c ? 1 : 0
                XCTAssertEqual(g.plane(i, c)[k], (p.plane(i, c)[k] - onehot) * 0.5)
            } } }
        }
    }

    func testVectorisedSoftmaxMatchesScalarForTwoAndThreeClasses() {
        var rng = SplitMix64(seed: 21)
        for classes in [2, 3] {
            let z = Tensor.randomNormal(Shape(2, classes, 7, 45), std: 4, rng: &rng)
            let p = ChannelKernels.softmax(z)
            for i in 0..<2 { for k in 0..<(7 * 45) {
                let zs = (0..<classes).map { Double(z.plane(i, $0)[k]) }
                let m = zs.max()!, sum = zs.map { exp($0 - m) }.reduce(0, +)
                for c in 0..<classes {
                    XCTAssertEqual(Double(p.plane(i, c)[k]), exp(zs[c] - m) / sum, accuracy: 1e-6)
                }
            } }
        }
    }

    func testPoolIntoPaddedPlanesAndConvIntoPaddedPlanes() {
        var rng = SplitMix64(seed: 22)
        let x = Tensor.randomNormal(Shape(2, 3, 10, 38), rng: &rng)
        let p = PaddedPlanes(n: 2, channels: 3, height: 5, width: 19)
        p.data.update(repeating: .nan, count: 2 * 3 * p.planeStride)  // borders must be cleared
        p.fillMaxPool2x2(of: x)
        XCTAssertEqual(p.interior().array, PoolingKernels.maxPool2x2(x).array)
        XCTAssertEqual(PaddedPlanes.from(p.interior()).data[0], 0)
        let w = Tensor.randomNormal(Shape(5, 3, 3, 3), rng: &rng)
        let packed = Conv3x3.PackedWeights(oihw: w.data, bias: nil, cout: 5, cin: 3)
        let plain = Tensor(Shape(2, 5, 5, 19))
        Conv3x3.forward(p, packed, into: plain)
        let padded = PaddedPlanes(n: 2, channels: 5, height: 5, width: 19)
        padded.data.update(repeating: .nan, count: 2 * 5 * padded.planeStride)
        Conv3x3.forward(p, packed, into: padded)
        XCTAssertEqual(padded.interior().array, plain.array)
        for i in 0..<2 { for c in 0..<5 {
            XCTAssertEqual(padded.origin(i, c)[-1], 0); XCTAssertEqual(padded.origin(i, c)[-padded.rowStride], 0)
            XCTAssertEqual(padded.origin(i, c)[19], 0); XCTAssertEqual(padded.origin(i, c)[5 * padded.rowStride], 0)
        } }
    }
}

/// Kernels that write rows straight into padded planes zero the borders as they go: planes taken
/// from the buffer pool still hold whatever the last user left, here NaN.
final class PaddedBorderTests: XCTestCase {
    /// Padded planes whose recycled storage is full of NaN.
    func dirtyPlanes(n: Int, channels: Int, height: Int, width: Int) -> PaddedPlanes {
        let probe = PaddedPlanes(n: n, channels: channels, height: height, width: width)
        let count = n * channels * probe.planeStride
        do {
            let garbage = Tensor(Shape(n, channels, 1, probe.planeStride), repeating: .nan)
            XCTAssertEqual(garbage.count, count)
        }
        let dirty = PaddedPlanes(n: n, channels: channels, height: height, width: width)
        XCTAssertTrue(dirty.data[0].isNaN && dirty.data[count - 1].isNaN, "the pool did not hand back the NaN buffer")
        return dirty
    }

    func assertBordersZero(_ p: PaddedPlanes, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        var bad = 0
        for plane in 0..<(p.n * p.channels) {
            let base = p.data + plane * p.planeStride
            for r in 0..<(p.height + 2) {
                for k in 0..<p.rowStride {
                    let interior = r >= 1 && r <= p.height && k >= vectorWidth && k < vectorWidth + p.width
                    if !interior && base[r * p.rowStride + k] != 0 { bad += 1 }
                }
            }
        }
        XCTAssertEqual(bad, 0, "\(what): \(bad) border values are not zero", file: file, line: line)
    }

    func testWritersZeroTheBordersOfRecycledPlanes() {
        var rng = SplitMix64(seed: 40)
        for (h, w) in [(5, 37), (1, 16), (6, 2)] {
            let x = Tensor.randomNormal(Shape(2, 3, h, w), rng: &rng)
            let scale: [Float] = [1, 2, 3], shift: [Float] = [0, 1, -1]
            var p = dirtyPlanes(n: 2, channels: 3, height: h, width: w)
            BatchNormKernels.affine(x, scale: scale, shift: shift, relu: true, into: p)
            assertBordersZero(p, "affine \(h)x\(w)")
            // The encoder's rectified skip and pooled map, written in the same pass.
            p = dirtyPlanes(n: 2, channels: 3, height: h, width: w)
            let pooledPlanes = dirtyPlanes(n: 2, channels: 3, height: h / 2, width: w / 2)
            BatchNormKernels.affine(x, scale: scale, shift: shift, rectifiedInto: p, pooledInto: pooledPlanes)
            assertBordersZero(p, "encoder affine, rectified \(h)x\(w)")
            assertBordersZero(pooledPlanes, "encoder affine, pooled \(h)x\(w)")
            p = dirtyPlanes(n: 2, channels: 3, height: h, width: w)
            var dG0: [Float] = [0, 0, 0], dB0: [Float] = [0, 0, 0]
            BatchNormKernels.backward(x: x, rectifiedGradient: x, pooledGradient: nil, BatchNormKernels.Normalisation(mean: [0, 0, 0], invStd: [1, 1, 1], gamma: [1, 1, 1], scale: scale, shift: shift), dGamma: &dG0, dBeta: &dB0, into: p)
            assertBordersZero(p, "encoder BN backward \(h)x\(w)")
            p = dirtyPlanes(n: 2, channels: 3, height: h, width: w)
            var dG: [Float] = [0, 0, 0], dB: [Float] = [0, 0, 0]
            BatchNormKernels.backward(x: x, dy: x, BatchNormKernels.Normalisation(mean: [0, 0, 0], invStd: [1, 1, 1], gamma: [1, 1, 1], scale: scale, shift: shift),
                                      reluAfter: true, dGamma: &dG, dBeta: &dB, into: p)
            assertBordersZero(p, "BN backward \(h)x\(w)")
            p = dirtyPlanes(n: 2, channels: 3, height: h, width: w)
            Conv3x3.forward(PaddedPlanes.from(x), .init(oihw: Tensor.randomNormal(Shape(3, 3, 3, 3), rng: &rng).data, bias: nil, cout: 3, cin: 3),
                            into: p)
            assertBordersZero(p, "conv forward \(h)x\(w)")
            let big = Tensor.randomNormal(Shape(2, 3, 2 * h, 2 * w), rng: &rng)
            p = dirtyPlanes(n: 2, channels: 3, height: h, width: w)
            p.fillMaxPool2x2(of: big)
            assertBordersZero(p, "max pool \(h)x\(w)")
            let decoderOut = dirtyPlanes(n: 2, channels: 3, height: 2 * h, width: 2 * w)
            let wd = Tensor.randomNormal(Shape(3, 6, 3, 3), rng: &rng)
            UpsampledConv3x3.forward(skip: PaddedPlanes.from(big), .init(oihw: wd.data, bias: nil, cout: 3, allInputs: 6, inputChannels: 0..<3),
                                     low: PaddedPlanes.from(x), .init(oihw: wd.data, cout: 3, allInputs: 6, inputChannels: 3..<6),
                                     into: decoderOut, relu: true)
            assertBordersZero(decoderOut, "decoder convolution \(h)x\(w)")
            // The box sums' output takes the NaN buffer released just before (checked by address,
            // so the test cannot pass on fresh memory).
            let input = PaddedPlanes.from(big)
            var dirtyAddress: UnsafeMutablePointer<Float>? = nil
            do {
                let boxSumPlanes = dirtyPlanes(n: 2, channels: 6, height: 2 * h + 1, width: w + 1)
                dirtyAddress = boxSumPlanes.data
            }
            let sums = UpsampledConv3x3.boxSums(input)
            XCTAssertEqual(sums.data, dirtyAddress, "box sums \(h)x\(w) did not get the NaN-filled buffer")
            assertBordersZero(sums, "box sums \(h)x\(w)")
        }
    }
}

/// Outputs of 32 MB or more are written with non-temporal stores (`streamVector`). A batch of
/// identical images streams where one image does not, and every kernel gives each image of the
/// batch exactly what it gives the image alone (batch-norm sums of identical images scale by a
/// power of two, exactly), so streamed and cached stores must agree bit for bit.
final class StreamingStoreTests: XCTestCase {
    /// `copies` copies of one image along the batch.
    func replicate(_ t: Tensor, _ copies: Int) -> Tensor {
        let s = t.shape
        precondition(s.n == 1)
        let out = Tensor(Shape(copies, s.c, s.h, s.w), zeroed: false)
        for i in 0..<copies { (out.data + i * s.c * s.plane).update(from: t.data, count: s.c * s.plane) }
        return out
    }

    func assertEachImage(_ big: Tensor, equals one: Tensor, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let per = one.count
        XCTAssertGreaterThanOrEqual(big.count * 4, 32 << 20, "\(what): too small to stream", file: file, line: line)
        for i in 0..<big.shape.n {
            let same = memcmp(big.data + i * per, one.data, per * 4) == 0
            XCTAssertTrue(same, "\(what): image \(i) differs from the image alone", file: file, line: line)
        }
    }

    func testStreamedOutputsEqualCachedOnes() {
        var rng = SplitMix64(seed: 77)
        let copies = 8
        let x1 = Tensor.randomNormal(Shape(1, 4, 512, 512), rng: &rng), g1 = Tensor.randomNormal(x1.shape, rng: &rng)
        let x = replicate(x1, copies), g = replicate(g1, copies)
        let scale: [Float] = [1.5, -0.7, 0.3, 2], shift: [Float] = [0.2, 0.1, -0.4, 0]
        let mask = DropoutMask(rate: 0.2, seed: 4)

        // Batch norm forward (decoder: ReLU + dropout into padded planes; encoder: rectified + pooled).
        func decoderAffine(_ t: Tensor) -> Tensor {
            let p = PaddedPlanes(n: t.shape.n, channels: 4, height: 512, width: 512)
            BatchNormKernels.affine(t, scale: scale, shift: shift, relu: true, dropout: mask, into: p)
            return p.interior()
        }
        // The dropout mask is per (image, channel) plane: compare planes of image 0 only.
        let affineBig = decoderAffine(x), affineOne = decoderAffine(x1)
        XCTAssertEqual(memcmp(affineBig.data, affineOne.data, affineOne.count * 4), 0, "decoder affine")
        func encoderAffine(_ t: Tensor) -> Tensor {
            let r = PaddedPlanes(n: t.shape.n, channels: 4, height: 512, width: 512)
            let p = PaddedPlanes(n: t.shape.n, channels: 4, height: 256, width: 256)
            BatchNormKernels.affine(t, scale: scale, shift: shift, rectifiedInto: r, pooledInto: p)
            return r.interior()
        }
        assertEachImage(encoderAffine(x), equals: encoderAffine(x1), "encoder affine")

        // Batch norm backward into padded planes.
        func bnBackward(_ t: Tensor, _ dy: Tensor) -> Tensor {
            var dG = [Float](repeating: 0, count: 4), dB = dG
            let p = PaddedPlanes(n: t.shape.n, channels: 4, height: 512, width: 512)
            BatchNormKernels.backward(x: t, dy: dy, BatchNormKernels.Normalisation(mean: [0.1, 0, -0.2, 0.3], invStd: [1, 2, 0.5, 1], gamma: [1.5, -1.4, 0.6, 2], scale: scale, shift: shift), reluAfter: true, dGamma: &dG, dBeta: &dB, into: p)
            return p.interior()
        }
        assertEachImage(bnBackward(x, g), equals: bnBackward(x1, g1), "batch-norm backward")

        // Convolution input gradients and the decoder's box sums.
        let w = Tensor.randomNormal(Shape(4, 4, 3, 3), std: 0.2, rng: &rng)
        let wT = Conv3x3.PackedWeights.transposedFlipped(oihw: w.data, cout: 4, cin: 4)
        func dgrad(_ dy: Tensor) -> Tensor {
            let dx = Tensor(dy.shape, zeroed: false)
            Conv3x3.backwardData(PaddedPlanes.from(dy), weights: wT, into: dx)
            return dx
        }
        assertEachImage(dgrad(g), equals: dgrad(g1), "3×3 input gradient")
        assertEachImage(UpsampledConv3x3.boxSums(PaddedPlanes.from(g)).interior(),
                        equals: UpsampledConv3x3.boxSums(PaddedPlanes.from(g1)).interior(), "box sums")
        let wu = Tensor.randomNormal(Shape(4, 16, 3, 3), std: 0.2, rng: &rng)
        let dataWeights = UpsampledConv3x3.DataWeights(oihw: wu.data, cout: 4, allInputs: 16, inputChannels: 0..<16)
        func upsampledDgrad(_ dy: Tensor) -> Tensor {
            let dl = Tensor(Shape(dy.shape.n, 16, 256, 256), zeroed: false)
            UpsampledConv3x3.backwardData(boxSums: UpsampledConv3x3.boxSums(PaddedPlanes.from(dy)), dataWeights, into: dl)
            return dl
        }
        assertEachImage(upsampledDgrad(g), equals: upsampledDgrad(g1), "upsampled input gradient")

        // The 1×1 head, its softmax and the cross-entropy gradient.
        let hw: [Float] = [0.5, -1, 0.25, 2, 1, 0.5, -0.5, -2]
        assertEachImage(ChannelKernels.conv1x1(replicate(x1, 2 * copies), weights: hw, bias: [0.1, -0.1], cout: 2),
                        equals: ChannelKernels.conv1x1(x1, weights: hw, bias: [0.1, -0.1], cout: 2), "1×1 convolution")
        func headBackward(_ t: Tensor, _ dy: Tensor) -> Tensor {
            var dW = [Float](repeating: 0, count: 8), dB: [Float] = [0, 0]
            return ChannelKernels.conv1x1Backward(x: t, dy: dy, weights: hw, dW: &dW, dB: &dB)
        }
        let d1 = ChannelKernels.channels(of: g1, offset: 0, count: 2)
        assertEachImage(headBackward(x, replicate(d1, copies)), equals: headBackward(x1, d1), "1×1 input gradient")
        let z1 = ChannelKernels.channels(of: g1, offset: 0, count: 2), z = replicate(z1, 2 * copies)
        let p = ChannelKernels.softmax(z), p1 = ChannelKernels.softmax(z1)
        assertEachImage(p, equals: p1, "softmax")
        let labels1 = Tensor(Shape(1, 1, 512, 512), values: (0..<(512 * 512)).map { Float(($0 * 7) % 3 == 0 ? 1 : 0) })
        assertEachImage(ChannelKernels.crossEntropyGradient(probabilities: p, labels: replicate(labels1, 2 * copies), scale: 0.5),
                        equals: ChannelKernels.crossEntropyGradient(probabilities: p1, labels: labels1, scale: 0.5), "cross-entropy gradient")
    }
}

/// The cross-entropy gradient kept unlaid (`CrossEntropyGradient`) gives what laying it out and
/// running the plain kernels gives, bit for bit: the same operations in the same order.
final class CrossEntropyGradientTests: XCTestCase {
    func testUnlaidGradientMatchesTheLaidOutKernels() {
        var rng = SplitMix64(seed: 91)
        for (h, w) in [(6, 40), (5, 37), (2, 3), (128, 80)] {
            let p = ChannelKernels.softmax(Tensor.randomNormal(Shape(3, 2, h, w), rng: &rng))
            let labels = Tensor(Shape(3, 1, h, w), values: (0..<(3 * h * w)).map { Float(($0 * 5) % 7 < 3 ? 1 : 0) })
            let g = CrossEntropyGradient(probabilities: p, labels: labels, scale: 0.25)
            let dLogits = ChannelKernels.crossEntropyGradient(probabilities: p, labels: labels, scale: 0.25)
            XCTAssertEqual(g.materialize().array, dLogits.array, "logits \(h)x\(w)")
            // Through the 1×1 head (two pieces per image at 128×80): weight gradients and the input's gradient.
            let x = Tensor.randomNormal(Shape(3, 4, h, w), rng: &rng)
            let hw: [Float] = [0.5, -1, 0.25, 2, 1, 0.5, -0.5, -2]
            var dW1 = [Float](repeating: 0, count: 8), dB1: [Float] = [0, 0], dW2 = dW1, dB2 = dB1
            let dx = ChannelKernels.conv1x1Backward(x: x, dy: dLogits, weights: hw, dW: &dW1, dB: &dB1)
            let gx = ChannelKernels.conv1x1Backward(x: x, lossGradient: g, weights: hw, dW: &dW2, dB: &dB2)
            XCTAssertEqual(dW1, dW2, "head weights \(h)x\(w)"); XCTAssertEqual(dB1, dB2, "head bias \(h)x\(w)")
            XCTAssertEqual(gx.array, dx.array, "head input \(h)x\(w)")

            // The head reading its input as batch norm + ReLU of a pre-BN map, never stored.
            let z = Tensor.randomNormal(x.shape, rng: &rng)
            let transform = ChannelKernels.RectifiedAffine(scale: [1.5, -0.5, 0.7, 2], shift: [0.1, 0.2, -0.3, 0])
            let y = Tensor(z.shape, zeroed: false)
            BatchNormKernels.affine(z, scale: transform.scale, shift: transform.shift, relu: true, into: y)
            XCTAssertEqual(ChannelKernels.conv1x1(z, weights: hw, bias: [0.1, -0.2], cout: 2, inputTransform: transform).array,
                           ChannelKernels.conv1x1(y, weights: hw, bias: [0.1, -0.2], cout: 2).array, "head on the fly \(h)x\(w)")
            var dW3 = [Float](repeating: 0, count: 8), dB3: [Float] = [0, 0], dW4 = dW3, dB4 = dB3
            let dy1 = ChannelKernels.conv1x1Backward(x: y, lossGradient: g, weights: hw, dW: &dW3, dB: &dB3)
            let dy2 = ChannelKernels.conv1x1Backward(x: z, lossGradient: g, weights: hw, dW: &dW4, dB: &dB4, inputTransform: transform)
            XCTAssertEqual(dW3, dW4, "head weights on the fly \(h)x\(w)"); XCTAssertEqual(dB3, dB4)
            XCTAssertEqual(dy1.array, dy2.array)

            // The block's batch-norm sums gathered as the head's input gradient is formed: the
            // same gradient, and the batch norm's backward given them gives what it gives alone.
            let mean: [Float] = [0.2, -0.1, 0, 0.3], invStd: [Float] = [1.1, 0.8, 1.5, 0.6], gamma: [Float] = [1, -0.7, 0.4, 1.3]
            let norm = BatchNormKernels.Normalisation(mean: mean, invStd: invStd, gamma: gamma, scale: transform.scale,
                                                      shift: transform.shift)
            for laidOut in [false, true] {
                var dW5 = [Float](repeating: 0, count: 8), dB5: [Float] = [0, 0]
                let (dy3, sums) = laidOut
                    ? ChannelKernels.conv1x1Backward(x: z, dy: dLogits, weights: hw, dW: &dW5, dB: &dB5, inputTransform: transform,
                                                     gatheringSumsOf: norm)
                    : ChannelKernels.conv1x1Backward(x: z, lossGradient: g, weights: hw, dW: &dW5, dB: &dB5, inputTransform: transform,
                                                     gatheringSumsOf: norm)
                XCTAssertEqual(dy3.array, dy2.array, "head input with sums \(h)x\(w)"); XCTAssertEqual(dW5, dW4); XCTAssertEqual(dB5, dB4)
                guard let sums else { XCTFail("no sums \(h)x\(w)"); continue }
                var dG1 = [Float](repeating: 0, count: 4), dBeta1 = dG1, dG2 = dG1, dBeta2 = dG1
                let dz1 = PaddedPlanes(n: 3, channels: 4, height: h, width: w), dz2 = PaddedPlanes(n: 3, channels: 4, height: h, width: w)
                BatchNormKernels.backward(x: z, dy: dy3, norm, reluAfter: true, dGamma: &dG1, dBeta: &dBeta1, into: dz1)
                BatchNormKernels.backward(x: z, dy: dy3, norm, reluAfter: true, sums: sums, dGamma: &dG2, dBeta: &dBeta2, into: dz2)
                let what = "batch norm with gathered sums \(h)x\(w) laid out \(laidOut)"
                let scale = max(1, dG1.map(abs).max()!, dBeta1.map(abs).max()!)
                XCTAssertLessThan(maxAbsDifference(dG1, dG2), 1e-5 * scale, what)
                XCTAssertLessThan(maxAbsDifference(dBeta1, dBeta2), 1e-5 * scale, what)
                let dx1 = dz1.interior().array, dx2 = dz2.interior().array
                XCTAssertLessThan(maxAbsDifference(dx1, dx2), 1e-5 * max(1, dx1.map(abs).max()!), what)
                XCTAssertGreaterThan(dBeta1.map(abs).max()!, 0.01, what)  // sums to compare, not zeros
            }
        }
    }

    /// The head's gathered batch-norm sums on planes whose last pieces lie past the plane's end
    /// (pieces of whole vectors: 1136² at 16 lanes, 1520² at 8, 2160² at 4), on 1 and 3 threads.
    func testGatheredSumsOnPlanesWithEmptyPieces() {
        var rng = SplitMix64(seed: 92)
        for side in [1136, 1520, 2160] {
            let z = Tensor.randomNormal(Shape(1, 2, side, side), rng: &rng)
            let dy = Tensor.randomNormal(Shape(1, 2, side, side), rng: &rng)
            let hw: [Float] = [0.5, -1, 0.25, 2]
            let transform = ChannelKernels.RectifiedAffine(scale: [1.5, -0.5], shift: [0.1, 0.2])
            let norm = BatchNormKernels.Normalisation(mean: [0.2, -0.1], invStd: [1.1, 0.8], gamma: [1, -0.7], scale: transform.scale,
                                                      shift: transform.shift)
            var sums: [BatchNormKernels.GradientSums] = []
            for threads in [1, 3] {
                var dW = [Float](repeating: 0, count: 4), dB: [Float] = [0, 0]
                let (dx, s) = ChannelKernels.conv1x1Backward(x: z, dy: dy, weights: hw, dW: &dW, dB: &dB, inputTransform: transform,
                                                             gatheringSumsOf: norm, pool: ThreadPool(threads: threads))
                guard let s else { XCTFail("no sums at \(side)²"); return }
                sums.append(s)
                if threads == 1 {  // against the batch norm's own first pass
                    var dG1: [Float] = [0, 0], dBeta1 = dG1, dG2 = dG1, dBeta2 = dG1
                    let planes = PaddedPlanes(n: 1, channels: 2, height: side, width: side)
                    BatchNormKernels.backward(x: z, dy: dx, norm, reluAfter: true, dGamma: &dG1, dBeta: &dBeta1, into: planes)
                    BatchNormKernels.backward(x: z, dy: dx, norm, reluAfter: true, sums: s, dGamma: &dG2, dBeta: &dBeta2, into: planes)
                    // The batch norm's own pass sums a whole plane (up to 4.7 M pixels) in float
                    // vectors before it turns to Double; the pieces' sums, 4096 pixels at a time,
                    // are the closer of the two. 1e-4 of the largest sum covers the first's drift.
                    let scale = max(1, dG1.map(abs).max()!, dBeta1.map(abs).max()!)
                    XCTAssertLessThan(maxAbsDifference(dG1, dG2), 1e-4 * scale, "\(side)²")
                    XCTAssertLessThan(maxAbsDifference(dBeta1, dBeta2), 1e-4 * scale, "\(side)²")
                }
            }
            XCTAssertEqual(sums[0].sumDy, sums[1].sumDy, "\(side)²"); XCTAssertEqual(sums[0].sumDyXhat, sums[1].sumDyXhat, "\(side)²")
        }
    }
}

/// The batch-norm gradient's second pass fused with the convolution's backward (the output
/// gradient held a band of rows at a time) against the two run apart: batch norm into padded
/// planes, then the convolution's input and weight gradients from them.
final class FusedConvolutionBackwardTests: XCTestCase {
    func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float { maxAbsDifference(a, b) }

    /// The direct part's input, weight and bias gradients from a laid-out output gradient.
    func separateBackward(_ dz: PaddedPlanes, input: PaddedPlanes, weights wT: Conv3x3.PackedWeights)
        -> (dx: Tensor, dW: [Float], dB: [Float]) {
        let dx = Tensor(Shape(input.n, input.channels, input.height, input.width), zeroed: false)
        Conv3x3.backwardData(dz, weights: wT, into: dx)
        var dW = [Float](repeating: 0, count: dz.channels * input.channels * 9), dB = [Float](repeating: 0, count: dz.channels)
        Conv3x3.backwardWeights(x: input, dY: dz, dW: &dW, dB: &dB)
        return (dx, dW, dB)
    }

    func testFusedBackwardMatchesTheSeparateKernels() {
        var rng = SplitMix64(seed: 55)
        // (n, cin, cout, h, w): bands of 32 rows, with partial bands, heights below one band and
        // widths with partial vectors.
        for (n, cin, cout, h, w) in [(2, 3, 4, 70, 37), (1, 1, 4, 32, 16), (2, 4, 5, 6, 20), (1, 2, 2, 33, 3), (3, 4, 4, 64, 64)] {
            let x = Tensor.randomNormal(Shape(n, cin, h, w), rng: &rng)
            let z = Tensor.randomNormal(Shape(n, cout, h, w), std: 2, rng: &rng)
            let wts = Tensor.randomNormal(Shape(cout, cin, 3, 3), std: 0.3, rng: &rng)
            let scale = (0..<cout).map { Float($0) * 0.4 - 0.7 }, shift = (0..<cout).map { Float($0) * 0.1 }
            let mean = (0..<cout).map { Float($0) * 0.05 }, invStd = (0..<cout).map { 1 + Float($0) * 0.2 }
            let gamma = zip(scale, invStd).map { $0 / $1 }
            let norm = BatchNormKernels.Normalisation(mean: mean, invStd: invStd, gamma: gamma, scale: scale, shift: shift)
            let input = PaddedPlanes.from(x)
            let wT = Conv3x3.PackedWeights.transposedFlipped(oihw: wts.data, cout: cout, cin: cin)
            let what = "\(n)x\(cin)->\(cout) \(h)x\(w)"

            // Plain output gradient through ReLU and dropout, and the encoder's two gradients.
            let g = Tensor.randomNormal(z.shape, rng: &rng)
            let rect = Tensor.randomNormal(z.shape, rng: &rng), pooled = Tensor.randomNormal(Shape(n, cout, h / 2, w / 2), rng: &rng)
            for encoder in [false, true] {
                var dG1 = [Float](repeating: 0, count: cout), dB1 = dG1, dG2 = dG1, dB2 = dG1
                let dz = PaddedPlanes(n: n, channels: cout, height: h, width: w)
                let mask = DropoutMask(rate: 0.25, seed: 9)
                if encoder {
                    BatchNormKernels.backward(x: z, rectifiedGradient: rect, pooledGradient: pooled, norm, dGamma: &dG1, dBeta: &dB1, into: dz)
                } else {
                    BatchNormKernels.backward(x: z, dy: g, norm,
                                              reluAfter: true, dropout: mask, dGamma: &dG1, dBeta: &dB1, into: dz)
                }
                let (dxRef, dWRef, dBRef) = separateBackward(dz, input: input, weights: wT)

                let dx = Tensor(x.shape, zeroed: false)
                let dWt = Tensor(Shape(cout, cin, 3, 3)), dBt = Tensor(Shape(1, 1, 1, cout))
                let fused = BatchNormKernels.ConvolutionBackward(input: input, inputGradient: (wT, dx), dW: dWt, dB: dBt)
                if encoder {
                    BatchNormKernels.backward(x: z, rectifiedGradient: rect, pooledGradient: pooled, norm, dGamma: &dG2, dBeta: &dB2,
                                              throughConvolution: fused)
                } else {
                    BatchNormKernels.backward(x: z, dy: g, norm,
                                              reluAfter: true, dropout: mask, dGamma: &dG2, dBeta: &dB2, throughConvolution: fused)
                }
                let dW = dWt.array, dBias = dBt.array
                XCTAssertEqual(dG1, dG2, what); XCTAssertEqual(dB1, dB2, what)
                XCTAssertEqual(dx.array, dxRef.array, "input gradient \(what) encoder \(encoder)")
                let wScale = max(1, dWRef.map(abs).max()!), bScale = max(1, dBRef.map(abs).max()!)
                XCTAssertLessThan(maxAbsDiff(dW, dWRef), 1e-5 * wScale, "weight gradient \(what) encoder \(encoder)")
                XCTAssertLessThan(maxAbsDiff(dBias, dBRef), 1e-5 * bScale, "bias gradient \(what) encoder \(encoder)")
            }
        }
    }

    /// The first stage's one-pass backward (`backwardToWeights`: an input that needs no
    /// gradient) against the batch norm's gradient laid out and the plain weight-gradient kernel:
    /// one and three input channels, heights over several flushes of the tap sums, widths with
    /// partial vectors and under one vector, and either output gradient missing.
    func testOnePassInputConvolutionBackwardMatchesTheSeparateKernels() {
        var rng = SplitMix64(seed: 57)
        // (n, cin, cout, h, w, gradients given, the input's level): odd heights too, and an
        // input of raw counts far from zero.
        for (n, cin, cout, h, w, sources, level) in [(2, 1, 4, 70, 37, 3, 0), (1, 3, 4, 32, 16, 3, 0), (2, 1, 5, 6, 20, 1, 0),
                                                     (1, 2, 2, 66, 3, 2, 0), (3, 1, 4, 64, 64, 3, 0), (2, 1, 4, 8, 5, 3, 0),
                                                     (2, 1, 4, 9, 21, 3, 0), (1, 2, 3, 33, 18, 1, 0), (2, 1, 4, 70, 37, 3, 1000),
                                                     (1, 2, 4, 40, 24, 3, -300)] as [(Int, Int, Int, Int, Int, Int, Float)] {
            var x = Tensor.randomNormal(Shape(n, cin, h, w), rng: &rng)
            if level != 0 { x = Tensor(x.shape, values: x.array.map { $0 + level }) }
            let z = Tensor.randomNormal(Shape(n, cout, h, w), std: 2, rng: &rng)
            let scale = (0..<cout).map { Float($0) * 0.4 - 0.7 }, shift = (0..<cout).map { Float($0) * 0.1 }
            let mean = (0..<cout).map { Float($0) * 0.05 }, invStd = (0..<cout).map { 1 + Float($0) * 0.2 }
            let gamma = zip(scale, invStd).map { $0 / $1 }
            let norm = BatchNormKernels.Normalisation(mean: mean, invStd: invStd, gamma: gamma, scale: scale, shift: shift)
            let input = PaddedPlanes.from(x)
            // sources: 1 the skip's gradient alone, 2 the pooled map's alone, 3 both.
            let rect = sources & 1 != 0 ? Tensor.randomNormal(z.shape, rng: &rng) : nil
            let pooled = sources & 2 != 0 ? Tensor.randomNormal(Shape(n, cout, h / 2, w / 2), rng: &rng) : nil
            let what = "\(n)x\(cin)->\(cout) \(h)x\(w) sources \(sources) level \(level)"

            var dG1 = [Float](repeating: 0, count: cout), dB1 = dG1, dG2 = dG1, dB2 = dG1
            let dz = PaddedPlanes(n: n, channels: cout, height: h, width: w)
            BatchNormKernels.backward(x: z, rectifiedGradient: rect, pooledGradient: pooled, norm, dGamma: &dG1, dBeta: &dB1, into: dz)
            // Σ dz · x_t in Double from the laid-out gradient: the plain float kernel's own
            // round-off grows with the input's level, as the sums of products of large numbers do.
            let dzPlain = dz.interior()
            var dWRef = [Float](repeating: 0, count: cout * cin * 9), dBRef = [Float](repeating: 0, count: cout)
            for o in 0..<cout {
                var bias = 0.0
                for i in 0..<n { for y in 0..<h { for xx in 0..<w { bias += Double(dzPlain.data[((i * cout + o) * h + y) * w + xx]) } } }
                dBRef[o] = Float(bias)
                for ci in 0..<cin { for ky in 0..<3 { for kx in 0..<3 {
                    var acc = 0.0
                    for i in 0..<n { for y in 0..<h { for xx in 0..<w {
                        let yy = y + ky - 1, xs = xx + kx - 1
                        guard yy >= 0 && yy < h && xs >= 0 && xs < w else { continue }
                        acc += Double(dzPlain.data[((i * cout + o) * h + y) * w + xx]) * Double(x.data[((i * cin + ci) * h + yy) * w + xs])
                    } } }
                    dWRef[(o * cin + ci) * 9 + ky * 3 + kx] = Float(acc)
                } } }
            }

            var dW = [Float](repeating: 0, count: cout * cin * 9), dB = [Float](repeating: 0, count: cout)
            BatchNormKernels.backwardToWeights(x: z, rectifiedGradient: rect, pooledGradient: pooled, norm, input: input,
                                               dGamma: &dG2, dBeta: &dB2, dW: &dW, dB: &dB)
            XCTAssertEqual(dG1, dG2, what); XCTAssertEqual(dB1, dB2, what)
            XCTAssertGreaterThan(dWRef.map(abs).max()!, 0.1, what)  // a gradient to compare, not zeros
            XCTAssertLessThan(maxAbsDiff(dW, dWRef), 1e-5 * max(1, dWRef.map(abs).max()!), "weight gradient \(what)")
            XCTAssertLessThan(maxAbsDiff(dB, dBRef), 1e-5 * max(1, dBRef.map(abs).max()!), "bias gradient \(what)")

            // The same bits on one thread and on three.
            for threads in [1, 3] {
                var dW3 = [Float](repeating: 0, count: cout * cin * 9), dB3 = [Float](repeating: 0, count: cout)
                var dG3 = [Float](repeating: 0, count: cout), dBeta3 = dG3
                BatchNormKernels.backwardToWeights(x: z, rectifiedGradient: rect, pooledGradient: pooled, norm, input: input,
                                                   dGamma: &dG3, dBeta: &dBeta3, dW: &dW3, dB: &dB3, pool: ThreadPool(threads: threads))
                XCTAssertEqual(dW3, dW, "\(what) on \(threads) threads"); XCTAssertEqual(dB3, dB, what)
                XCTAssertEqual(dG3, dG2, what); XCTAssertEqual(dBeta3, dB2, what)
            }
        }
    }

    /// A decoder convolution of [skip, upsample2x(map)]: the upsampled part's box sums, map
    /// gradient and weight gradient formed per band too.
    func testFusedDecoderBackwardMatchesTheSeparateKernels() {
        var rng = SplitMix64(seed: 56)
        // (n, skip channels, map channels, cout, full-resolution h, w): several bands, partial ones.
        for (n, cs, cu, cout, h, w) in [(2, 3, 5, 4, 70, 38), (1, 4, 8, 4, 64, 64), (2, 2, 3, 5, 6, 10)] {
            let skip = Tensor.randomNormal(Shape(n, cs, h, w), rng: &rng), map = Tensor.randomNormal(Shape(n, cu, h / 2, w / 2), rng: &rng)
            let z = Tensor.randomNormal(Shape(n, cout, h, w), std: 2, rng: &rng), g = Tensor.randomNormal(z.shape, rng: &rng)
            let wts = Tensor.randomNormal(Shape(cout, cs + cu, 3, 3), std: 0.3, rng: &rng)
            let scale = (0..<cout).map { Float($0) * 0.4 - 0.7 }, shift = (0..<cout).map { Float($0) * 0.1 }
            let mean = (0..<cout).map { Float($0) * 0.05 }, invStd = (0..<cout).map { 1 + Float($0) * 0.2 }
            let gamma = zip(scale, invStd).map { $0 / $1 }
            let norm = BatchNormKernels.Normalisation(mean: mean, invStd: invStd, gamma: gamma, scale: scale, shift: shift)
            let mask = DropoutMask(rate: 0.2, seed: 4)
            let skipPlanes = PaddedPlanes.from(skip), low = PaddedPlanes.from(map)
            let wT = Conv3x3.PackedWeights.transposedFlipped(oihw: wts.data, cout: cout, cin: cs + cu, inputChannels: 0..<cs)
            let dataWeights = UpsampledConv3x3.DataWeights(oihw: wts.data, cout: cout, allInputs: cs + cu, inputChannels: cs..<(cs + cu))
            let what = "\(n) \(cs)+\(cu)->\(cout) \(h)x\(w)"

            var dG1 = [Float](repeating: 0, count: cout), dB1 = dG1, dG2 = dG1, dB2 = dG1
            let dz = PaddedPlanes(n: n, channels: cout, height: h, width: w)
            BatchNormKernels.backward(x: z, dy: g, norm,
                                      reluAfter: true, dropout: mask, dGamma: &dG1, dBeta: &dB1, into: dz)
            let (dxRef, dWsRef, dBRef) = separateBackward(dz, input: skipPlanes, weights: wT)
            let boxSums = UpsampledConv3x3.boxSums(dz)
            let dLRef = Tensor(map.shape, zeroed: false)
            UpsampledConv3x3.backwardData(boxSums: boxSums, dataWeights, into: dLRef)
            var dWuRef = [Float](repeating: 0, count: cout * cu * 9)
            UpsampledConv3x3.backwardWeights(low: low, boxSums: boxSums, dW: &dWuRef)

            let dx = Tensor(skip.shape, zeroed: false), dL = Tensor(map.shape, zeroed: false)
            let dWst = Tensor(Shape(cout, cs, 3, 3)), dBt = Tensor(Shape(1, 1, 1, cout)), dWut = Tensor(Shape(cout, cu, 3, 3))
            let fused = BatchNormKernels.ConvolutionBackward(
                input: skipPlanes, inputGradient: (wT, dx), dW: dWst, dB: dBt,
                upsampled: .init(low: low, inputGradient: (dataWeights, dL), dW: dWut))
            BatchNormKernels.backward(x: z, dy: g, norm,
                                      reluAfter: true, dropout: mask, dGamma: &dG2, dBeta: &dB2, throughConvolution: fused)
            let dWs = dWst.array, dB = dBt.array, dWu = dWut.array
            XCTAssertEqual(dG1, dG2, what); XCTAssertEqual(dB1, dB2, what)
            XCTAssertEqual(dx.array, dxRef.array, "skip gradient \(what)")
            XCTAssertEqual(dL.array, dLRef.array, "map gradient \(what)")
            func close(_ a: [Float], _ b: [Float], _ label: String) {
                XCTAssertLessThan(maxAbsDiff(a, b), 1e-5 * max(1, b.map(abs).max()!), "\(label) \(what)")
            }
            close(dWs, dWsRef, "skip weight gradient"); close(dB, dBRef, "bias gradient"); close(dWu, dWuRef, "map weight gradient")
        }
    }
}

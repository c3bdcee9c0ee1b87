import NanoNet
import NanoTensor
import TestSupport
import XCTest

/// The fused training ops (BN+ReLU, upsample+concat+conv) give the same gradients as the
/// separate ops they replace, through a whole network.
final class FusedOpsAgreementTests: XCTestCase {
    func testFusedAndSeparateOpsGiveTheSameGradients() {
        checkAgreement(UNetConfig(widths: [2, 3], centreWidth: 4, dropout: 0.2), height: 8, width: 12)
    }

    /// As training runs: the input needs no gradient, so the first stage's backward takes the
    /// one-pass route to its weights (`BatchNormKernels.backwardToWeights`).
    func testFusedAndSeparateOpsAgreeWhenTheInputNeedsNoGradient() {
        checkAgreement(UNetConfig(widths: [2, 3], centreWidth: 4, dropout: 0.2), height: 8, width: 12, inputGradient: false)
        checkAgreement(UNetConfig(widths: [4, 8, 16, 32], centreWidth: 32, dropout: 0.2), height: 32, width: 80, inputGradient: false)
        checkAgreement(UNetConfig(widths: [3, 5], centreWidth: 4, inputChannels: 3, dropout: 0.2), height: 68, width: 20,
                       inputGradient: false)
    }

    /// The pyNanoFind widths at sizes where every level has partial vectors (down to a 2×3
    /// centre), so the fused kernels' edge paths are compared too. (A 16×16 input leaves a 1×1
    /// centre whose batch norm over 2 values amplifies round-off beyond any fixed tolerance.)
    func testFusedAndSeparateOpsAgreeOnThePyNanoFindNetwork() {
        checkAgreement(UNetConfig(widths: [4, 8, 16, 32], centreWidth: 32, dropout: 0.2), height: 32, width: 48)
        checkAgreement(UNetConfig(widths: [4, 8, 16, 32], centreWidth: 32, dropout: 0.2), height: 32, width: 80)
    }

    /// Every stage's fused op against the separate ops, at depths 1, 3 and 5 with odd widths
    /// (the plan drives both paths, so any depth goes through the same code).
    func testFusedAndSeparateOpsAgreeAtOtherDepthsAndOddWidths() {
        checkAgreement(UNetConfig(widths: [3], centreWidth: 5, dropout: 0.2), height: 6, width: 10)
        checkAgreement(UNetConfig(widths: [3, 5, 7], centreWidth: 9, dropout: 0.2), height: 16, width: 24)
        checkAgreement(UNetConfig(widths: [2, 3, 5, 7, 9], centreWidth: 11, dropout: 0.2), height: 64, width: 96)
    }

    func checkAgreement(_ config: UNetConfig, height: Int, width: Int, inputGradient: Bool = true,
                        file: StaticString = #filePath, line: UInt = #line) {
        func grads(fused: Bool) -> [[Float]]? {
            let net = UNet(config: config, seed: 5)
            var rng = SplitMix64(seed: 3)
            let x = Variable(Tensor.randomNormal(Shape(2, config.inputChannels, height, width), std: 3, rng: &rng),
                             requiresGrad: inputGradient)
            let tape = Tape()
            // An observer makes the network run BN and ReLU as separate ops.
            let logits = net.forward(x, tape: tape, training: true, dropoutSeed: 3, observe: fused ? nil : { _, _ in })
            tape.backward(tape.weightedSum(logits, Tensor.randomNormal(logits.shape, rng: &rng)))
            // A parameter without a gradient is a failure, not an empty array that compares equal.
            var all = inputGradient ? [x.grad?.array] : []
            for p in net.parameters { all.append(p.grad?.array) }
            guard all.allSatisfy({ $0 != nil }) else {
                XCTFail("a gradient is missing (\(fused ? "fused" : "separate") ops, \(height)x\(width))", file: file, line: line)
                return nil
            }
            return all.map { $0! }
        }
        guard let a = grads(fused: true), let b = grads(fused: false) else { return }
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        // A convolution bias followed by batch norm has a gradient that is zero up to round-off
        // (the norm removes the mean); the fused op gathers the batch mean differently, so there
        // both are compared on the scale of the network's other gradients.
        let networkScale = largest(b.map { largest($0.map(abs)) ?? 0 }) ?? 0
        for (i, (ga, gb)) in zip(a, b).enumerated() {
            XCTAssertEqual(ga.count, gb.count, "gradient \(i)", file: file, line: line)
            XCTAssertGreaterThan(gb.count, 0, "gradient \(i) is empty", file: file, line: line)
            let scale = max(1e-3 * networkScale, largest(gb.map(abs)) ?? 0)
            let diff = maxAbsDifference(ga, gb)
            // The fused decoder convolution sums weights before multiplying (phase-decomposed
            // upsampling), so values agree to round-off, which batch statistics over 2 × 8 × 12
            // pixels amplify to a few 1e-4.
            XCTAssertLessThan(diff, 5e-4 * scale, "gradient \(i) at \(height)x\(width): fused and separate differ by \(diff) (scale \(scale))",
                              file: file, line: line)
        }
    }
}

/// The inference path's fused last-conv + 1×1 head + softmax kernel against the plain path.
final class FusedHeadTests: XCTestCase {
    func testFusedSoftmaxHeadMatchesLogitsThenSoftmax() {
        for (widths, h, w) in [([3, 5], 8, 40), ([4, 8], 12, 132), ([2, 2], 4, 68)] {
            let net = UNet(config: UNetConfig(widths: widths, centreWidth: 6), seed: 9)
            var rng = SplitMix64(seed: 2)
            for (_, t) in net.namedTensors { for k in 0..<t.count { t.data[k] += 0.1 * rng.nextGaussian() } }
            for bn in net.layerNorms.compactMap({ $0 }) { for k in 0..<bn.channels { bn.runningVariance.data[k] = 0.5 + rng.nextFloat() } }
            let engine = UNetInference(net)
            let x = Tensor.randomNormal(Shape(2, 1, h, w), rng: &rng)
            let fused = engine.probabilities(x)
            let plain = ChannelKernels.softmax(engine.logits(x))
            let d = maxAbsDifference(fused.array, plain.array)
            XCTAssertLessThan(d, 1e-5, "widths \(widths) \(h)x\(w)")
            // and the autograd path in inference mode agrees too
            let z = net.forward(Variable(x), tape: Tape(), training: false).value
            let d2 = maxAbsDifference(ChannelKernels.softmax(z).array, fused.array)
            XCTAssertLessThan(d2, 1e-4, "widths \(widths) \(h)x\(w) vs tape")
        }
    }

    /// A batch's probabilities are each image's own, bit for bit: where the last level and the
    /// head run as one pass (each image read straight from the batch and written straight into
    /// it: first widths of 3 and 4) and where they do not (6).
    func testABatchGivesEachImagesOwnProbabilities() {
        for widths in [[4, 8], [3, 5], [6, 8]] {
            let net = UNet(config: UNetConfig(widths: widths, centreWidth: 6), seed: 4)
            let engine = UNetInference(net)
            var rng = SplitMix64(seed: 5)
            let (n, h, w) = (3, 16, 40)
            let x = Tensor.randomNormal(Shape(n, 1, h, w), rng: &rng)
            let batch = engine.probabilities(x)
            XCTAssertEqual(batch.shape, Shape(n, 2, h, w))
            for i in 0..<n {
                let one = Tensor(Shape(1, 1, h, w), zeroed: false)
                one.data.update(from: x.plane(i, 0), count: h * w)
                let own = engine.probabilities(one)
                let inBatch = Array(UnsafeBufferPointer(start: batch.plane(i, 0), count: 2 * h * w))
                XCTAssertEqual(inBatch.map(\.bitPattern), own.array.map(\.bitPattern), "widths \(widths), image \(i)")
            }
        }
    }

    /// Decoder levels above the last, fused per band of rows (`OutputLevel`) or run as two passes,
    /// give the same probabilities bit for bit through the whole network at this build's vector
    /// width: `.automatic` fuses only in 16-lane builds, so
    /// the 8- and 4-lane runs of `make test` would otherwise never run the fused network path.
    func testDecoderLevelsFusedOrInTwoPassesGiveTheSameBits() {
        for (config, h, w) in [(UNetConfig.pyNanoFind, 256, 256), (UNetConfig(widths: [4, 8, 8], centreWidth: 16), 144, 208)] {
            let net = UNet(config: config, seed: 11)
            var rng = SplitMix64(seed: 12)
            for (_, t) in net.namedTensors { for k in 0..<t.count { t.data[k] += 0.1 * rng.nextGaussian() } }
            let engine = UNetInference(net)
            let x = Tensor.randomNormal(Shape(1, 1, h, w), rng: &rng)
            var bits: [UNetInference.LevelFusion: [UInt32]] = [:]
            var stages: [UNetInference.LevelFusion: [String]] = [:]
            for fusion in [UNetInference.LevelFusion.never, .always, .automatic] {
                engine.levelFusion = fusion
                engine.stageObserver = { name, _ in stages[fusion, default: []].append(name) }
                bits[fusion] = engine.probabilities(x).array.map(\.bitPattern)
                engine.stageObserver = nil
            }
            XCTAssertEqual(bits[.always], bits[.never], "\(config.widths) \(h)x\(w): fused levels differ from two passes")
            XCTAssertEqual(bits[.automatic], bits[.never], "\(config.widths) \(h)x\(w)")
            // Each setting ran the path it names: fused levels report one stage for both convolutions.
            let fusedStages = { (s: [String]) in s.filter { $0.hasPrefix("up") && $0.contains("+") && !$0.contains("final") }.count }
            XCTAssertEqual(fusedStages(stages[.never] ?? []), 0)
            XCTAssertEqual(fusedStages(stages[.always] ?? []), config.depth - 1, "\(stages[.always] ?? [])")
        }
    }

    /// The first level's skip recomputed where the last level reads it (`UNetPlan
    /// .firstSkipRecomputed`) or laid out by the encoder gives the same probabilities bit for
    /// bit through the whole network; the plan recomputes it only for one input channel and a
    /// last level in bands.
    func testFirstSkipRecomputedOrLaidOutGivesTheSameBits() {
        for (config, h, w) in [(UNetConfig.pyNanoFind, 256, 256), (UNetConfig(widths: [4, 8, 8], centreWidth: 16), 144, 208),
                               (UNetConfig(widths: [2, 4], centreWidth: 8), 52, 36)] {
            let net = UNet(config: config, seed: 13)
            var rng = SplitMix64(seed: 14)
            for (_, t) in net.namedTensors { for k in 0..<t.count { t.data[k] += 0.1 * rng.nextGaussian() } }
            let engine = UNetInference(net)
            XCTAssertTrue(engine.plan.firstSkipRecomputed, "\(config.widths)")
            let x = Tensor.randomNormal(Shape(2, 1, h, w), rng: &rng)
            engine.recomputesFirstSkip = false
            let laidOut = engine.probabilities(x)
            XCTAssertEqual(engine.firstSkipRecomputations, 0)
            engine.recomputesFirstSkip = true
            XCTAssertEqual(engine.probabilities(x).array.map(\.bitPattern), laidOut.array.map(\.bitPattern), "\(config.widths) \(h)x\(w)")
            XCTAssertEqual(engine.firstSkipRecomputations, 2, "one recomputing pass per image")
        }
        XCTAssertFalse(UNet(config: UNetConfig(widths: [8, 8], centreWidth: 8), seed: 1).plan.firstSkipRecomputed)
        XCTAssertFalse(UNet(config: UNetConfig(widths: [4, 8], centreWidth: 8, inputChannels: 2), seed: 1).plan.firstSkipRecomputed)
        XCTAssertFalse(UNet(config: UNetConfig(widths: [4, 8], centreWidth: 8, classes: 3), seed: 1).plan.firstSkipRecomputed)
    }

    /// The stages a pass reports (`stageObserver`, which `bench` times) cover every
    /// convolution exactly once, in the order they run, and watching does not change the result.
    func testStagesCoverEveryConvolutionOnce() {
        let net = UNet(config: .pyNanoFind, seed: 3)
        let engine = UNetInference(net)
        var rng = SplitMix64(seed: 5)
        let x = Tensor.randomNormal(Shape(1, 1, 256, 256), rng: &rng)
        let unwatched = engine.probabilities(x)
        var stages: [String] = []
        engine.stageObserver = { name, seconds in
            XCTAssertGreaterThanOrEqual(seconds, 0)
            stages.append(name)
        }
        let watched = engine.probabilities(x)
        engine.stageObserver = nil
        XCTAssertEqual(watched.array.map(\.bitPattern), unwatched.array.map(\.bitPattern))
        XCTAssertEqual(stages.first, "input")
        let parts = stages.dropFirst().flatMap { $0.split(separator: "+").map(String.init) }
        XCTAssertEqual(parts, engine.plan.convolutions.map(\.name), "\(stages)")
    }

    /// A window of the particle probabilities (what a tile keeps) is channel 1 of the whole map
    /// bit for bit, on the fused last level (first width ≤ 4, its first skip recomputed, the map's
    /// laid out) and on the plain one; rows beyond the window's row stride are left as they were.
    func testParticleWindowIsTheMapsChannelOneBitForBit() {
        for widths in [[4, 8], [8, 8, 16]] {
            let net = UNet(config: UNetConfig(widths: widths, centreWidth: 8), seed: 7)
            var rng = SplitMix64(seed: 4)
            for (_, t) in net.namedTensors { for k in 0..<t.count { t.data[k] += 0.1 * rng.nextGaussian() } }
            let engine = UNetInference(net)
            let (h, w) = (48, 80)
            let x = Tensor.randomNormal(Shape(1, 1, h, w), rng: &rng)
            // The whole map with the first skip laid out; the windows recompute it where the plan allows.
            engine.recomputesFirstSkip = false
            let map = engine.probabilities(x)
            engine.recomputesFirstSkip = true
            let input = PaddedPlanes(n: 1, channels: 1, height: h, width: w)
            input.fill(plane: 0) { y, dst in dst.update(from: x.data + y * w, count: w) }
            for (rows, columns) in [(0..<h, 0..<w), (5..<31, 7..<70), (47..<48, 0..<1), (0..<1, 79..<80)] {
                let stride = columns.count + 3
                var out = [Float](repeating: -7, count: rows.count * stride)
                var mask = [UInt8](repeating: 9, count: rows.count * stride)
                out.withUnsafeMutableBufferPointer { o in
                    engine.particleProbabilities(input, rows: rows, columns: columns, into: o.baseAddress!, rowStride: stride)
                }
                // With the mask made as the rows are written: the same map, and its threshold.
                var withMask = [Float](repeating: -7, count: rows.count * stride)
                withMask.withUnsafeMutableBufferPointer { o in mask.withUnsafeMutableBufferPointer { m in
                    engine.particleProbabilities(input, rows: rows, columns: columns, into: o.baseAddress!, rowStride: stride,
                                                 mask: (m.baseAddress!, 0.5))
                } }
                XCTAssertEqual(withMask.map(\.bitPattern), out.map(\.bitPattern), "widths \(widths)")
                for (r, y) in rows.enumerated() {
                    let expected = (0..<columns.count).map { map.plane(0, 1)[y * w + columns.lowerBound + $0] }
                    XCTAssertEqual(Array(out[(r * stride)..<(r * stride + columns.count)]), expected, "widths \(widths) row \(y) of \(rows), \(columns)")
                    XCTAssertEqual(Array(out[(r * stride + columns.count)..<(r * stride + stride)]), [-7, -7, -7])
                    XCTAssertEqual(Array(mask[(r * stride)..<(r * stride + columns.count)]), expected.map { $0 > 0.5 ? 1 : 0 }, "widths \(widths) row \(y)")
                    XCTAssertEqual(Array(mask[(r * stride + columns.count)..<(r * stride + stride)]), [9, 9, 9])
                }
            }
        }
    }
}

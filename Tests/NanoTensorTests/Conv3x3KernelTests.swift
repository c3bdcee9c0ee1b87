import NanoTensor
import TestSupport
import XCTest

/// The fast 3×3 kernels against their plain reference twins on random shapes, odd sizes included.
final class Conv3x3KernelTests: XCTestCase {
    // (n, cin, cout, h, w): widths exercise every chunk of `RegisterBlocking.forEachRowChunk` (full
    // blocks, the pair and single-vector tails, partial last vectors) at 16, 8 and 4 lanes.
    let shapes: [(Int, Int, Int, Int, Int)] = [
        (1, 1, 4, 8, 8), (2, 3, 5, 7, 37), (1, 12, 4, 9, 70), (2, 8, 8, 16, 64),
        (1, 5, 3, 3, 1), (1, 2, 6, 1, 130), (3, 4, 9, 6, 24), (1, 32, 32, 5, 96),
        (1, 3, 4, 4, 48), (2, 4, 5, 3, 20),  // one full vector left after the blocks, at 16 and at 4 lanes
        (1, 3, 4, 4, 32), (2, 2, 5, 3, 29),  // four vectors (the last partial) as two pairs, at 8 lanes
    ]

    func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float { maxAbsDifference(a, b) }

    /// Work items of a convolution: a large map keeps 8 bands of rows per thread; a small one
    /// gets fewer, larger bands (about `minItemWork` multiply-adds each) but never fewer than 2
    /// items per thread where it has them.
    func testBandRowsCutSmallMapsCoarselyAndLargeOnesFinely() {
        func band(_ h: Int, _ w: Int, _ cin: Int, _ blocks: Int, _ n: Int = 1, threads: Int = 2) -> Int {
            Conv3x3.bandRows(height: h, width: w, inputs: cin, blocks: blocks, images: n, threads: threads)
        }
        XCTAssertEqual(Conv3x3.minItemWork, 1 << 20)
        XCTAssertEqual(band(2048, 2048, 1, 1), 128)  // 8 bands per thread
        XCTAssertEqual(band(512, 512, 1, 1), 52)     // 9.4 M multiply-adds: 9 bands, 10 for as many per thread
        XCTAssertEqual(band(64, 64, 16, 8), 32)      // a tile's 64² encoder: 2.4 M per block, two bands, 16 items
        XCTAssertEqual(band(32, 32, 32, 8), 32)      // the centre: 1.2 M per block, one band, 8 items
        XCTAssertEqual(band(128, 128, 32, 8), 8)     // a 2048² image's centre: 18.9 M per block, 16 bands
        XCTAssertEqual(band(512, 512, 4, 1, 20), 32)   // a training batch: 37.7 M per image, 8 bands per thread
        XCTAssertEqual(band(7, 21, 16, 4, threads: 3), 3)  // 2 items per thread, 4 blocks: 3 bands make 12 items
        XCTAssertEqual(band(1, 8, 1, 1, threads: 4), 1)
        XCTAssertEqual(band(0, 8, 1, 1), 1)  // an empty map: no items, no division by zero
        for h in [1, 2, 7, 32, 64, 100, 256, 512, 2048] {
            for (width, cin, blocks, n, threads) in [(h, 1, 1, 1, 2), (h, 32, 8, 1, 2), (h, 4, 2, 20, 2), (3 * h, 16, 4, 1, 3), (h, 8, 1, 2, 1)] {
                let b = band(h, width, cin, blocks, n, threads: threads)
                XCTAssert((1...h).contains(b), "band \(b) of \(h) rows")
                let bands = (h + b - 1) / b
                XCTAssertLessThanOrEqual(bands, 8 * threads)
                XCTAssertGreaterThanOrEqual(n * bands * blocks, min(2 * threads, n * h * blocks), "\(h)x\(width) \(cin) in, \(blocks) blocks, \(n) images")
            }
        }
    }

    func testForwardMatchesReference() {
        var rng = SplitMix64(seed: 1)
        for pool in [ThreadPool(threads: 1), ThreadPool(threads: 2)] {
            for (n, cin, cout, h, w) in shapes {
                let x = Tensor.randomNormal(Shape(n, cin, h, w), rng: &rng)
                let wt = Tensor.randomNormal(Shape(cout, cin, 3, 3), rng: &rng)
                let b = Tensor.randomNormal(Shape(1, 1, 1, cout), rng: &rng)
                let packed = Conv3x3.PackedWeights(oihw: wt.data, bias: b.data, cout: cout, cin: cin)
                let out = Tensor(Shape(n, cout, h, w))
                Conv3x3.forward(PaddedPlanes.from(x, pool: pool), packed, into: out, pool: pool)
                let ref = Conv3x3Reference.forward(x, weights: wt.array, bias: b.array, cout: cout)
                XCTAssertLessThan(maxAbsDiff(out.array, ref.array), 1e-4, "forward \(n) \(cin)->\(cout) \(h)x\(w)")
                // Fused ReLU
                let outR = Tensor(Shape(n, cout, h, w))
                Conv3x3.forward(PaddedPlanes.from(x, pool: pool), packed, into: outR, relu: true, pool: pool)
                XCTAssertLessThan(maxAbsDiff(outR.array, ref.array.map { max($0, 0) }), 1e-4)
                // The pre-ReLU output and its ReLU into padded planes that held other data
                // (NaN, borders included): the copy's interior is the ReLU, and a convolution
                // reading it sees zero borders.
                let copy = PaddedPlanes(n: n, channels: cout, height: h, width: w)
                copy.data.update(repeating: .nan, count: n * cout * copy.planeStride)
                let pre = Tensor(Shape(n, cout, h, w))
                Conv3x3.forward(PaddedPlanes.from(x, pool: pool), packed, into: pre, reluCopy: copy, pool: pool)
                XCTAssertLessThan(maxAbsDiff(pre.array, ref.array), 1e-4)
                XCTAssertEqual(copy.interior().array, pre.array.map { max($0, 0) })
                let w2 = Tensor.randomNormal(Shape(2, cout, 3, 3), rng: &rng)
                let next = Tensor(Shape(n, 2, h, w))
                Conv3x3.forward(copy, Conv3x3.PackedWeights(oihw: w2.data, bias: nil, cout: 2, cin: cout), into: next, pool: pool)
                let nextRef = Conv3x3Reference.forward(outR, weights: w2.array, bias: [Float](repeating: 0, count: 2), cout: 2)
                XCTAssertLessThan(maxAbsDiff(next.array, nextRef.array), 1e-3, "convolution of the ReLU copy \(h)x\(w)")
            }
        }
    }

    /// The encoder's one-pass convolution, skip copy and pooling gives exactly what the separate
    /// convolution (with its ReLU copy) and pooling give, on odd sizes and partial blocks too, into
    /// planes that held NaN.
    func testEncoderConvolutionWithPoolingMatchesTheSeparatePasses() {
        var rng = SplitMix64(seed: 11)
        for pool in [ThreadPool(threads: 1), ThreadPool(threads: 2)] {
            for (n, cin, cout, h, w) in shapes + [(1, 4, 4, 64, 64), (2, 1, 4, 34, 50), (1, 4, 8, 2, 2)] {
                let x = Tensor.randomNormal(Shape(n, cin, h, w), rng: &rng)
                let wt = Tensor.randomNormal(Shape(cout, cin, 3, 3), rng: &rng)
                let b = Tensor.randomNormal(Shape(1, 1, 1, cout), rng: &rng)
                let packed = Conv3x3.PackedWeights(oihw: wt.data, bias: b.data, cout: cout, cin: cin)
                let input = PaddedPlanes.from(x, pool: pool)
                let pre = Tensor(Shape(n, cout, h, w))
                let copy = PaddedPlanes(n: n, channels: cout, height: h, width: w)
                Conv3x3.forward(input, packed, into: pre, reluCopy: copy, pool: pool)
                let pooledRef = PaddedPlanes(n: n, channels: cout, height: h / 2, width: w / 2)
                pooledRef.fillMaxPool2x2(of: pre, pool: pool)

                let copy2 = PaddedPlanes(n: n, channels: cout, height: h, width: w)
                let pooled = PaddedPlanes(n: n, channels: cout, height: h / 2, width: w / 2)
                copy2.data.update(repeating: .nan, count: n * cout * copy2.planeStride)
                pooled.data.update(repeating: .nan, count: n * cout * pooled.planeStride)
                Conv3x3.forward(input, packed, reluCopy: copy2, pooledInto: pooled, pool: pool)
                let shape = "\(n) \(cin)->\(cout) \(h)x\(w)"
                XCTAssertEqual(copy2.interior().array, copy.interior().array, "skip \(shape)")
                XCTAssertEqual(pooled.interior().array, pooledRef.interior().array, "pooled \(shape)")
                // Borders of both are zero: a convolution reading them sees "same" padding.
                for planes in [copy2, pooled] where planes.height > 0 && planes.width > 0 {
                    let ones = Tensor(Shape(1, cout, 3, 3)); ones.data.update(repeating: 1, count: ones.count)
                    let sum = Tensor(Shape(n, 1, planes.height, planes.width))
                    Conv3x3.forward(planes, Conv3x3.PackedWeights(oihw: ones.data, bias: nil, cout: 1, cin: cout), into: sum, pool: pool)
                    XCTAssertFalse(sum.array.contains { $0.isNaN }, "NaN in a border \(shape)")
                }
            }
        }
    }

    func testForwardWithStatisticsGivesTheOutputsBatchMeanAndVariance() {
        var rng = SplitMix64(seed: 4)
        for (n, cin, cout, h, w) in shapes {
            let x = Tensor.randomNormal(Shape(n, cin, h, w), std: 2, rng: &rng)
            for k in 0..<x.count { x.data[k] += 3 }  // a mean well away from zero
            let wt = Tensor.randomNormal(Shape(cout, cin, 3, 3), rng: &rng)
            let b = Tensor.randomNormal(Shape(1, 1, 1, cout), rng: &rng)
            let packed = Conv3x3.PackedWeights(oihw: wt.data, bias: b.data, cout: cout, cin: cin)
            var results: [[Float]] = []
            for pool in [ThreadPool(threads: 1), ThreadPool(threads: 2)] {
                let out = Tensor(Shape(n, cout, h, w))
                let (mean, variance) = Conv3x3.forwardWithStatistics(PaddedPlanes.from(x, pool: pool), packed, into: out, pool: pool)
                let ref = Conv3x3Reference.forward(x, weights: wt.array, bias: b.array, cout: cout)
                XCTAssertLessThan(maxAbsDiff(out.array, ref.array), 1e-5 * max(1, ref.array.map(abs).max()!))
                let (m2, v2) = BatchNormKernels.statistics(out)
                for c in 0..<cout {
                    XCTAssertEqual(mean[c], m2[c], accuracy: 1e-5 * max(1, abs(m2[c])), "mean \(c) of \(n) \(cin)->\(cout) \(h)x\(w)")
                    XCTAssertEqual(variance[c], v2[c], accuracy: 1e-5 * max(1, v2[c]), "variance \(c) of \(n) \(cin)->\(cout) \(h)x\(w)")
                }
                results.append(mean + variance)
            }
            XCTAssertEqual(results[0], results[1], "statistics depend on the thread count")
        }
    }

    func testUpsampledConvolutionMatchesTheReferenceOnTheUpsampledConcatenation() {
        var rng = SplitMix64(seed: 5)
        // (n, skip channels, upsampled channels, cout, low-resolution h, w): full and partial
        // vector chunks, odd sizes, blocks of 4 outputs with a remainder.
        for (n, cs, cu, cout, h, w) in [(1, 4, 8, 4, 8, 40), (2, 3, 5, 6, 3, 7), (1, 16, 32, 16, 4, 16), (1, 2, 3, 5, 1, 1),
                                        (2, 8, 16, 8, 5, 33), (1, 0, 4, 3, 6, 20), (1, 2, 3, 4, 3, 30),
                                        (1, 1, 3, 2, 300, 5)] {  // bands of 10 rows: more than one pass of 8 in the weight gradient
            let skip = Tensor.randomNormal(Shape(n, cs, 2 * h, 2 * w), rng: &rng)
            let low = Tensor.randomNormal(Shape(n, cu, h, w), rng: &rng)
            let wt = Tensor.randomNormal(Shape(cout, cs + cu, 3, 3), rng: &rng)
            let b = Tensor.randomNormal(Shape(1, 1, 1, cout), rng: &rng)
            let input = cs > 0 ? ChannelKernels.concat([skip, PoolingKernels.upsample2x(low)]) : PoolingKernels.upsample2x(low)
            let ref = Conv3x3Reference.forward(input, weights: wt.array, bias: b.array, cout: cout)
            for relu in [false, true] {
                for pool in [ThreadPool(threads: 1), ThreadPool(threads: 2)] {
                    let out = Tensor(Shape(n, cout, 2 * h, 2 * w))
                    if cs > 0 {
                        Conv3x3.forward(PaddedPlanes.from(skip, pool: pool),
                                        .init(oihw: wt.data, bias: b.data, cout: cout, allInputs: cs + cu, inputChannels: 0..<cs),
                                        into: out, pool: pool)
                    } else {
                        for i in 0..<n { for o in 0..<cout { out.plane(i, o).update(repeating: b.data[o], count: out.shape.plane) } }
                    }
                    UpsampledConv3x3.forward(PaddedPlanes.from(low, pool: pool),
                                             .init(oihw: wt.data, cout: cout, allInputs: cs + cu, inputChannels: cs..<(cs + cu)),
                                             addingInto: out, relu: relu, pool: pool)
                    let expected = relu ? ref.array.map { max($0, 0) } : ref.array
                    XCTAssertLessThan(maxAbsDiff(out.array, expected), 1e-4, "\(n) \(cs)+\(cu)->\(cout) \(h)x\(w) relu \(relu)")
                }
            }
        }
    }

    /// A decoder level with random values: its skip (n, cs, 2h, 2w) and map (n, cu, h, w), its
    /// first convolution (f outputs, bias) as the direct and the upsampled part, and a second
    /// convolution f → o (bias); `firstPass` runs the first convolution alone into padded planes.
    struct RandomDecoderLevel {
        let skip: Tensor, low: Tensor
        let direct: Conv3x3.PackedWeights, phase: UpsampledConv3x3.PhaseWeights, second: Conv3x3.PackedWeights
        init(n: Int, cs: Int, cu: Int, f: Int, o: Int, h: Int, w: Int, rng: inout SplitMix64) {
            skip = Tensor.randomNormal(Shape(n, cs, 2 * h, 2 * w), rng: &rng)
            low = Tensor.randomNormal(Shape(n, cu, h, w), rng: &rng)
            let w1 = Tensor.randomNormal(Shape(f, cs + cu, 3, 3), rng: &rng), b1 = Tensor.randomNormal(Shape(1, 1, 1, f), rng: &rng)
            let w2 = Tensor.randomNormal(Shape(o, f, 3, 3), rng: &rng), b2 = Tensor.randomNormal(Shape(1, 1, 1, o), rng: &rng)
            direct = Conv3x3.PackedWeights(oihw: w1.data, bias: b1.data, cout: f, allInputs: cs + cu, inputChannels: 0..<cs)
            phase = UpsampledConv3x3.PhaseWeights(oihw: w1.data, cout: f, allInputs: cs + cu, inputChannels: cs..<(cs + cu))
            second = Conv3x3.PackedWeights(oihw: w2.data, bias: b2.data, cout: o, cin: f)
        }
        func firstPass(_ sp: PaddedPlanes, _ lp: PaddedPlanes, pool: ThreadPool) -> PaddedPlanes {
            let t = PaddedPlanes(n: sp.n, channels: direct.cout, height: sp.height, width: sp.width)
            UpsampledConv3x3.forward(skip: sp, direct, low: lp, phase, into: t, relu: true, pool: pool)
            return t
        }
    }

    /// An encoder's random input (n, cin, h, w) and its weights to `cs` channels, packed: what a
    /// recomputed skip (`OutputLevel.Skip.recomputed`) is made from.
    func randomEncoder(n: Int, cin: Int, cs: Int, h: Int, w: Int, rng: inout SplitMix64) -> (Tensor, Conv3x3.PackedWeights) {
        let x = Tensor.randomNormal(Shape(n, cin, h, w), rng: &rng)
        let we = Tensor.randomNormal(Shape(cs, cin, 3, 3), rng: &rng), be = Tensor.randomNormal(Shape(1, 1, 1, cs), rng: &rng)
        return (x, Conv3x3.PackedWeights(oihw: we.data, bias: be.data, cout: cs, cin: cin))
    }

    /// A level's bands (`OutputLevel.bandCuts`) cover its rows once, in order, none taller than
    /// `bandRows`; where each thread's share holds fewer than 8 bands, every share ends at a cut
    /// and in bands of halving height (a 512² tile's 256² level on 2 threads: 32, 32, 32, 16, 8, 8
    /// each); on one thread, or with 8 bands a share, they are all of `bandRows` but the last.
    func testOutputLevelBandsTaperAtTheEndOfEachThreadsShare() {
        XCTAssertEqual(OutputLevel.band, 32)
        XCTAssertEqual(OutputLevel.bandCuts(produced: 256, threads: 2),
                       [0, 32, 64, 96, 112, 120, 128, 160, 192, 224, 240, 248, 256])
        XCTAssertEqual(OutputLevel.bandCuts(produced: 128, threads: 2), [0, 16, 32, 48, 56, 64, 80, 96, 112, 120, 128])
        XCTAssertEqual(OutputLevel.bandCuts(produced: 512, threads: 2), Array(stride(from: 0, through: 512, by: 32)))
        XCTAssertEqual(OutputLevel.bandCuts(produced: 512, threads: 1), Array(stride(from: 0, through: 512, by: 32)))
        XCTAssertEqual(OutputLevel.bandCuts(produced: 2048, threads: 2), Array(stride(from: 0, through: 2048, by: 32)))
        for produced in [1, 2, 7, 16, 33, 64, 100, 128, 255, 256, 300, 511, 1000, 1023, 1024, 4096] {
            for threads in 1...4 {
                let cuts = OutputLevel.bandCuts(produced: produced, threads: threads)
                let band = OutputLevel.bandRows(produced: produced, threads: threads)
                let label = "\(produced) rows, \(threads) threads: \(cuts)"
                XCTAssertEqual(cuts.first, 0, label)
                XCTAssertEqual(cuts.last, produced, label)
                let heights = zip(cuts.dropFirst(), cuts).map { $0 - $1 }
                XCTAssertTrue(heights.allSatisfy { $0 >= 1 && $0 <= band }, label)
                guard threads > 1 && produced < 8 * band * threads else {
                    XCTAssertTrue(heights.dropLast().allSatisfy { $0 == band }, label)
                    continue
                }
                for t in 1..<threads { XCTAssertTrue(cuts.contains(t * produced / threads), "\(label): share \(t)") }
                // Within a share, no band taller than the one before it.
                for k in 1..<heights.count where !(1..<threads).contains(where: { cuts[k] == $0 * produced / threads }) {
                    XCTAssertLessThanOrEqual(heights[k], heights[k - 1], "\(label): band \(k)")
                }
            }
        }
    }

    /// The last decoder level in one pass per band (`OutputLevel`) equals its two passes (the
    /// decoder convolution into padded planes, then the last convolution with the softmax head)
    /// bit for bit: bands with odd first rows, bands of one row, a partial block of features,
    /// 1 to 3 threads.
    func testOutputLevelEqualsItsTwoPasses() {
        var rng = SplitMix64(seed: 12)
        // (n, skip channels, map channels, features, low-resolution h, w)
        // 300 rows: whole bands of `OutputLevel.band` and a partial one on 1 thread.
        for (n, cs, cu, f, h, w) in [(1, 4, 8, 4, 32, 40), (2, 3, 5, 3, 7, 9), (1, 4, 8, 4, 1, 1), (1, 1, 2, 2, 40, 3),
                                     (1, 4, 8, 4, 70, 33), (1, 1, 2, 2, 150, 3)] {
            let level = RandomDecoderLevel(n: n, cs: cs, cu: cu, f: f, o: f, h: h, w: w, rng: &rng)
            let head = Tensor.randomNormal(Shape(1, 1, 1, 2 * f + 2), rng: &rng).array
            for pool in [ThreadPool(threads: 1), ThreadPool(threads: 2), ThreadPool(threads: 3)] {
                let sp = PaddedPlanes.from(level.skip, pool: pool), lp = PaddedPlanes.from(level.low, pool: pool)
                let expected = Tensor(Shape(n, 2, 2 * h, 2 * w))
                Conv3x3.forwardWithSoftmaxHead(level.firstPass(sp, lp, pool: pool), level.second, head: head, into: expected, pool: pool)
                let out = Tensor(Shape(n, 2, 2 * h, 2 * w), repeating: .nan)
                OutputLevel.forward(skip: sp, level.direct, low: lp, level.phase, last: level.second, head: head, into: out, pool: pool)
                XCTAssertEqual(out.array.map(\.bitPattern), expected.array.map(\.bitPattern),
                               "\(n) \(cs)+\(cu)->\(f) \(2 * h)x\(2 * w), \(pool.threadCount) threads")
            }
        }
    }

    /// The last level with its skip recomputed from the encoder's input (`OutputLevel.Skip
    /// .recomputed`) gives what it gives with the skip the encoder lays out
    /// (`Conv3x3.forward(_:_:reluCopy:pooledInto:)`), bit for bit: both classes of whole images,
    /// and windows of rows that start and end inside the image (a band's rows above and below
    /// then come from the image, not the padding), encoders of one and of several input channels
    /// and more than one block of outputs, 1 to 3 threads.
    func testLastLevelWithItsSkipRecomputedEqualsTheLaidOutSkip() {
        var rng = SplitMix64(seed: 15)
        // (n, encoder inputs, skip channels, map channels, features, low-resolution h, w)
        for (n, cin, cs, cu, f, h, w) in [(1, 1, 4, 8, 4, 32, 40), (2, 2, 3, 5, 3, 7, 9), (1, 1, 4, 8, 4, 1, 1),
                                          (1, 1, 6, 2, 2, 75, 3), (1, 3, 4, 8, 4, 70, 33)] {
            let level = RandomDecoderLevel(n: n, cs: cs, cu: cu, f: f, o: f, h: h, w: w, rng: &rng)
            let head = Tensor.randomNormal(Shape(1, 1, 1, 2 * f + 2), rng: &rng).array
            let (x, encoder) = randomEncoder(n: n, cin: cin, cs: cs, h: 2 * h, w: 2 * w, rng: &rng)
            for pool in [ThreadPool(threads: 1), ThreadPool(threads: 2), ThreadPool(threads: 3)] {
                let input = PaddedPlanes.from(x, pool: pool), lp = PaddedPlanes.from(level.low, pool: pool)
                let skip = PaddedPlanes(n: n, channels: cs, height: 2 * h, width: 2 * w)
                let pooled = PaddedPlanes(n: n, channels: cs, height: h, width: w)
                Conv3x3.forward(input, encoder, reluCopy: skip, pooledInto: pooled, pool: pool)
                let label = "\(n) \(cin)->\(cs)+\(cu)->\(f) \(2 * h)x\(2 * w), \(pool.threadCount) threads"
                let expected = Tensor(Shape(n, 2, 2 * h, 2 * w))
                OutputLevel.forward(skip: skip, level.direct, low: lp, level.phase, last: level.second, head: head, into: expected, pool: pool)
                let out = Tensor(Shape(n, 2, 2 * h, 2 * w), repeating: .nan)
                OutputLevel.forward(skip: .recomputed(input: input, encoder), level.direct, low: lp, level.phase, last: level.second,
                                    head: head, into: .tensor(out), pool: pool)
                XCTAssertEqual(out.array.map(\.bitPattern), expected.array.map(\.bitPattern), label)
                guard n == 1 else { continue }
                for rows in [1..<(2 * h - 1), (h / 2)..<(h + 1), (2 * h - 1)..<(2 * h)] where !rows.isEmpty {
                    let columns = 0..<(2 * w)
                    var window = [Float](repeating: .nan, count: rows.count * columns.count)
                    window.withUnsafeMutableBufferPointer { o in
                        _ = OutputLevel.forward(skip: .recomputed(input: input, encoder), level.direct, low: lp, level.phase,
                                                last: level.second, head: head,
                                                into: .particleWindow(base: o.baseAddress!, rowStride: columns.count, rows: rows,
                                                                      columns: columns, mask: nil), pool: pool)
                    }
                    let kept = rows.flatMap { y in (0..<(2 * w)).map { expected.plane(0, 1)[y * 2 * w + $0] } }
                    XCTAssertEqual(window.map(\.bitPattern), kept.map(\.bitPattern), "\(label), rows \(rows)")
                }
            }
        }
    }

    /// A decoder level above the last in one pass per band (`OutputLevel`, into padded planes)
    /// equals its two passes (the decoder convolution, then the second convolution with ReLU
    /// into padded planes) bit for bit, borders included: more output channels than one block,
    /// bands with odd first rows and of one row, 1 to 3 threads.
    func testDecoderLevelIntoPlanesEqualsItsTwoPasses() {
        var rng = SplitMix64(seed: 14)
        // (n, skip channels, map channels, features, outputs, low-resolution h, w)
        for (n, cs, cu, f, o, h, w) in [(1, 8, 16, 8, 8, 32, 40), (2, 3, 5, 3, 6, 7, 9), (1, 4, 8, 4, 5, 1, 1), (1, 1, 2, 2, 2, 40, 3),
                                        (1, 16, 32, 16, 16, 70, 33), (1, 1, 2, 2, 2, 150, 3)] {
            let level = RandomDecoderLevel(n: n, cs: cs, cu: cu, f: f, o: o, h: h, w: w, rng: &rng)
            for pool in [ThreadPool(threads: 1), ThreadPool(threads: 2), ThreadPool(threads: 3)] {
                let sp = PaddedPlanes.from(level.skip, pool: pool), lp = PaddedPlanes.from(level.low, pool: pool)
                let expected = PaddedPlanes(n: n, channels: o, height: 2 * h, width: 2 * w)
                Conv3x3.forward(level.firstPass(sp, lp, pool: pool), level.second, into: expected, relu: true, pool: pool)
                let out = PaddedPlanes(n: n, channels: o, height: 2 * h, width: 2 * w)
                let count = n * o * out.planeStride
                for k in 0..<count { out.data[k] = .nan }  // every value, borders too, must be written
                OutputLevel.forward(skip: sp, level.direct, low: lp, level.phase, second: level.second, into: out, pool: pool)
                XCTAssertEqual(UnsafeBufferPointer(start: out.data, count: count).map(\.bitPattern),
                               UnsafeBufferPointer(start: expected.data, count: count).map(\.bitPattern),
                               "\(n) \(cs)+\(cu)->\(f)->\(o) \(2 * h)x\(2 * w), \(pool.threadCount) threads")
            }
        }
    }

    /// A band whose thread did the band above it takes the rows the two share (the first
    /// convolution's two, a recomputed skip's four) from its scratch instead of computing them
    /// again: the same bits as computing every band's edge rows, for probabilities, a window of
    /// rows, a recomputed skip and a level into padded planes, one image and two, 1 to 3 threads;
    /// on one thread every band but each image's first carries its rows, and with `carryingRows`
    /// off none does.
    func testOutputLevelBandsCarryTheirEdgeRowsWithTheSameBits() {
        var rng = SplitMix64(seed: 16)
        // (n, encoder inputs, skip channels, map channels, features, outputs, low-resolution h, w)
        for (n, cin, cs, cu, f, o, h, w) in [(1, 1, 4, 8, 4, 4, 160, 20), (2, 2, 3, 5, 3, 6, 45, 9), (2, 2, 3, 5, 3, 3, 45, 9),
                                             (1, 1, 4, 8, 4, 4, 7, 5)] {
            let level = RandomDecoderLevel(n: n, cs: cs, cu: cu, f: f, o: o, h: h, w: w, rng: &rng)
            let head = Tensor.randomNormal(Shape(1, 1, 1, 2 * o + 2), rng: &rng).array
            let (x, encoder) = randomEncoder(n: n, cin: cin, cs: cs, h: 2 * h, w: 2 * w, rng: &rng)
            for pool in [ThreadPool(threads: 1), ThreadPool(threads: 2), ThreadPool(threads: 3)] {
                let input = PaddedPlanes.from(x, pool: pool), lp = PaddedPlanes.from(level.low, pool: pool)
                let sp = PaddedPlanes.from(level.skip, pool: pool)
                let bands = OutputLevel.bandCuts(produced: 2 * h, threads: pool.threadCount).count - 1
                let label = "\(n) \(cin)->\(cs)+\(cu)->\(f)->\(o) \(2 * h)x\(2 * w), \(pool.threadCount) threads, \(bands) bands"
                for skip in [OutputLevel.Skip.planes(sp), .recomputed(input: input, encoder)] where o == f {
                    var outs: [[UInt32]] = [], carried: [Int] = []
                    for carrying in [false, true] {
                        let out = Tensor(Shape(n, 2, 2 * h, 2 * w), repeating: .nan)
                        carried.append(OutputLevel.forward(skip: skip, level.direct, low: lp, level.phase, last: level.second, head: head,
                                                           into: .tensor(out), carryingRows: carrying, pool: pool))
                        outs.append(out.array.map(\.bitPattern))
                    }
                    XCTAssertEqual(outs[1], outs[0], "\(label), \(skip)")
                    XCTAssertEqual(carried[0], 0, label)
                    if pool.threadCount == 1 { XCTAssertEqual(carried[1], n * (bands - 1), label) }
                    XCTAssertLessThanOrEqual(carried[1], n * (bands - 1), label)
                    guard n == 1 else { continue }
                    let rows = 3..<(2 * h - 2), columns = 1..<(2 * w)
                    var windows: [[UInt32]] = []
                    for carrying in [false, true] {
                        var window = [Float](repeating: .nan, count: rows.count * columns.count)
                        window.withUnsafeMutableBufferPointer { b in
                            _ = OutputLevel.forward(skip: skip, level.direct, low: lp, level.phase, last: level.second, head: head,
                                                    into: .particleWindow(base: b.baseAddress!, rowStride: columns.count, rows: rows,
                                                                          columns: columns, mask: nil),
                                                    carryingRows: carrying, pool: pool)
                        }
                        windows.append(window.map(\.bitPattern))
                    }
                    XCTAssertEqual(windows[1], windows[0], "\(label), \(skip), rows \(rows)")
                }
                var planes: [[UInt32]] = []
                for carrying in [false, true] {
                    let out = PaddedPlanes(n: n, channels: o, height: 2 * h, width: 2 * w)
                    let count = n * o * out.planeStride
                    for k in 0..<count { out.data[k] = .nan }
                    let c = OutputLevel.forward(skip: .planes(sp), level.direct, low: lp, level.phase, last: level.second, head: [],
                                                into: .planes(out), carryingRows: carrying, pool: pool)
                    if pool.threadCount == 1 { XCTAssertEqual(c, carrying ? n * (bands - 1) : 0, label) }
                    planes.append(UnsafeBufferPointer(start: out.data, count: count).map(\.bitPattern))
                }
                XCTAssertEqual(planes[1], planes[0], "\(label), into planes")
            }
        }
    }

    func testUpsampledConvolutionGradientsMatchTheReferenceThroughTheUpsampling() {
        var rng = SplitMix64(seed: 6)
        // (n, skip channels, upsampled channels, cout, low-resolution h, w)
        for (n, cs, cu, cout, h, w) in [(1, 4, 8, 4, 8, 40), (2, 3, 5, 6, 3, 7), (1, 16, 32, 16, 4, 16), (1, 2, 3, 5, 1, 1),
                                        (2, 8, 16, 8, 5, 33), (1, 0, 4, 3, 6, 20), (1, 2, 3, 4, 3, 30),
                                        (1, 1, 3, 2, 300, 5)] {  // bands of 10 rows: more than one pass of 8 in the weight gradient
            let cin = cs + cu
            let skip = Tensor.randomNormal(Shape(n, cs, 2 * h, 2 * w), rng: &rng)
            let low = Tensor.randomNormal(Shape(n, cu, h, w), rng: &rng)
            let wt = Tensor.randomNormal(Shape(cout, cin, 3, 3), rng: &rng)
            let dY = Tensor.randomNormal(Shape(n, cout, 2 * h, 2 * w), rng: &rng)
            let upsampled = PoolingKernels.upsample2x(low)
            let input = cs > 0 ? ChannelKernels.concat([skip, upsampled]) : upsampled
            // Reference: through the upsampled concatenation, then the upsampling's own gradient.
            let refDx = Conv3x3Reference.backwardData(dY, weights: wt.array, cin: cin)
            let refDL = PoolingReference.upsample2xBackward(dy: ChannelKernels.channels(of: refDx, offset: cs, count: cu))
            let refDW = Conv3x3Reference.backwardWeights(x: input, dY: dY).dW
            for pool in [ThreadPool(threads: 1), ThreadPool(threads: 2)] {
                let boxSums = UpsampledConv3x3.boxSums(PaddedPlanes.from(dY, pool: pool), pool: pool)
                let dL = Tensor(Shape(n, cu, h, w))
                UpsampledConv3x3.backwardData(boxSums: boxSums, .init(oihw: wt.data, cout: cout, allInputs: cin, inputChannels: cs..<cin),
                                              into: dL, pool: pool)
                let scale = max(1, refDL.array.map(abs).max()!)
                XCTAssertLessThan(maxAbsDiff(dL.array, refDL.array), 1e-5 * scale, "data \(n) \(cs)+\(cu)->\(cout) \(h)x\(w)")
                var dW = [Float](repeating: 0, count: cout * cu * 9)
                UpsampledConv3x3.backwardWeights(low: PaddedPlanes.from(low, pool: pool), boxSums: boxSums, dW: &dW, pool: pool)
                var expected: [Float] = []
                for o in 0..<cout { expected += refDW[((o * cin + cs) * 9)..<((o * cin + cin) * 9)] }
                let wScale = max(1, expected.map(abs).max()!)
                XCTAssertLessThan(maxAbsDiff(dW, expected), 1e-5 * wScale, "weights \(n) \(cs)+\(cu)->\(cout) \(h)x\(w)")
            }
        }
    }

    func testBatchStatisticsStayExactFarFromZero() {
        // Raw intensities: a mean 1000× the spread. One-pass Σx² − (Σx)² would lose the variance.
        var rng = SplitMix64(seed: 23)
        let (n, cin, cout, h, w) = (2, 1, 4, 16, 70)
        let x = Tensor.randomNormal(Shape(n, cin, h, w), rng: &rng)
        for k in 0..<x.count { x.data[k] = 1000 + x.data[k] }
        let wt = Tensor.randomNormal(Shape(cout, cin, 3, 3), std: 0.3, rng: &rng)
        let packed = Conv3x3.PackedWeights(oihw: wt.data, bias: nil, cout: cout, cin: cin)
        let out = Tensor(Shape(n, cout, h, w))
        let (mean, variance) = Conv3x3.forwardWithStatistics(PaddedPlanes.from(x), packed, into: out)
        for c in 0..<cout {
            var values: [Double] = []
            for i in 0..<n { for k in 0..<(h * w) { values.append(Double(out.plane(i, c)[k])) } }
            let mu = values.reduce(0, +) / Double(values.count)
            let v = values.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / Double(values.count)
            XCTAssertEqual(Double(mean[c]), mu, accuracy: 1e-6 * abs(mu))
            XCTAssertEqual(Double(variance[c]), v, accuracy: 1e-4 * v, "channel \(c): mean \(mu), variance \(v)")
        }
    }

    func testBackwardDataMatchesReference() {
        var rng = SplitMix64(seed: 2)
        for (n, cin, cout, h, w) in shapes {
            let dy = Tensor.randomNormal(Shape(n, cout, h, w), rng: &rng)
            let wt = Tensor.randomNormal(Shape(cout, cin, 3, 3), rng: &rng)
            let dx = Tensor(Shape(n, cin, h, w))
            Conv3x3.backwardData(PaddedPlanes.from(dy), weights: .transposedFlipped(oihw: wt.data, cout: cout, cin: cin), into: dx)
            let ref = Conv3x3Reference.backwardData(dy, weights: wt.array, cin: cin)
            XCTAssertLessThan(maxAbsDiff(dx.array, ref.array), 1e-4, "backward data \(n) \(cin)->\(cout) \(h)x\(w)")
        }
    }

    func testBackwardDataOfAChannelRangeMatchesThoseChannelsOfTheReference() {
        var rng = SplitMix64(seed: 21)
        for (n, cin, cout, h, w) in [(2, 12, 4, 9, 21), (1, 7, 5, 16, 33), (2, 24, 8, 8, 8)] {
            let dy = Tensor.randomNormal(Shape(n, cout, h, w), rng: &rng)
            let wt = Tensor.randomNormal(Shape(cout, cin, 3, 3), rng: &rng)
            let ref = Conv3x3Reference.backwardData(dy, weights: wt.array, cin: cin)
            for range in [0..<(cin / 3), (cin / 3)..<cin, 1..<2] {
                let dx = Tensor(Shape(n, range.count, h, w))
                Conv3x3.backwardData(PaddedPlanes.from(dy), weights: .transposedFlipped(oihw: wt.data, cout: cout, cin: cin,
                                                                                        inputChannels: range), into: dx)
                let expected = ChannelKernels.channels(of: ref, offset: range.lowerBound, count: range.count)
                XCTAssertLessThan(maxAbsDiff(dx.array, expected.array), 1e-4, "channels \(range) of \(cin)->\(cout) \(h)x\(w)")
            }
        }
    }

    func testBackwardDataThroughAReLUMatchesMaskedReference() {
        var rng = SplitMix64(seed: 22)
        for (n, cin, cout, h, w) in shapes {
            let dy = Tensor.randomNormal(Shape(n, cout, h, w), rng: &rng)
            let wt = Tensor.randomNormal(Shape(cout, cin, 3, 3), rng: &rng)
            let reluInput = Tensor.randomNormal(Shape(n, cin, h, w), rng: &rng)
            for k in stride(from: 0, to: reluInput.count, by: 5) { reluInput.data[k] = 0 }  // exact zeros pass nothing
            let dx = Tensor(Shape(n, cin, h, w))
            Conv3x3.backwardData(PaddedPlanes.from(dy), weights: .transposedFlipped(oihw: wt.data, cout: cout, cin: cin),
                                 into: dx, reluInput: reluInput)
            let ref = Conv3x3Reference.backwardData(dy, weights: wt.array, cin: cin)
            let masked = zip(ref.array, reluInput.array).map { $1 > 0 ? $0 : 0 }
            XCTAssertLessThan(maxAbsDiff(dx.array, masked), 1e-4, "gated backward data \(n) \(cin)->\(cout) \(h)x\(w)")
        }
    }

    func testBackwardWeightsMatchesReference() {
        var rng = SplitMix64(seed: 3)
        for pool in [ThreadPool(threads: 1), ThreadPool(threads: 2)] {
            for (n, cin, cout, h, w) in shapes {
                let x = Tensor.randomNormal(Shape(n, cin, h, w), rng: &rng)
                let dy = Tensor.randomNormal(Shape(n, cout, h, w), rng: &rng)
                var dW = [Float](repeating: 0, count: cout * cin * 9), dB = [Float](repeating: 0, count: cout)
                Conv3x3.backwardWeights(x: PaddedPlanes.from(x, pool: pool), dY: PaddedPlanes.from(dy, pool: pool),
                                        dW: &dW, dB: &dB, pool: pool)
                let ref = Conv3x3Reference.backwardWeights(x: x, dY: dy)
                let scale = Float(n * h * w).squareRoot()
                XCTAssertLessThan(maxAbsDiff(dW, ref.dW), 2e-5 * scale * 10, "dW \(n) \(cin)->\(cout) \(h)x\(w)")
                XCTAssertLessThan(maxAbsDiff(dB, ref.dB), 2e-5 * scale * 10, "dB \(n) \(cin)->\(cout) \(h)x\(w)")
            }
        }
    }

    func testConv1x1MatchesReference() {
        var rng = SplitMix64(seed: 4)
        for (n, cin, cout, h, w) in [(1, 4, 2, 16, 16), (2, 3, 5, 9, 71), (1, 1, 1, 1, 1), (2, 4, 2, 70, 80)] {
            let x = Tensor.randomNormal(Shape(n, cin, h, w), rng: &rng)
            let wt = Tensor.randomNormal(Shape(cout, cin, 1, 1), rng: &rng)
            let b = Tensor.randomNormal(Shape(1, 1, 1, cout), rng: &rng)
            let y = ChannelKernels.conv1x1(x, weights: wt.data, bias: b.data, cout: cout)
            let ref = Conv3x3Reference.conv1x1(x, weights: wt.array, bias: b.array, cout: cout)
            XCTAssertLessThan(maxAbsDiff(y.array, ref.array), 1e-5)
            // Backward against plain sums: dx = Σ_o w[o, c] dy[o], dW[o, c] = Σ dy[o] x[c], dB[o] = Σ dy[o].
            let dy = Tensor.randomNormal(y.shape, rng: &rng)
            var dW = [Float](repeating: 0, count: cout * cin), dB = [Float](repeating: 0, count: cout)
            let dx = ChannelKernels.conv1x1Backward(x: x, dy: dy, weights: wt.data, dW: &dW, dB: &dB)
            for c in 0..<cin {
                for o in 0..<cout {
                    var sw = 0.0
                    for i in 0..<n { for k in 0..<(h * w) { sw += Double(dy.plane(i, o)[k]) * Double(x.plane(i, c)[k]) } }
                    XCTAssertEqual(Double(dW[o * cin + c]), sw, accuracy: 1e-4 * max(1, abs(sw)))
                }
                for i in 0..<n { for k in 0..<(h * w) {
                    var a: Float = 0
                    for o in 0..<cout { a += wt.data[o * cin + c] * dy.plane(i, o)[k] }
                    XCTAssertEqual(dx.plane(i, c)[k], a, accuracy: 1e-5 * max(1, abs(a)))
                } }
            }
            for o in 0..<cout {
                var sb = 0.0
                for i in 0..<n { for k in 0..<(h * w) { sb += Double(dy.plane(i, o)[k]) } }
                XCTAssertEqual(Double(dB[o]), sb, accuracy: 1e-4 * max(1, abs(sb)))
            }
        }
    }

    func testPaddedPlanesFusedConcatReluUpsample() {
        var rng = SplitMix64(seed: 5)
        let a = Tensor.randomNormal(Shape(2, 3, 6, 10), rng: &rng)
        let b = Tensor.randomNormal(Shape(2, 2, 3, 5), rng: &rng)
        let p = PaddedPlanes(n: 2, channels: 5, height: 6, width: 10)
        p.fill(from: [.init(a, .relu), .init(b, .upsample2x)])
        let up = PoolingKernels.upsample2x(b)
        for i in 0..<2 { for c in 0..<5 { for y in -1...6 { for x in -1...10 {
            let v = p.origin(i, c)[y * p.rowStride + x]
            let inside = y >= 0 && y < 6 && x >= 0 && x < 10
            let expect: Float = !inside ? 0 : (c < 3 ? max(a[i, c, y, x], 0) : up[i, c - 3, y, x])
            XCTAssertEqual(v, expect, "padded (\(i),\(c),\(y),\(x))")
        } } } }
    }

    /// Few planes (a one-channel input) are filled in bands of rows: every row, border and
    /// upsampled odd row comes out as with one band, for odd heights and more threads than rows.
    func testPaddedPlanesFillInBandsOfRows() {
        var rng = SplitMix64(seed: 6)
        for pool in [ThreadPool(threads: 1), ThreadPool(threads: 2), ThreadPool(threads: 3)] {
            for (n, h, w) in [(1, 37, 20), (1, 1, 7), (1, 2, 3), (2, 64, 33), (1, 9, 16)] {
                let a = Tensor.randomNormal(Shape(n, 1, h, w), rng: &rng)
                let p = PaddedPlanes(n: n, channels: 1, height: h, width: w)
                p.data.update(repeating: .nan, count: n * p.planeStride)
                p.fill(from: [.init(a)], pool: pool)
                for i in 0..<n { for y in -1...h { for x in -1...w {
                    let inside = y >= 0 && y < h && x >= 0 && x < w
                    XCTAssertEqual(p.origin(i, 0)[y * p.rowStride + x], inside ? a[i, 0, y, x] : 0, "\(n)x\(h)x\(w) at \(y),\(x)")
                } } }
                guard h % 2 == 0 else { continue }
                let low = Tensor.randomNormal(Shape(n, 1, h / 2, w / 2), rng: &rng)
                let q = PaddedPlanes(n: n, channels: 1, height: h, width: w / 2 * 2)
                q.data.update(repeating: .nan, count: n * q.planeStride)
                q.fill(from: [.init(low, .upsample2x)], pool: pool)
                XCTAssertEqual(q.interior().array, PoolingKernels.upsample2x(low).array, "upsampled \(n)x\(h)x\(w)")
            }
        }
    }
}

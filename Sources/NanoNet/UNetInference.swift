import Foundation
import NanoTensor

/// The fast inference path of a `UNet`: batch norms folded into the convolutions, ReLUs fused into
/// the kernels, each encoder convolution writing its skip connection's ReLU (in the padded layout
/// the decoder reads) beside its pre-ReLU output (but the first, whose skip the last level
/// recomputes where `UNetPlan.firstSkipRecomputed`), and the upsampling and the concatenation fused
/// into the decoder's convolution. Build it once per set of weights; it reads them at init.
public final class UNetInference: @unchecked Sendable {
    public let config: UNetConfig
    public let plan: UNetPlan
    /// Packed weights (BN folded) of every 3×3 convolution, by plan index; for a decoder's first
    /// convolution the direct (skip) part.
    private var packed: [Conv3x3.PackedWeights?]
    /// The decoder's first convolutions over their upsampled part, by plan index.
    private var phase: [UpsampledConv3x3.PhaseWeights?]
    private let headWeight: Tensor
    private let headBias: Tensor
    /// The head's weights then its biases, as the fused kernels take them (joined once, not per pass).
    private let headJoined: [Float]
    private let model: UNet
    /// When set, called after each stage of a pass with its name and wall-clock seconds: the
    /// input's layout, each encoder convolution, each centre convolution, each decoder level
    /// (`up2_conv1+up2_conv2` where its two convolutions run as one pass per band) and the last
    /// level with the head. `bench` sets it (the `infer_tile_stage` rows); nothing else does.
    public var stageObserver: ((String, Double) -> Void)?

    /// Whether a decoder level above the last runs as one pass per band of rows
    /// (`OutputLevel.forward(skip:_:low:_:second:into:)`) or as its two convolutions' passes.
    /// The values are the same bit for bit either way: `.automatic`, the default, takes the
    /// faster (`OutputLevel.fuses`: 16-lane builds, bands of at least 16 rows), and the tests
    /// force each at every vector width.
    public enum LevelFusion: Sendable { case automatic, always, never }
    public var levelFusion: LevelFusion = .automatic

    /// Whether the first level's skip is recomputed where the last level reads it, where the
    /// plan allows (`UNetPlan.firstSkipRecomputed`), rather than laid out by the encoder. The
    /// values are the same bit for bit either way; the tests run both.
    public var recomputesFirstSkip = true
    /// Passes so far that recomputed the first skip (the tests check that the path ran). Counted
    /// under a lock: a batch's jobs run passes of one engine side by side.
    package var firstSkipRecomputations: Int { countLock.lock(); defer { countLock.unlock() }; return recomputations }
    private var recomputations = 0
    private let countLock = NSLock()

    public init(_ model: UNet) {
        self.model = model
        config = model.config
        plan = model.plan
        packed = Array(repeating: nil, count: plan.convolutions.count)
        phase = packed.map { _ in nil }
        for c in plan.convolutions where c.stage != .head {
            let cv = model.layer(c)
            let (scale, shift) = model.norm(c).inferenceAffine()
            let cin = c.cin, cout = c.cout
            let w = cv.weight.value.copy()
            let b = Tensor(Shape(1, 1, 1, cout))
            for o in 0..<cout {
                for k in 0..<(cin * 9) { w.data[o * cin * 9 + k] *= scale[o] }
                b.data[o] = cv.bias.value.data[o] * scale[o] + shift[o]
            }
            if c.upsampledInputs > 0 {
                // Skip channels first, then the upsampled map: a direct convolution of the skip
                // part and a phase-decomposed one of the map before upsampling.
                let cs = c.directInputs
                packed[c.index] = Conv3x3.PackedWeights(oihw: w.data, bias: b.data, cout: cout, allInputs: cin, inputChannels: 0..<cs)
                phase[c.index] = UpsampledConv3x3.PhaseWeights(oihw: w.data, cout: cout, allInputs: cin, inputChannels: cs..<cin)
            } else {
                packed[c.index] = Conv3x3.PackedWeights(oihw: w.data, bias: b.data, cout: cout, cin: cin)
            }
        }
        let head = model.layer(plan.head)
        headWeight = head.weight.value.copy()
        headBias = head.bias.value.copy()
        headJoined = headWeight.array + headBias.array
    }

    /// `body`, reported to `stageObserver` as stage `name` when one is set.
    @inline(__always) private func stage<T>(_ name: @autoclosure () -> String, _ body: () -> T) -> T {
        guard let observer = stageObserver else { return body() }
        let start = DispatchTime.now().uptimeNanoseconds
        let result = body()
        observer(name(), Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        return result
    }

    private func weights(_ c: UNetPlan.Convolution) -> Conv3x3.PackedWeights {
        guard let w = packed[c.index] else { fatalError("UNetInference: \(c.name) has no packed weights") }
        return w
    }

    private func conv(_ c: UNetPlan.Convolution, _ input: PaddedPlanes, relu: Bool, pool: ThreadPool) -> Tensor {
        let w = weights(c)
        let y = Tensor(Shape(input.n, w.cout, input.height, input.width), zeroed: false)
        Conv3x3.forward(input, w, into: y, relu: relu, pool: pool)
        return y
    }

    /// A convolution whose output is the next convolution's (padded) input.
    private func convPadded(_ c: UNetPlan.Convolution, _ input: PaddedPlanes, pool: ThreadPool) -> PaddedPlanes {
        let w = weights(c)
        let y = PaddedPlanes(n: input.n, channels: w.cout, height: input.height, width: input.width)
        Conv3x3.forward(input, w, into: y, relu: c.hasReLU, pool: pool)
        return y
    }

    /// A decoder level's first convolution (BN folded, ReLU) of [ReLU(skip), upsample2x(low)]:
    /// the skip part directly, the upsampled part on `low` itself, so the upsampled map and the
    /// concatenation are never laid out.
    private func decoderConv1(_ c: UNetPlan.Convolution, skip: PaddedPlanes, low: PaddedPlanes, pool: ThreadPool) -> PaddedPlanes {
        let w = weights(c)
        guard let pw = phase[c.index] else { fatalError("UNetInference: \(c.name) has no upsampled part") }
        let t = PaddedPlanes(n: skip.n, channels: w.cout, height: skip.height, width: skip.width)
        UpsampledConv3x3.forward(skip: skip, w, low: low, pw, into: t, relu: true, pool: pool)
        return t
    }

    /// Softmax probabilities (n, classes, h, w) for images (n, channels, h, w). A batch runs one
    /// image at a time: one 512² image's activations fit the L3 cache, a batch's do not. Where
    /// the last level and the head run as one pass (the pyNanoFind network), each image goes
    /// from the batch straight into the network's input planes and its probabilities straight
    /// into the batch's, with no copy of either in between (each image's copy in and out, on
    /// the calling thread while the others waited: batches of 8 512² tiles took 1.05 times as
    /// long with AVX-512 and 1.06-1.07 times with AVX2, AMD EPYC fam 25 mod 17, 2 threads, one
    /// process alternating, 3 runs of 40 pairs each).
    public func probabilities(_ x: Tensor, pool: ThreadPool = .shared) -> Tensor {
        let s = x.shape
        let fusedHead = config.classes == 2 && config.widths[0] <= 4
        if s.n == 1 {
            return forward(x, fusedHead: fusedHead, pool: pool)
        }
        let out = Tensor(Shape(s.n, config.classes, s.h, s.w), zeroed: false)
        if fusedHead && lastLevelFuses {
            if let problem = model.validateInput(s) { fatalError("UNetInference.probabilities: input \(s): \(problem)") }
            for i in 0..<s.n {
                let input = PaddedPlanes(n: 1, channels: s.c, height: s.h, width: s.w)
                for c in 0..<s.c {
                    let plane = UnsafePointer(x.plane(i, c))
                    input.fill(plane: c, pool: pool) { y, row in row.update(from: plane + y * s.w, count: s.w) }
                }
                let (skip, low) = levels(input, recomputingFirstSkip: true, pool: pool)
                fusedLastLevel(skip: skip, low: low, into: .batchImage(out, index: i), pool: pool)
            }
            return out
        }
        let one = Tensor(Shape(1, s.c, s.h, s.w), zeroed: false)
        for i in 0..<s.n {
            one.data.update(from: x.plane(i, 0), count: s.c * s.plane)
            let p = probabilities(one, pool: pool)
            out.plane(i, 0).update(from: p.data, count: config.classes * s.plane)
        }
        return out
    }

    /// Logits (n, classes, h, w).
    public func logits(_ x: Tensor, pool: ThreadPool = .shared) -> Tensor {
        forward(x, fusedHead: false, logitsOnly: true, pool: pool)
    }

    /// The particle probability (softmax class 1) of one image already laid out as padded planes
    /// (one image, the model's input channels), only rows `rows` and columns `columns` of it,
    /// written to `out`: row y, column x at out + (y − rows.lowerBound) · rowStride + x −
    /// columns.lowerBound. What a tiled pass keeps of a tile, with nothing else stored: for the
    /// pyNanoFind head the last level computes only those rows (`OutputLevel`). The values are
    /// channel 1 of `probabilities` bit for bit. With `mask`, also 1 where the probability is
    /// above its threshold and 0 elsewhere, laid out as `out` from the mask's base.
    public func particleProbabilities(_ input: PaddedPlanes, rows: Range<Int>, columns: Range<Int>,
                                      into out: UnsafeMutablePointer<Float>, rowStride: Int,
                                      mask: (base: UnsafeMutablePointer<UInt8>, threshold: Float)? = nil, pool: ThreadPool = .shared) {
        let shape = Shape(input.n, input.channels, input.height, input.width)
        if let problem = model.validateInput(shape) { fatalError("UNetInference.particleProbabilities: input \(shape): \(problem)") }
        require(input.n == 1 && config.classes == 2 && rows.lowerBound >= 0 && rows.upperBound <= input.height
                    && columns.lowerBound >= 0 && columns.upperBound <= input.width && rowStride >= columns.count,
                "particle window rows \(rows), columns \(columns) of \(shape) (\(config.classes) classes)")
        let (skip, low) = levels(input, recomputingFirstSkip: lastLevelFuses, pool: pool)
        if lastLevelFuses {
            fusedLastLevel(skip: skip, low: low, into: .particleWindow(base: out, rowStride: rowStride, rows: rows, columns: columns, mask: mask),
                           pool: pool)
            return
        }
        let p = lastLevel(skip: skip, low: low, shape: shape, fusedHead: config.widths[0] <= 4, logitsOnly: false, pool: pool)
        for y in rows {
            let row = out + (y - rows.lowerBound) * rowStride
            row.update(from: p.plane(0, 1) + y * input.width + columns.lowerBound, count: columns.count)
            if let mask { OutputLevel.thresholdRow(row, columns.count, mask.threshold, into: mask.base + (y - rows.lowerBound) * rowStride) }
        }
    }

    /// The whole pass. With `fusedHead` the last convolution, the 1×1 head and the softmax run as
    /// one kernel; otherwise the head writes logits and, unless `logitsOnly`, a softmax follows.
    private func forward(_ x: Tensor, fusedHead: Bool, logitsOnly: Bool = false, pool: ThreadPool) -> Tensor {
        if let problem = model.validateInput(x.shape) { fatalError("UNetInference.forward: input \(x.shape): \(problem)") }
        let (skip, low) = levels(stage("input") { PaddedPlanes.from(x, pool: pool) }, recomputingFirstSkip: fusedHead && lastLevelFuses,
                                 pool: pool)
        let (first, last) = plan.decoders[0]
        return stage("\(first.name)+\(last.name)+\(plan.head.name)") {
            lastLevel(skip: skip, low: low, shape: x.shape, fusedHead: fusedHead, logitsOnly: logitsOnly, pool: pool)
        }
    }

    /// Every level but the last: the encoders, the centre and the decoders down to level 1.
    /// Returns the last level's inputs: its skip connection and the map below it. With
    /// `recomputingFirstSkip` (where the plan's `firstSkipRecomputed` and the last level then runs
    /// in bands), the first encoder writes its pooled output only, and the skip is its input
    /// and weights, for `OutputLevel` to recompute.
    ///
    /// Where a pass loses against its kernels (AMD EPYC fam 25 mod 17, a 2-vCPU VM, AVX-512, one
    /// thread, `bench --threads 1`): a convolution of a 512² tile's pass, timed in place (the
    /// levels in two passes), takes about what it takes alone after the caches are flushed, not
    /// what it takes run after run on the same maps: the 256² level's first convolution 1.78-1.79
    /// ms in place, alone 1.30-1.51 hot and 1.59-1.89 flushed; its second 0.84-0.86, 0.66-0.79 and
    /// 0.88-0.95. The VM's share of the 32 MB L3 is small: a pointer chase over 2 MB took 14-22 ns
    /// a load, over 4 MB 17-63 ns, from 8 MB 125-209 ns (memory), so a tile's 12 MB of maps come
    /// back from memory. Flushed, then the inputs read once, the convolutions took 0.98-1.13 of
    /// the hot time; with one line per page of them read instead (the TLB warm, the data not)
    /// 1.06-1.22; flushed 1.04-1.29: the cost is the inputs' data. Tried and not kept: every
    /// other pass taking its bands in reverse order, so that a thread first reads what it wrote
    /// last (tiles, 2 threads, alternating: medians of 190 pairs' ratios 0.999-1.010, 3 runs).
    private func levels(_ x: PaddedPlanes, recomputingFirstSkip: Bool, pool: ThreadPool) -> (skip: OutputLevel.Skip, low: PaddedPlanes) {
        // A skip is let go as soon as its decoder convolution has read it: the buffer pool then
        // hands its (cached) memory to the next map of its size, that level's second convolution
        // (where the level runs as two passes), instead of one last touched a pass ago.
        var skips: [PaddedPlanes?] = []
        var input = x
        let recompute = recomputingFirstSkip && recomputesFirstSkip && plan.firstSkipRecomputed
        for (k, c) in plan.encoders.enumerated() {
            // BN folded; the main path pools the pre-ReLU output, the skip is its ReLU (one pass).
            let w = weights(c)
            let skip = k == 0 && recompute ? nil : PaddedPlanes(n: input.n, channels: w.cout, height: input.height, width: input.width)
            let pooled = PaddedPlanes(n: input.n, channels: w.cout, height: input.height / 2, width: input.width / 2)
            stage(c.name) { Conv3x3.forward(input, w, reluCopy: skip, pooledInto: pooled, pool: pool) }
            skips.append(skip)
            input = pooled
        }
        var low = input
        for c in plan.centre { low = stage(c.name) { convPadded(c, low, pool: pool) } }
        for level in stride(from: config.depth - 1, through: 1, by: -1) {
            let (first, second) = plan.decoders[level]
            let height = skips[level]!.height
            let fuse: Bool
            switch levelFusion {
            case .automatic: fuse = OutputLevel.fuses(height: height, threads: pool.threadCount)
            case .always: fuse = true
            case .never: fuse = false
            }
            if let pw = phase[first.index], second.hasReLU, fuse {
                // Both convolutions in one pass per band: the first one's output never is a map.
                let out = PaddedPlanes(n: low.n, channels: second.cout, height: height, width: 2 * low.width)
                stage("\(first.name)+\(second.name)") {
                    OutputLevel.forward(skip: skips[level]!, weights(first), low: low, pw, second: weights(second), into: out, pool: pool)
                }
                skips[level] = nil
                low = out
            } else {
                let t = stage(first.name) { decoderConv1(first, skip: skips[level]!, low: low, pool: pool) }
                skips[level] = nil
                low = stage(second.name) { convPadded(second, t, pool: pool) }
            }
        }
        if recompute { countLock.lock(); recomputations += 1; countLock.unlock() }
        return (skips[0].map { .planes($0) } ?? .recomputed(input: x, weights(plan.encoders[0])), low)
    }

    /// Whether the last level and the head can run as one pass (`fusedLastLevel`): a first width
    /// of at most 4 and a decoder convolution with an upsampled part.
    private var lastLevelFuses: Bool { plan.lastLevelRunsInBands && phase[plan.decoders[0].first.index] != nil }

    /// The last level in one pass (where `lastLevelFuses`): its first convolution's rows go
    /// straight to the last convolution and the head (`OutputLevel`), never to a full-resolution map.
    private func fusedLastLevel(skip: OutputLevel.Skip, low: PaddedPlanes, into destination: OutputLevel.Destination, pool: ThreadPool) {
        let (first, last) = plan.decoders[0]
        guard let pw = phase[first.index] else { fatalError("UNetInference: \(first.name) has no upsampled part to fuse") }
        OutputLevel.forward(skip: skip, weights(first), low: low, pw, last: weights(last), head: headJoined,
                            into: destination, pool: pool)
    }

    /// The last level and the head, on the level's skip connection and the map below it, for
    /// images of `shape`.
    private func lastLevel(skip: OutputLevel.Skip, low: PaddedPlanes, shape: Shape, fusedHead: Bool, logitsOnly: Bool,
                           pool: ThreadPool) -> Tensor {
        let (first, last) = plan.decoders[0]
        if fusedHead && lastLevelFuses {
            let probs = Tensor(Shape(shape.n, 2, shape.h, shape.w), zeroed: false)
            fusedLastLevel(skip: skip, low: low, into: .tensor(probs), pool: pool)
            return probs
        }
        guard case .planes(let skipPlanes) = skip else { fatalError("UNetInference: \(first.name) needs its skip laid out") }
        let t = decoderConv1(first, skip: skipPlanes, low: low, pool: pool)
        if fusedHead {
            let probs = Tensor(Shape(shape.n, 2, shape.h, shape.w), zeroed: false)
            Conv3x3.forwardWithSoftmaxHead(t, weights(last), head: headJoined, into: probs, pool: pool)
            return probs
        }
        let h = conv(last, t, relu: true, pool: pool)
        let z = ChannelKernels.conv1x1(h, weights: headWeight.data, bias: headBias.data, cout: config.classes, pool: pool)
        if !logitsOnly { ChannelKernels.softmax(z, into: z, pool: pool) }
        return z
    }
}

import CNanoSupport
/// 3×3 "same" convolution (cross-correlation, zero padding 1, stride 1) with bias: the fast
/// register-blocked direct kernels. `Conv3x3Reference.swift` holds the plain twins the tests
/// compare them with.
///
/// Forward: each work item computes 4 output channels × a band of rows; along a row it keeps
/// 4 channels × `RegisterBlocking.rowVectors` vectors of accumulators in registers (16 with
/// AVX-512 or NEON, 12 with AVX2), loops over input channels inside and unrolls the 9 taps,
/// reading the input from `PaddedPlanes` so there are no border tests.
/// Weights are OIHW: w[((o * cin + c) * 3 + ky) * 3 + kx].
public enum Conv3x3 {
    /// Output channels per register block.
    static let block = 4

    /// Weights repacked per block of 4 output channels as [cin][9][4] (zero for missing channels).
    ///
    /// The type owns its packing: `convolveRow` is the one place that knows where a block's
    /// weights lie, and every kernel that runs these weights (the forward, the input gradient,
    /// the decoder's direct part, the fused backward) goes through it.
    public struct PackedWeights: @unchecked Sendable {
        public let cin: Int, cout: Int
        let blocks: Int
        let packed: Tensor
        let bias: Tensor
        /// `packed` and `bias` as plain pointers, valid as long as this value (which holds the
        /// tensors): reading a class reference per row costs a retain and a release on a count
        /// all threads share.
        private let packedBase: UnsafePointer<Float>, biasBase: UnsafePointer<Float>

        public init(oihw w: UnsafePointer<Float>, bias b: UnsafePointer<Float>?, cout: Int, cin: Int) {
            self.init(oihw: w, bias: b, cout: cout, allInputs: cin, inputChannels: 0..<cin)
        }

        /// Weights (cout, allInputs, 3, 3) restricted to the input channels `inputChannels` (one
        /// part of a concatenated input; the bias goes with it).
        public init(oihw w: UnsafePointer<Float>, bias b: UnsafePointer<Float>?, cout: Int, allInputs: Int, inputChannels: Range<Int>) {
            require(inputChannels.lowerBound >= 0 && inputChannels.upperBound <= allInputs,
                         "input channels \(inputChannels) of \(allInputs)")
            let cin = inputChannels.count
            self.cin = cin; self.cout = cout
            blocks = (cout + Conv3x3.block - 1) / Conv3x3.block
            packed = Tensor(Shape(1, 1, 1, blocks * cin * 9 * Conv3x3.block))
            bias = Tensor(Shape(1, 1, 1, blocks * Conv3x3.block))
            for o in 0..<cout {
                let ob = o / Conv3x3.block, j = o % Conv3x3.block
                for (ci, c) in inputChannels.enumerated() {
                    for k in 0..<9 {
                        packed.data[((ob * cin + ci) * 9 + k) * Conv3x3.block + j] = w[(o * allInputs + c) * 9 + k]
                    }
                }
                bias.data[o] = b?[o] ?? 0
            }
            packedBase = UnsafePointer(packed.data); biasBase = UnsafePointer(bias.data)
        }

        /// Output row y of the block `ob` of output channels (4·ob ..< 4·ob + 4) of one image:
        /// reads rows y − 1 … y + 1 of `input` (padded: one row and one vector of columns
        /// readable on each side), writes row y of each of the block's channels of `out`, through
        /// max(·, 0) when `relu`, zero where `gate` (laid out as `out`) is ≤ 0 when given; with
        /// `reluCopy`, max(·, 0) of the row also goes there (a U-Net encoder's skip connection,
        /// written while the row is in registers instead of copied afterwards).
        @inline(__always)
        func convolveRow(_ y: Int, block ob: Int, input: PlaneView, into out: PlaneView, width: Int, relu: Bool = false,
                         gate: UnsafePointer<Float>? = nil, stream: Bool = false, reluCopy: PlaneView? = nil) {
            let o0 = ob * Conv3x3.block
            Conv3x3.convRow(UnsafePointer(input.row(0, y)), input.planeStride, input.rowStride, cin,
                            packedBase + ob * cin * 9 * Conv3x3.block, biasBase + o0, out.row(o0, y), out.planeStride,
                            min(Conv3x3.block, cout - o0), width, relu,
                            gate.map { $0 + o0 * out.planeStride + y * out.rowStride }, stream,
                            reluCopy?.row(o0, y), reluCopy?.planeStride ?? 0)
        }

        /// The same with no ReLU or gate, row y of the block's first channel written at `row` and its
        /// other channels `planeStride` apart: a scratch band that holds a few rows only.
        @inline(__always)
        func convolveRow(_ y: Int, block ob: Int, input: PlaneView, intoRow row: UnsafeMutablePointer<Float>,
                         planeStride: Int, width: Int, reluCopy: PlaneView?) {
            let o0 = ob * Conv3x3.block
            Conv3x3.convRow(UnsafePointer(input.row(0, y)), input.planeStride, input.rowStride, cin,
                            packedBase + ob * cin * 9 * Conv3x3.block, biasBase + o0, row, planeStride,
                            min(Conv3x3.block, cout - o0), width, false, nil, false,
                            reluCopy?.row(o0, y), reluCopy?.planeStride ?? 0)
        }

        /// The whole packed block `ob` (for the fused softmax head, which runs one block by chunks).
        func block(_ ob: Int) -> (weights: UnsafePointer<Float>, bias: UnsafePointer<Float>) {
            (packedBase + ob * cin * 9 * Conv3x3.block, biasBase + ob * Conv3x3.block)
        }

        /// Weights for the input gradient: w'[c][o][ky][kx] = w[o][c][2-ky][2-kx], no bias.
        public static func transposedFlipped(oihw w: UnsafePointer<Float>, cout: Int, cin: Int) -> PackedWeights {
            transposedFlipped(oihw: w, cout: cout, cin: cin, inputChannels: 0..<cin)
        }

        /// The same for a range of the input channels only: the backward pass of one part of a
        /// concatenated input, written to that part's own gradient without a split copy.
        public static func transposedFlipped(oihw w: UnsafePointer<Float>, cout: Int, cin: Int,
                                             inputChannels: Range<Int>) -> PackedWeights {
            transposed(oihw: w, cout: cout, cin: cin, inputChannels: inputChannels, flipped: true)
        }

        /// w'[c][o][ky][kx] = w[o][c][ky][kx] (or rotated by 180° when `flipped`) for the input
        /// channels `inputChannels`, no bias: the input channels become outputs.
        static func transposed(oihw w: UnsafePointer<Float>, cout: Int, cin: Int, inputChannels: Range<Int>,
                               flipped: Bool) -> PackedWeights {
            require(inputChannels.lowerBound >= 0 && inputChannels.upperBound <= cin, "input channels \(inputChannels) of \(cin)")
            let part = inputChannels.count
            let t = Tensor(Shape(1, 1, 1, cout * part * 9))
            for o in 0..<cout {
                for (j, c) in inputChannels.enumerated() {
                    for k in 0..<9 { t.data[(j * cout + o) * 9 + (flipped ? 8 - k : k)] = w[(o * cin + c) * 9 + k] }
                }
            }
            return PackedWeights(oihw: t.data, bias: nil, cout: part, cin: cout)
        }
    }

    /// out[n, o] = bias[o] + sum_c w[o, c] ⋆ input[n, c], optionally followed by ReLU.
    /// `out` must have shape (n, cout, height, width) of the padded input.
    public static func forward(_ input: PaddedPlanes, _ w: PackedWeights, into out: Tensor,
                               relu: Bool = false, pool: ThreadPool = .shared) {
        require(out.shape == Shape(input.n, w.cout, input.height, input.width), "output \(out.shape) for input \(input.n)x\(input.channels)x\(input.height)x\(input.width) and \(w.cout) output channels")
        forward(input, w, out: out.data, imageStride: w.cout * out.shape.plane, planeStride: out.shape.plane,
                rowStride: input.width, relu: relu, pool: pool)
    }

    /// The same without ReLU into `out`, and max(·, 0) of it into the interior of `reluCopy` (its
    /// borders cleared), in one pass: a U-Net encoder's pre-ReLU output, which the main path
    /// pools, and its ReLU, the skip connection laid out as the decoder's convolution reads it.
    public static func forward(_ input: PaddedPlanes, _ w: PackedWeights, into out: Tensor, reluCopy: PaddedPlanes,
                               pool: ThreadPool = .shared) {
        require(out.shape == Shape(input.n, w.cout, input.height, input.width), "output \(out.shape) for input \(input.n)x\(input.channels)x\(input.height)x\(input.width) and \(w.cout) output channels")
        require(reluCopy.n == input.n && reluCopy.channels == w.cout && reluCopy.height == input.height
                    && reluCopy.width == input.width, "ReLU copy planes \(reluCopy.n)x\(reluCopy.channels)x\(reluCopy.height)x\(reluCopy.width) for output \(out.shape)")
        forward(input, w, out: out.data, imageStride: w.cout * out.shape.plane, planeStride: out.shape.plane,
                rowStride: input.width, relu: false, reluCopy: reluCopy, pool: pool)
    }

    /// A U-Net encoder's convolution at inference, in one pass: max(·, 0) of the output into the
    /// interior of `reluCopy` (the skip connection) and the 2×2 max pooling of the pre-ReLU output
    /// into the interior of `pooled` (the next level's input; borders of both cleared). The
    /// pre-ReLU output never exists as a tensor: each work item's rows go to a per-thread scratch
    /// of two rows per output channel, pooled as soon as a pair is complete, so the pass saves
    /// the output's store, a pooling pass and its reload. Same values as `forward(_:_:into:reluCopy:)`
    /// followed by `PaddedPlanes.fillMaxPool2x2(of:)`.
    /// Without `reluCopy`, the pooled output only (a skip that `OutputLevel` recomputes).
    /// Tried and not kept (AMD EPYC fam 25 mod 17, AVX-512, 2 threads, 512² tiles alternating in
    /// one process, 190 pairs): the skip written with non-temporal stores, as it is read back a
    /// pass later: 0.989-1.008 of the time in four runs (the 256² encoder 5-9 % faster, the
    /// decoder level reading its skip 2-8 % slower, with its rows prefetched or not).
    public static func forward(_ input: PaddedPlanes, _ w: PackedWeights, reluCopy: PaddedPlanes?, pooledInto pooled: PaddedPlanes,
                               pool: ThreadPool = .shared) {
        let h = input.height, width = input.width
        if let reluCopy {
            require(reluCopy.n == input.n && reluCopy.channels == w.cout && reluCopy.height == h && reluCopy.width == width,
                    "ReLU copy planes \(reluCopy.n)x\(reluCopy.channels)x\(reluCopy.height)x\(reluCopy.width) for input \(input.n)x\(input.channels)x\(h)x\(width) and \(w.cout) output channels")
        }
        require(pooled.n == input.n && pooled.channels == w.cout && pooled.height == h / 2 && pooled.width == width / 2,
                "pooled planes \(pooled.n)x\(pooled.channels)x\(pooled.height)x\(pooled.width) for input \(input.n)x\(input.channels)x\(h)x\(width) and \(w.cout) output channels")
        require(input.channels == w.cin, "conv input has \(input.channels) channels, weights \(w.cin)")
        // Bands as in `forward`, of an even number of rows so that both rows of a pooling window
        // belong to one work item.
        let band = roundUp(max(2, bandRows(height: h, width: width, inputs: w.cin, blocks: w.blocks, images: input.n, threads: pool.threadCount)), 2)
        let bands = (h + band - 1) / band
        let ws = roundUp(max(width, 1), vectorWidth)
        let scratch = Tensor(Shape(pool.threadCount, 1, 1, 2 * block * ws), zeroed: false)
        pool.parallelFor(input.n * bands * w.blocks) { item, thread in
            let (i, ob, y0, y1) = bandItem(item, blocks: w.blocks, bands: bands, band: band, height: h)
            let o0 = ob * block
            let nValid = min(block, w.cout - o0)
            let inView = input.view(image: i), copyView = reluCopy?.view(image: i)
            // Row y of output channel o0 + oc lives at rows + oc · 2ws + (y mod 2) · ws.
            let rows = scratch.data + thread * 2 * block * ws
            if pooled.height == 0 && y0 == 0 {
                for oc in 0..<nValid { pooled.zeroBorderRows(pooled.data + (i * w.cout + o0 + oc) * pooled.planeStride) }
            }
            for y in y0..<y1 {
                if let reluCopy { for oc in 0..<nValid { reluCopy.zeroBorders(plane: i * w.cout + o0 + oc, row: y) } }
                w.convolveRow(y, block: ob, input: inView, intoRow: rows + (y % 2) * ws, planeStride: 2 * ws, width: width,
                              reluCopy: copyView)
                guard y % 2 == 1, y / 2 < pooled.height else { continue }
                for oc in 0..<nValid {
                    let r = y / 2, pair = rows + oc * 2 * ws
                    pooled.zeroBorders(plane: i * w.cout + o0 + oc, row: r)
                    PoolingKernels.maxPoolRow(pair, pair + ws, into: pooled.origin(i, o0 + oc) + r * pooled.rowStride,
                                              count: pooled.width)
                }
            }
        }
    }

    /// The same, writing straight into the interior of padded planes (the next convolution's
    /// input), so no copy is needed between two convolutions. Clears the planes' borders.
    public static func forward(_ input: PaddedPlanes, _ w: PackedWeights, into out: PaddedPlanes,
                               relu: Bool = false, pool: ThreadPool = .shared) {
        require(out.n == input.n && out.channels == w.cout && out.height == input.height && out.width == input.width,
                     "output planes \(out.n)x\(out.channels)x\(out.height)x\(out.width) for input \(input.n)x\(input.channels)x\(input.height)x\(input.width) and \(w.cout) output channels")
        forward(input, w, out: out.origin(0, 0), imageStride: out.channels * out.planeStride, planeStride: out.planeStride,
                rowStride: out.rowStride, relu: relu, borders: out, pool: pool)
    }

    /// The same into a plain tensor, also returning the per-channel mean and (biased) variance
    /// of the output over (N, H, W): a training-mode batch norm's statistics, gathered row by row
    /// while each output row is still in cache instead of in two more passes over the output.
    /// Each row's moments are kept apart and combined in a fixed order in Double (see
    /// `rowMoments`), so the result does not depend on the thread count, and stays exact to float
    /// precision however far the mean is from zero.
    public static func forwardWithStatistics(_ input: PaddedPlanes, _ w: PackedWeights, into out: Tensor,
                                             pool: ThreadPool = .shared) -> (mean: [Float], variance: [Float]) {
        require(out.shape == Shape(input.n, w.cout, input.height, input.width), "output \(out.shape) for input \(input.n)x\(input.channels)x\(input.height)x\(input.width) and \(w.cout) output channels")
        let s = out.shape
        let moments = rowMomentsBuffer(s)
        forward(input, w, out: out.data, imageStride: w.cout * s.plane, planeStride: s.plane,
                rowStride: s.w, relu: false, rowStatistics: moments.data, pool: pool)
        return batchStatistics(rowMoments: moments, of: s)
    }

    /// Room for `rowMoments` of every row of every (image, channel) plane of an output.
    static func rowMomentsBuffer(_ s: Shape) -> Tensor { Tensor(Shape(1, 1, 1, 3 * s.n * s.c * s.h), zeroed: false) }

    /// Mean and variance per channel from the moments of every row, combined in Double
    /// (Chan et al.'s pairwise update: M2 = Σ M2ᵣ + Σ wᵣ (meanᵣ − mean)²).
    static func batchStatistics(rowMoments: Tensor, of s: Shape) -> (mean: [Float], variance: [Float]) {
        var mean = [Float](repeating: 0, count: s.c), variance = mean
        let m = Double(s.n * s.plane), w = Double(s.w)
        for c in 0..<s.c {
            var total = 0.0
            for i in 0..<s.n {
                let r = rowMoments.data + 3 * (i * s.c + c) * s.h
                for y in 0..<s.h { total += Double(r[3 * y]) * w + Double(r[3 * y + 1]) }
            }
            let mu = total / m
            var m2 = 0.0
            for i in 0..<s.n {
                let r = rowMoments.data + 3 * (i * s.c + c) * s.h
                for y in 0..<s.h {
                    let rowMean = Double(r[3 * y]) + Double(r[3 * y + 1]) / w
                    m2 += Double(r[3 * y + 2]) + w * (rowMean - mu) * (rowMean - mu)
                }
            }
            mean[c] = Float(mu)
            variance[c] = Float(m2 / m)
        }
        return (mean, variance)
    }

    static func forward(_ input: PaddedPlanes, _ w: PackedWeights, out: UnsafeMutablePointer<Float>,
                        imageStride: Int, planeStride: Int, rowStride: Int, relu: Bool,
                        rowStatistics: UnsafeMutablePointer<Float>? = nil, borders: PaddedPlanes? = nil,
                        gate: UnsafePointer<Float>? = nil, stream: Bool = false, reluCopy: PaddedPlanes? = nil,
                        pool: ThreadPool) {
        require(input.channels == w.cin, "conv input has \(input.channels) channels, weights \(w.cin)")
        let h = input.height, width = input.width
        // Contiguous bands of rows per work item (`bandRows`): neighbouring output rows share two
        // of their three input rows, so a band keeps them in one core's cache instead of
        // fetching each input row into both cores.
        let band = bandRows(height: h, width: width, inputs: w.cin, blocks: w.blocks, images: input.n, threads: pool.threadCount)
        let bands = (h + band - 1) / band
        let items = input.n * bands * w.blocks
        pool.parallelFor(items) { item, _ in
            defer { if stream { storeFence() } }
            let (i, ob, y0, y1) = bandItem(item, blocks: w.blocks, bands: bands, band: band, height: h)
            let o0 = ob * block
            let nValid = min(block, w.cout - o0)
            let inView = input.view(image: i), outView = PlaneView(out + i * imageStride, planeStride: planeStride, rowStride: rowStride)
            let imageGate = gate.map { $0 + i * imageStride }
            let copyView = reluCopy?.view(image: i)
            for y in y0..<y1 {
                if let borders { for oc in 0..<nValid { borders.zeroBorders(plane: i * w.cout + o0 + oc, row: y) } }
                if let reluCopy { for oc in 0..<nValid { reluCopy.zeroBorders(plane: i * w.cout + o0 + oc, row: y) } }
                w.convolveRow(y, block: ob, input: inView, into: outView, width: width, relu: relu, gate: imageGate, stream: stream,
                              reluCopy: copyView)
                if let st = rowStatistics {
                    for oc in 0..<nValid {
                        rowMoments(outView.row(o0 + oc, y), width, into: st + 3 * ((i * w.cout + o0 + oc) * h + y))
                    }
                }
            }
        }
    }

    /// Rows per work item of a convolution of `images` maps `h` × `width` with `cin` inputs cut
    /// into (image, band of rows, block of output channels): 8 bands per thread for a large map,
    /// so neighbouring rows (which share input rows) stay on one core and a slow thread is made
    /// up for; fewer where that would leave an item less than `minItemWork`, but at least 2
    /// items per thread, and where the rows allow a number of bands that gives the threads as
    /// many items each (not always: rounding the band to whole rows can change the count).
    ///
    /// The lower bound is what taking an item costs (a counter, a closure call, the item's
    /// views) and what a pass's last item leaves the other thread waiting: with 8 bands per
    /// thread alone, a 512² tile's 64² and 32² convolutions had 128 items of 0.7–1.3 µs. Measured
    /// on Intel Xeon fam 6 mod 207, 2 threads, one binary switching the rule tile by tile (medians
    /// of 30–40 tiles): with one shared item counter and a 4 M bound, AVX-512 tiles 1.2–2.8 %
    /// faster than 8 bands per thread (the 64² encoder and the centre 5–8 %), the AVX2 build
    /// 0.9–1.9 %; with each thread's own share (`ThreadPool.runItems`), 2 M multiply-adds gave
    /// tiles 1.1–2.4 % faster than 4 M (3.21 against 3.29 ms, 3.21 against 3.24), 0.5–1 M about
    /// the same as 2 M. On AMD EPYC fam 26 mod 2 (Zen 5), 2 threads, builds alternating, 1 M gave
    /// tiles 2.5–3 % faster than 2 M (medians of 8 runs 2.452 against 2.530 ms; paired, 12
    /// rounds, faster in 11, median ratio 0.974), a 2048² image 1.8 % (4 of 6 rounds) and the
    /// same batch-20 training step (ratio 0.996); 0.5 M was not better in one alternating run.
    /// There the pass's workers spent about 9 % of a tile waiting at the ends of its loops.
    package static func bandRows(height h: Int, width: Int, inputs cin: Int, blocks: Int, images: Int, threads: Int) -> Int {
        guard h > 0 else { return 1 }
        let rowWork = max(1, width * cin * 9 * block)
        let perBand = max(1, images * blocks)
        var bands = min(8 * threads, max(1, h * rowWork / minItemWork))
        bands = max(bands, (2 * threads + perBand - 1) / perBand)
        while bands * perBand % threads != 0 && bands < h { bands += 1 }  // the same number of items per thread
        bands = min(h, bands)
        return (h + bands - 1) / bands
    }

    /// Multiply-adds a convolution's work item has at least where the map allows (about 5–10 µs
    /// of one core at the AVX-512 kernels' speed in a pass).
    package static let minItemWork = 1 << 20

    /// Work item `item` of a convolution cut into (image, band of rows, block of output channels),
    /// blocks innermost: its image, block and rows y0 ..< y1.
    @inline(__always)
    static func bandItem(_ item: Int, blocks: Int, bands: Int, band: Int, height h: Int) -> (image: Int, block: Int, y0: Int, y1: Int) {
        let rest = item / blocks, bi = rest % bands
        return (rest / bands, item % blocks, bi * band, min(h, bi * band + band))
    }

    /// One row's moments, from two passes over the row while it is in L1: the row's first value
    /// x₀, Σ (x − x₀) (small, so the row mean x₀ + Σ/width keeps its precision), and
    /// Σ (x − mean)² around the row's own mean.
    @inline(__always)
    static func rowMoments(_ row: UnsafePointer<Float>, _ width: Int, into out: UnsafeMutablePointer<Float>) {
        let first = row[0], fV = FloatVector(repeating: first)
        var s1 = FloatVector.zero, x = 0
        while x + vectorWidth <= width { s1 += loadVector(row + x) - fV; x += vectorWidth }
        var t1 = laneSum(s1)
        while x < width { t1 += row[x] - first; x += 1 }
        let rowMean = Float(Double(first) + Double(t1) / Double(width)), mV = FloatVector(repeating: rowMean)
        var s2 = FloatVector.zero
        x = 0
        while x + vectorWidth <= width { let d = loadVector(row + x) - mV; s2 = s2.addingProduct(d, d); x += vectorWidth }
        var t2 = laneSum(s2)
        while x < width { let d = row[x] - rowMean; t2 += d * d; x += 1 }
        out[0] = first; out[1] = t1; out[2] = t2
    }

    /// A U-Net's last 3×3 convolution (at most 4 outputs, ReLU) fused with the 1×1 two-class head
    /// and its softmax: out[n, 0] and out[n, 1] are the class probabilities. The 4 feature maps
    /// only ever exist in a 1 KB scratch per 64 pixels, never in memory.
    /// `head` holds the 1×1 weights w[k][c] (2 × cin-of-head, row-major) then the 2 biases.
    public static func forwardWithSoftmaxHead(_ input: PaddedPlanes, _ w: PackedWeights, head: [Float],
                                              into out: Tensor, pool: ThreadPool = .shared) {
        require(out.shape == Shape(input.n, 2, input.height, input.width), "probabilities \(out.shape) for input \(input.n)x\(input.channels)x\(input.height)x\(input.width)")
        let h = input.height, width = input.width
        let hw = SoftmaxHead(w, head)
        let band = max(1, h / (8 * pool.threadCount))
        let bands = (h + band - 1) / band
        pool.parallelFor(input.n * bands) { item, _ in
            let i = item / bands, y0 = (item % bands) * band, y1 = min(h, y0 + band)
            let inBase = UnsafePointer(input.origin(i, 0))
            for y in y0..<y1 {
                hw.row(inBase + y * input.rowStride, input.planeStride, input.rowStride,
                       out.plane(i, 0) + y * width, out.plane(i, 1) + y * width, width: width)
            }
        }
    }

    /// The last 3×3 convolution (at most 4 outputs, ReLU), the 1×1 two-class head and its softmax
    /// for one row at a time (`forwardWithSoftmaxHead`, `OutputLevel`). Holds the head's
    /// weights zero-padded to 4 features, then the 2 biases.
    struct SoftmaxHead: @unchecked Sendable {
        let weights: PackedWeights
        /// In a value, not an array: an array's reference count, touched per row, is shared by all threads.
        let hp: SIMD16<Float>

        init(_ w: PackedWeights, _ head: [Float]) {
            require(w.blocks == 1 && head.count == 2 * w.cout + 2, "fused head needs ≤ 4 features and 2 classes")
            let cf = w.cout
            var hp = SIMD16<Float>()
            for k in 0..<2 { for c in 0..<cf { hp[k * 4 + c] = head[k * cf + c] } }
            hp[8] = head[2 * cf]; hp[9] = head[2 * cf + 1]
            weights = w; self.hp = hp
        }

        /// Probabilities of classes 0 and 1 at `p0` (unless nil) and `p1` for the row whose input
        /// (channel 0, column 0) is at `ip`, input channels `ps` apart and rows `rs` apart (padded:
        /// one row and one vector of columns readable on each side). 64 pixels at a time: the 4
        /// features go to a 1 KB scratch (convRow cuts them into register blocks), then the head
        /// reads them from L1.
        func row(_ ip: UnsafePointer<Float>, _ ps: Int, _ rs: Int, _ p0: UnsafeMutablePointer<Float>?,
                 _ p1: UnsafeMutablePointer<Float>, width: Int) {
            let (wp, bp) = weights.block(0)
            let hp = self.hp
            withUnsafeTemporaryAllocation(of: Float.self, capacity: 4 * 64) { scratchBuffer in
                let scratch = scratchBuffer.baseAddress!
                let chunk = 64
                var x = 0
                while x < width {
                    let n = min(chunk, width - x)
                    convRow(ip + x, ps, rs, weights.cin, wp, bp, scratch, 64, 4, n, true)
                    var v = 0
                    while v < n {
                        let f0 = loadVector(scratch + v), f1 = loadVector(scratch + 64 + v)
                        let f2 = loadVector(scratch + 128 + v), f3 = loadVector(scratch + 192 + v)
                        var z0 = FloatVector(repeating: hp[8]), z1 = FloatVector(repeating: hp[9])
                        z0 = z0.addingProduct(f0, hp[0]).addingProduct(f1, hp[1]).addingProduct(f2, hp[2]).addingProduct(f3, hp[3])
                        z1 = z1.addingProduct(f0, hp[4]).addingProduct(f1, hp[5]).addingProduct(f2, hp[6]).addingProduct(f3, hp[7])
                        let e = vectorExp(z0 - z1)
                        let q1 = 1 / (1 + e)
                        let lanes = min(vectorWidth, n - v)
                        if let p0 { storePartial(e * q1, p0 + x + v, lanes) }
                        storePartial(q1, p1 + x + v, lanes)
                        v += vectorWidth
                    }
                    x += chunk
                }
            }
        }
    }

    /// One output row of one 4-channel block, chunked by `RegisterBlocking.forEachRowChunk`;
    /// its ReLU also to `copy` (planes `copyStride` apart) when given.
    ///
    /// The store options stay run-time values: each stored vector tests them again (about 10
    /// instructions a vector), but a copy of the loop per common combination, the options fixed
    /// in each, ran the same (AMD EPYC fam 25 mod 17, AVX2 build, one thread: the 4 → 4
    /// convolution at 512² 0.740 against 0.741 ms, the 1 → 4 one within the runs' spread).
    /// There, with one thread, the AVX2 build's convolutions take 0.98-1.09 of the AVX-512
    /// build's time on the same FMA peak, but the 4 → 4 one at 512² 1.17 and the 1 → 4 one 1.28
    /// (`bench --threads 1 --only conv_layer`, the faster of two runs each); over a 2048² pass
    /// this kernel had 1.16 times the samples (`perf`), the upsampled part's kernel 0.97.
    @inline(never)
    static func convRow(_ ip: UnsafePointer<Float>, _ ps: Int, _ rs: Int, _ cin: Int,
                        _ wp: UnsafePointer<Float>, _ bp: UnsafePointer<Float>,
                        _ out: UnsafeMutablePointer<Float>, _ os: Int, _ nValid: Int, _ width: Int, _ relu: Bool,
                        _ gate: UnsafePointer<Float>? = nil, _ stream: Bool = false,
                        _ copy: UnsafeMutablePointer<Float>? = nil, _ copyStride: Int = 0) {
        RegisterBlocking.forEachRowChunk(width: width) { x, vectors, lanes in
            chunk(ip + x, ps, rs, cin, wp, bp, out, column: x, os, nValid, vectors: vectors, lanes: lanes, relu, gate, stream,
                  copy, copyStride)
        }
    }

    /// `vectors` vectors of one output row for a block of 4 output channels, stored from `column`
    /// of `out` and `gate` (the first `lanes` lanes of the last vector): bias, then Σ over input
    /// channels and the 9 taps read from `ip0`.
    @inline(__always)
    static func chunk(_ ip0: UnsafePointer<Float>, _ ps: Int, _ rs: Int, _ cin: Int,
                      _ wp0: UnsafePointer<Float>, _ bp: UnsafePointer<Float>,
                      _ out: UnsafeMutablePointer<Float>, column: Int, _ os: Int, _ nValid: Int, vectors: Int, lanes: Int,
                      _ relu: Bool, _ gate: UnsafePointer<Float>?, _ stream: Bool,
                      _ copy: UnsafeMutablePointer<Float>? = nil, _ copyStride: Int = 0) {
        var acc = RowAccumulators(vectors: vectors, bias: bp)
        var ip = ip0 - rs - 1
        var wp = wp0
        let ahead = RegisterBlocking.prefetchAhead
        for _ in 0..<cin {
            var rp = ip
            if ahead > 0 {  // the row below, which no earlier output row has read: two lines, a chunk's worth
                nf_prefetch(ip + 2 * rs + ahead); nf_prefetch(ip + 2 * rs + ahead + 16)
            }
            for _ in 0..<3 {
                var p = rp
                for _ in 0..<3 {
                    acc.add(p, weights: wp)
                    wp += 4
                    p += 1
                }
                rp += rs
            }
            ip += ps
        }
        acc.store(to: out, column: column, planeStride: os, channels: nValid, lanes: lanes, relu: relu, gate: gate, stream: stream)
        if let copy {
            acc.store(to: copy, column: column, planeStride: copyStride, channels: nValid, lanes: lanes, relu: true, gate: nil,
                      stream: false)
        }
    }

    /// The first `lanes` lanes of a gate (the rest zero), without reading past them.
    @inline(__always)
    static func loadGate(_ p: UnsafePointer<Float>, _ lanes: Int) -> FloatVector {
        if lanes == vectorWidth { return loadVector(p) }
        var v = FloatVector.zero
        for l in 0..<lanes { v[l] = p[l] }
        return v
    }

    // MARK: Backward

    /// Input gradient: dX = conv(dY, rot180(Wᵀ)), with dY given as padded planes.
    public static func backwardData(_ dY: PaddedPlanes, weights wT: PackedWeights, into dX: Tensor,
                                    pool: ThreadPool = .shared) {
        require(dX.shape == Shape(dY.n, wT.cout, dY.height, dY.width), "input gradient shape \(dX.shape)")
        let s = dX.shape
        forward(dY, wT, out: dX.data, imageStride: wT.cout * s.plane, planeStride: s.plane, rowStride: s.w, relu: false,
                stream: streams(s.count, dX.data, rowStride: s.w) && s.plane % vectorWidth == 0, pool: pool)
    }

    /// The same through a ReLU on the input: dX is zero where `reluInput` ≤ 0 (the skip
    /// connection's ReLU of a U-Net decoder, applied as the gradient is stored).
    public static func backwardData(_ dY: PaddedPlanes, weights wT: PackedWeights, into dX: Tensor, reluInput: Tensor,
                                    pool: ThreadPool = .shared) {
        require(dX.shape == Shape(dY.n, wT.cout, dY.height, dY.width) && reluInput.shape == dX.shape,
                     "gradient \(dX.shape) and ReLU input \(reluInput.shape) do not match")
        let s = dX.shape
        forward(dY, wT, out: dX.data, imageStride: wT.cout * s.plane, planeStride: s.plane, rowStride: s.w, relu: false,
                gate: UnsafePointer(reluInput.data),
                stream: streams(s.count, dX.data, rowStride: s.w) && s.plane % vectorWidth == 0, pool: pool)
    }

    /// Weight and bias gradients, accumulated into `dW` (OIHW, cout*cin*9) and `dB` (cout).
    /// `x` are the forward inputs and `dY` the output gradients, both as padded planes (zero
    /// borders and tails make the vector loads exact). Each work item sums into its own buffer
    /// and the buffers are added in item order, so the result does not depend on which thread
    /// ran which item (training is bit-reproducible for a seed).
    public static func backwardWeights(x: PaddedPlanes, dY: PaddedPlanes, dW: UnsafeMutablePointer<Float>,
                                       dB: UnsafeMutablePointer<Float>?, pool: ThreadPool = .shared) {
        let cin = x.channels, cout = dY.channels, h = x.height, width = x.width
        require(dY.n == x.n && dY.height == h && dY.width == width, "output gradient \(dY.n)x\(dY.channels)x\(dY.height)x\(dY.width) for input \(x.n)x\(x.channels)x\(h)x\(width)")
        let wCount = cout * cin * 9
        // About 32 items in all: enough to balance two or more threads, few buffers to add.
        let bandsPerImage = max(1, min(h, (32 + x.n - 1) / x.n))
        let band = (h + bandsPerImage - 1) / bandsPerImage
        let bands = (h + band - 1) / band
        let items = x.n * bands
        let partial = PartialSums(items: items, stride: wCount + cout)
        pool.parallelFor(items) { item, _ in
            let i = item / bands, bi = item % bands
            let y0 = bi * band, y1 = min(h, y0 + band)
            weightGradientRows(x: x.view(image: i), channels: cin, dY: dY.view(image: i), channels: cout, rows: y0, y1,
                               width: width, bias: dB != nil, into: partial.take(item))
        }
        partial.add(count: wCount, into: dW, pool: pool)
        if let dB { partial.add(offset: wCount, count: cout, into: dB, pool: pool) }
    }

    /// One image's share of the weight (and, with `bias`, bias) gradient from output rows
    /// y0 ..< y1: for each (pair of output channels, input channel) the 3×3 tile Σ dY · X, added
    /// to `acc` (OIHW, then the cout biases). `x` must be readable one row and one vector beyond
    /// the band on each side, `dY` one vector on each side (padded planes, or a scratch band with
    /// zero sides). The plain backward and the fused one (`BatchNormKernels`) both run this.
    ///
    /// Tried and not kept (AMD EPYC fam 26 mod 2, AVX-512, 2 threads): a band in chunks of about
    /// 192 KB of rows, every tile of a chunk before the next, each tile's 18 accumulators kept
    /// as vectors between chunks (the same sums bit for bit), so that the chunk's rows stay in
    /// L2. `bench --only conv_grad` (medians of 3): the 512² weight gradients 8.41 → 7.83 ms,
    /// but the 64² and 32² ones slower (4.13 → 5.10, 1.13 → 1.50 ms: short rows, and the
    /// accumulators loaded and stored per chunk); the batch-20 step unchanged (paired, 6 rounds,
    /// median ratio 1.004). The tile loop itself runs at the FMA peak on rows in L1 or L2 (a C
    /// copy of it: about the 9 cycles two units take to issue its 18 multiply-adds, at widths
    /// 64-512, the clock taken as the 4 GHz the measured peak implies), misaligned
    /// gradient loads included: what it loses in a pass is its data's way from memory.
    @inline(__always)
    static func weightGradientRows(x: PlaneView, channels cin: Int, dY: PlaneView, channels cout: Int, rows y0: Int, _ y1: Int,
                                   width: Int, bias: Bool, into acc: UnsafeMutablePointer<Float>) {
        let wCount = cout * cin * 9
        for c in 0..<cin {
            let xo = UnsafePointer(x.row(c, 0))
            var o = 0
            while o < cout {
                let o1 = min(o + RegisterBlocking.gradientChannels - 1, cout - 1)
                let g0 = UnsafePointer(dY.row(o, 0)), g1 = UnsafePointer(dY.row(o1, 0))
                let out0 = acc + (o * cin + c) * 9, out1 = o1 != o ? acc + (o1 * cin + c) * 9 : nil
                if c == 0 && bias {  // the bias gradient Σ dY with the first input channel's pass
                    weightGradTileWithBias(xo, x.rowStride, g0, g1, dY.rowStride, y0, y1, width, out0, out1,
                                           acc + wCount + o, o1 != o ? acc + wCount + o1 : nil)
                } else {
                    weightGradTile(xo, x.rowStride, g0, g1, dY.rowStride, y0, y1, width, out0, out1)
                }
                o += RegisterBlocking.gradientChannels
            }
        }
    }

    /// Sums dY[o](y, x) · X(y+ky-1, x+kx-1) over a band of rows for one input channel and
    /// `RegisterBlocking.gradientChannels` output channels (g0 and g1; out1 is nil when the second
    /// is missing or the blocking takes one): 9 accumulators each, vectorised along x.
    @inline(never)
    static func weightGradTile(_ xo: UnsafePointer<Float>, _ xrs: Int, _ g0: UnsafePointer<Float>, _ g1: UnsafePointer<Float>,
                               _ grs: Int, _ y0: Int, _ y1: Int, _ width: Int,
                               _ out0: UnsafeMutablePointer<Float>, _ out1: UnsafeMutablePointer<Float>?) {
        weightGradTile(xo, xrs, g0, g1, grs, y0, y1, width, out0, out1, pair: RegisterBlocking.gradientChannels == 2,
                       bias: false, nil, nil)
    }

    /// The same, also adding Σ dY over the band to bias0 and bias1 (the bias gradient, read
    /// with the first input channel's pass instead of in a pass of its own).
    @inline(never)
    static func weightGradTileWithBias(_ xo: UnsafePointer<Float>, _ xrs: Int, _ g0: UnsafePointer<Float>, _ g1: UnsafePointer<Float>,
                                       _ grs: Int, _ y0: Int, _ y1: Int, _ width: Int,
                                       _ out0: UnsafeMutablePointer<Float>, _ out1: UnsafeMutablePointer<Float>?,
                                       _ bias0: UnsafeMutablePointer<Float>, _ bias1: UnsafeMutablePointer<Float>?) {
        weightGradTile(xo, xrs, g0, g1, grs, y0, y1, width, out0, out1, pair: RegisterBlocking.gradientChannels == 2,
                       bias: true, bias0, bias1)
    }

    @inline(__always)
    static func weightGradTile(_ xo: UnsafePointer<Float>, _ xrs: Int, _ g0: UnsafePointer<Float>, _ g1: UnsafePointer<Float>,
                               _ grs: Int, _ y0: Int, _ y1: Int, _ width: Int,
                               _ out0: UnsafeMutablePointer<Float>, _ out1: UnsafeMutablePointer<Float>?, pair: Bool,
                               bias: Bool, _ bias0: UnsafeMutablePointer<Float>?, _ bias1: UnsafeMutablePointer<Float>?) {
        let vw = vectorWidth
        var s0 = FloatVector.zero, s1 = FloatVector.zero
        var a0 = FloatVector.zero, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0
        var b0 = FloatVector.zero, b1 = b0, b2 = b0, b3 = b0, b4 = b0, b5 = b0, b6 = b0, b7 = b0, b8 = b0
        // dW[ky][kx] = Σ dY(y, x) · X(y + ky − 1, x + kx − 1) = Σ dY(y, x′ − kx + 1) · X(y + ky − 1, x′):
        // the input is read at whole-vector positions (3 aligned loads) and the gradient at the
        // three shifts (6 loads, 4 of them across a cache line) instead of 9 input loads (6 split).
        // Shifted gradient lanes at −1 and width read its zero columns.
        for y in y0..<y1 {
            let r0 = xo + (y - 1) * xrs, r1 = r0 + xrs, r2 = r1 + xrs
            let gr0 = g0 + y * grs + 1, gr1 = g1 + y * grs + 1
            var x = 0
            while x < width {
                let x0 = loadVector(r0 + x), x1 = loadVector(r1 + x), x2 = loadVector(r2 + x)
                var d = loadVector(gr0 + x)   // kx = 0: dY(x′ + 1)
                a0 = a0.addingProduct(d, x0); a3 = a3.addingProduct(d, x1); a6 = a6.addingProduct(d, x2)
                if pair {
                    let e = loadVector(gr1 + x)
                    b0 = b0.addingProduct(e, x0); b3 = b3.addingProduct(e, x1); b6 = b6.addingProduct(e, x2)
                }
                // kx = 1: dY(x′), through an opaque pointer where one gradient vector is read (AVX2):
                // there LLVM otherwise builds it from the two other loads with three shuffles,
                // which contend with the multiply-adds for the same pipes.
                d = loadVector(pair ? gr0 + x - 1 : nf_opaque(gr0 + x - 1))
                if bias { s0 += d }
                a1 = a1.addingProduct(d, x0); a4 = a4.addingProduct(d, x1); a7 = a7.addingProduct(d, x2)
                if pair {
                    let e = loadVector(gr1 + x - 1)
                    if bias { s1 += e }
                    b1 = b1.addingProduct(e, x0); b4 = b4.addingProduct(e, x1); b7 = b7.addingProduct(e, x2)
                }
                d = loadVector(gr0 + x - 2)   // kx = 2: dY(x′ − 1)
                a2 = a2.addingProduct(d, x0); a5 = a5.addingProduct(d, x1); a8 = a8.addingProduct(d, x2)
                if pair {
                    let e = loadVector(gr1 + x - 2)
                    b2 = b2.addingProduct(e, x0); b5 = b5.addingProduct(e, x1); b8 = b8.addingProduct(e, x2)
                }
                x += vw
            }
        }
        addLaneSums(a0, a1, a2, a3, a4, a5, a6, a7, a8, to: out0)
        if pair, let out1 { addLaneSums(b0, b1, b2, b3, b4, b5, b6, b7, b8, to: out1) }
        if bias {
            bias0![0] += laneSum(s0)
            if pair, let bias1 { bias1[0] += laneSum(s1) }
        }
    }
}

/// Stores the first `lanes` lanes of `v`.
@inline(__always) func storePartial(_ v: FloatVector, _ p: UnsafeMutablePointer<Float>, _ lanes: Int) {
    if lanes == vectorWidth { storeVector(v, p) } else { for l in 0..<lanes { p[l] = v[l] } }
}

import Foundation

/// Batch normalisation over (N, H, W) per channel.
public enum BatchNormKernels {
    /// Per-channel mean and biased variance over the batch (summed in Double).
    public static func statistics(_ x: Tensor, pool: ThreadPool = .shared) -> (mean: [Float], variance: [Float]) {
        let s = x.shape
        var mean = [Float](repeating: 0, count: s.c), variance = mean
        let m = Double(s.n * s.plane)
        mean.withUnsafeMutableBufferPointer { mp in
            variance.withUnsafeMutableBufferPointer { vp in
                let mpp = mp.baseAddress!, vpp = vp.baseAddress!
                pool.parallelFor(s.c) { c, _ in
                    var sum = 0.0
                    for i in 0..<s.n {
                        let p = x.plane(i, c)
                        var acc = FloatVector.zero, k = 0
                        while k + vectorWidth <= s.plane { acc += loadVector(p + k); k += vectorWidth }
                        var part = Double(laneSum(acc))
                        while k < s.plane { part += Double(p[k]); k += 1 }
                        sum += part
                    }
                    let mu = sum / m
                    var sq = 0.0
                    let muF = FloatVector(repeating: Float(mu))
                    for i in 0..<s.n {
                        let p = x.plane(i, c)
                        var acc = FloatVector.zero, k = 0
                        while k + vectorWidth <= s.plane { let d = loadVector(p + k) - muF; acc = acc.addingProduct(d, d); k += vectorWidth }
                        var part = Double(laneSum(acc))
                        while k < s.plane { let d = Double(p[k]) - mu; part += d * d; k += 1 }
                        sq += part
                    }
                    mpp[c] = Float(mu)
                    vpp[c] = Float(sq / m)
                }
            }
        }
        return (mean, variance)
    }

    /// y = x · scale[c] + shift[c] (inference BN, or training BN with batch statistics folded in),
    /// followed by max(·, 0) when `relu` (batch norm and ReLU in one pass).
    /// With `dropout`, the result then goes through inverted dropout (batch norm, ReLU and
    /// dropout in one pass; the mask is recomputed, never stored).
    public static func affine(_ x: Tensor, scale: [Float], shift: [Float], relu: Bool = false, dropout: DropoutMask? = nil,
                              into y: Tensor, pool: ThreadPool = .shared) {
        require(y.shape == x.shape, "affine output \(y.shape) for \(x.shape)")
        affine(x, scale: scale, shift: shift, relu: relu, dropout: dropout, out: y.data, planeStride: x.shape.plane,
               rowStride: x.shape.w, pool: pool)
    }

    /// The same into the interior of padded planes: the next convolution's input, without a copy.
    public static func affine(_ x: Tensor, scale: [Float], shift: [Float], relu: Bool = false, dropout: DropoutMask? = nil,
                              into y: PaddedPlanes, pool: ThreadPool = .shared) {
        require(y.n == x.shape.n && y.channels == x.shape.c && y.height == x.shape.h && y.width == x.shape.w,
                     "affine output planes do not match \(x.shape)")
        affine(x, scale: scale, shift: shift, relu: relu, dropout: dropout, out: y.origin(0, 0), planeStride: y.planeStride,
               rowStride: y.rowStride, borders: y, pool: pool)
    }

    /// `borders`: the padded planes being written, whose borders are zeroed row by row.
    static func affine(_ x: Tensor, scale: [Float], shift: [Float], relu: Bool, dropout: DropoutMask?,
                       out: UnsafeMutablePointer<Float>, planeStride: Int, rowStride: Int, borders: PaddedPlanes? = nil,
                       pool: ThreadPool) {
        let s = x.shape
        let xd = x.data
        let floor: Float = relu ? 0 : -.infinity
        let drop = dropout != nil, mask = dropout ?? DropoutMask(rate: 0, seed: 0)
        let stream = streams(s.n * s.c * planeStride, out, rowStride: rowStride) && planeStride % vectorWidth == 0
        pool.parallelFor(s.n * s.c) { item, _ in
            defer { if stream { storeFence() } }
            let c = item % s.c
            let p = xd + item * s.plane, outPlane = out + item * planeStride
            let a = scale[c], b = shift[c]
            let aV = FloatVector(repeating: a), bV = FloatVector(repeating: b), floorV = FloatVector(repeating: floor)
            let key = drop ? mask.planeKey(item) : 0
            for y in 0..<s.h {
                borders?.zeroBorders(plane: item, row: y)
                let xr = p + y * s.w, q = outPlane + y * rowStride
                // One loop per combination of the flags (see `rowSums`).
                var k: Int
                switch (drop, stream) {
                case (false, false): k = affineRow(xr, q, s.w, y * s.w, aV, bV, floorV, mask, key, false, false)
                case (true, false): k = affineRow(xr, q, s.w, y * s.w, aV, bV, floorV, mask, key, true, false)
                case (false, true): k = affineRow(xr, q, s.w, y * s.w, aV, bV, floorV, mask, key, false, true)
                case (true, true): k = affineRow(xr, q, s.w, y * s.w, aV, bV, floorV, mask, key, true, true)
                }
                while k < s.w {
                    var v = max(xr[k] * a + b, floor)
                    if drop { v = mask.apply(v, key: key, index: y * s.w + k) }
                    q[k] = v
                    k += 1
                }
            }
        }
    }

    /// The whole vectors of one row of `affine`. Returns the first column left.
    @inline(__always)
    static func affineRow(_ xr: UnsafePointer<Float>, _ q: UnsafeMutablePointer<Float>, _ w: Int, _ at: Int, _ aV: FloatVector,
                          _ bV: FloatVector, _ floorV: FloatVector, _ mask: DropoutMask, _ key: UInt32, _ drop: Bool,
                          _ stream: Bool) -> Int {
        var k = 0
        while k + vectorWidth <= w {
            var v = vmax(loadVector(xr + k) * aV + bV, floorV)
            if drop { v = mask.apply(v, key: key, vectorAt: at + k) }
            storeVector(v, q + k, streaming: stream)
            k += vectorWidth
        }
        return k
    }

    /// A U-Net encoder's two outputs of y = x · scale[c] + shift[c], in one pass that never
    /// stores y: max(y, 0) into `rectified` (the skip connection, which the decoder reads through
    /// a ReLU) and the 2×2 max pooling of y into `pooled` (the next stage's input). Two rows of y
    /// at a time live in a small per-thread scratch. `backward(x:rectifiedGradient:pooledGradient:…)`
    /// is its gradient.
    public static func affine(_ x: Tensor, scale: [Float], shift: [Float], rectifiedInto rectified: PaddedPlanes,
                              pooledInto pooled: PaddedPlanes, pool: ThreadPool = .shared) {
        let s = x.shape
        require(rectified.n == s.n && rectified.channels == s.c && rectified.height == s.h && rectified.width == s.w,
                     "rectified planes do not match \(s)")
        require(pooled.n == s.n && pooled.channels == s.c && pooled.height == s.h / 2 && pooled.width == s.w / 2,
                     "pooled planes do not match \(s)")
        let ws = roundUp(max(s.w, 1), vectorWidth)
        let scratch = Tensor(Shape(pool.threadCount, 1, 1, 2 * ws), zeroed: false)
        let stream = streams(s.n * s.c * rectified.planeStride, rectified.origin(0, 0), rowStride: rectified.rowStride)
        pool.parallelFor(s.n * s.c) { item, thread in
            defer { if stream { storeFence() } }
            let c = item % s.c
            let a = scale[c], b = shift[c]
            let aV = FloatVector(repeating: a), bV = FloatVector(repeating: b)
            let rows = scratch.data + thread * 2 * ws
            let p = x.data + item * s.plane
            let rOrigin = rectified.data + item * rectified.planeStride + rectified.rowStride + vectorWidth
            let pOrigin = pooled.data + item * pooled.planeStride + pooled.rowStride + vectorWidth
            if pooled.height == 0 { pooled.zeroBorderRows(pooled.data + item * pooled.planeStride) }
            for y in 0..<s.h {
                rectified.zeroBorders(plane: item, row: y)
                let yRow = rows + (y % 2) * ws, xr = p + y * s.w, r = rOrigin + y * rectified.rowStride
                var k = 0
                while k + vectorWidth <= s.w {
                    let v = loadVector(xr + k) * aV + bV
                    storeVector(v, yRow + k); storeVector(vmax(v, .zero), r + k, streaming: stream)
                    k += vectorWidth
                }
                while k < s.w { let v = xr[k] * a + b; yRow[k] = v; r[k] = max(v, 0); k += 1 }
                if y % 2 == 1 && y / 2 < pooled.height {
                    pooled.zeroBorders(plane: item, row: y / 2)
                    PoolingKernels.maxPoolRow(rows, rows + ws, into: pOrigin + (y / 2) * pooled.rowStride, count: pooled.width)
                }
            }
        }
    }

    /// A training batch norm's per-channel numbers as its forward used them: the batch mean,
    /// 1/σ with σ = sqrt(var + ε), γ, and the forward's y = scale · x + shift (so a recomputed
    /// ReLU mask matches the forward bit for bit).
    public struct Normalisation: Sendable {
        public let mean: [Float], invStd: [Float], gamma: [Float], scale: [Float], shift: [Float]
        public init(mean: [Float], invStd: [Float], gamma: [Float], scale: [Float], shift: [Float]) {
            self.mean = mean; self.invStd = invStd; self.gamma = gamma; self.scale = scale; self.shift = shift
        }
    }

    /// The first pass of a batch norm's gradient: per channel Σg and Σg·x̂ of its output
    /// gradient g (after its ReLU gate and dropout), gathered by whoever made g when it could
    /// (`ChannelKernels.conv1x1Backward(…gatheringSumsOf:)`).
    public struct GradientSums: Sendable {
        public var sumDy: [Double], sumDyXhat: [Double]
        public init(sumDy: [Double], sumDyXhat: [Double]) { self.sumDy = sumDy; self.sumDyXhat = sumDyXhat }
    }

    /// Where a batch norm's output gradient comes from.
    enum GradientSource {
        case plain(Tensor)
        /// The encoder's: of max(y, 0) and of maxpool(y); see `backward(x:rectifiedGradient:…)`.
        case rectifiedAndPooled(Tensor?, Tensor?)
    }

    /// Where the input gradient dx goes: rows of planes (a tensor's, or padded planes' interior
    /// whose borders are zeroed row by row), or straight into a convolution's backward, which
    /// reads it a band at a time and never lets it be written out.
    enum GradientDestination {
        case planes(UnsafeMutablePointer<Float>, planeStride: Int, rowStride: Int, borders: PaddedPlanes?)
        case convolution(ConvolutionBackward)
    }

    /// Gradients of y = γ (x − μ) / σ + β with batch statistics, or, with `reluAfter`, of
    /// max(that, 0) (the ReLU's mask is recomputed from x, so the BN output need not be kept).
    /// With `dropout` as well, of dropout(max(that, 0)), the mask recomputed too.
    /// Returns dx and accumulates dγ, dβ.
    public static func backward(x: Tensor, dy: Tensor, _ n: Normalisation, reluAfter: Bool = false, dropout: DropoutMask? = nil,
                                dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>,
                                pool: ThreadPool = .shared) -> Tensor {
        require(dy.shape == x.shape, "batch-norm output gradient \(dy.shape) for \(x.shape)")
        let dx = Tensor(x.shape, zeroed: false)
        backward(x: x, source: .plain(dy), n, reluAfter: reluAfter, dropout: dropout, dGamma: dGamma, dBeta: dBeta,
                 into: .planes(dx.data, planeStride: x.shape.plane, rowStride: x.shape.w, borders: nil), pool: pool)
        return dx
    }

    /// The same, writing dx into the interior of padded planes: the input gradient of the
    /// convolution that produced x, ready for its backward kernels without another copy.
    public static func backward(x: Tensor, dy: Tensor, _ n: Normalisation, reluAfter: Bool = false, dropout: DropoutMask? = nil,
                                sums: GradientSums? = nil, dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>,
                                into dx: PaddedPlanes, pool: ThreadPool = .shared) {
        require(dy.shape == x.shape, "batch-norm output gradient \(dy.shape) for \(x.shape)")
        backward(x: x, source: .plain(dy), n, reluAfter: reluAfter, dropout: dropout, sums: sums, dGamma: dGamma, dBeta: dBeta,
                 into: planes(dx, for: x.shape), pool: pool)
    }

    /// The gradient of the encoder's `affine(_:scale:shift:rectifiedInto:pooledInto:)`, written
    /// into the interior of padded planes: y's gradient arrives as the skip connection's (of
    /// max(y, 0), gated here by y > 0) plus the pooled map's (routed to each window's first
    /// maximum of y, as `PoolingKernels.maxPool2x2Backward` does); y is recomputed from x two rows
    /// at a time and neither gradient is laid out at full size. Either gradient may be nil (zero).
    /// Accumulates dγ, dβ.
    public static func backward(x: Tensor, rectifiedGradient: Tensor?, pooledGradient: Tensor?, _ n: Normalisation,
                                dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>,
                                into dx: PaddedPlanes, pool: ThreadPool = .shared) {
        backward(x: x, source: encoderSource(x.shape, rectifiedGradient, pooledGradient), n, reluAfter: false, dropout: nil,
                 dGamma: dGamma, dBeta: dBeta, into: planes(dx, for: x.shape), pool: pool)
    }

    /// The gradient of a convolution → batch norm (→ ReLU → dropout) with the convolution's
    /// backward fused into the second pass (`ConvolutionBackward`): the convolution's output
    /// gradient is never written out.
    /// With `sums`, the first pass as whoever made dy gathered it, not read again here.
    public static func backward(x: Tensor, dy: Tensor, _ n: Normalisation, reluAfter: Bool = false, dropout: DropoutMask? = nil,
                                sums: GradientSums? = nil, dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>,
                                throughConvolution convolution: ConvolutionBackward, pool: ThreadPool = .shared) {
        require(dy.shape == x.shape, "batch-norm output gradient \(dy.shape) for \(x.shape)")
        backward(x: x, source: .plain(dy), n, reluAfter: reluAfter, dropout: dropout, sums: sums, dGamma: dGamma, dBeta: dBeta,
                 into: .convolution(convolution), pool: pool)
    }

    /// The encoder's gradient (`backward(x:rectifiedGradient:pooledGradient:…into:)`) with the
    /// convolution's backward fused into the second pass.
    public static func backward(x: Tensor, rectifiedGradient: Tensor?, pooledGradient: Tensor?, _ n: Normalisation,
                                dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>,
                                throughConvolution convolution: ConvolutionBackward, pool: ThreadPool = .shared) {
        backward(x: x, source: encoderSource(x.shape, rectifiedGradient, pooledGradient), n, reluAfter: false, dropout: nil,
                 dGamma: dGamma, dBeta: dBeta, into: .convolution(convolution), pool: pool)
    }

    /// The encoder's two output gradients, checked against the batch norm's input shape.
    static func encoderSource(_ s: Shape, _ rectified: Tensor?, _ pooled: Tensor?) -> GradientSource {
        if let r = rectified { require(r.shape == s, "rectified gradient \(r.shape) for \(s)") }
        if let g = pooled { require(g.shape == Shape(s.n, s.c, s.h / 2, s.w / 2), "pooled gradient \(g.shape) for \(s)") }
        return .rectifiedAndPooled(rectified, pooled)
    }

    /// Padded planes' interior as a destination, checked against the input shape.
    static func planes(_ dx: PaddedPlanes, for s: Shape) -> GradientDestination {
        require(dx.n == s.n && dx.channels == s.c && dx.height == s.h && dx.width == s.w,
                "gradient planes \(dx.n)x\(dx.channels)x\(dx.height)x\(dx.width) for input \(s)")
        return .planes(dx.origin(0, 0), planeStride: dx.planeStride, rowStride: dx.rowStride, borders: dx)
    }

    /// Both passes of the batch-norm gradient (the sums Σg and Σg·x̂ over the batch, then dx),
    /// reading the output gradient g two rows at a time from `source`.
    static func backward(x: Tensor, source: GradientSource, _ n: Normalisation, reluAfter: Bool, dropout: DropoutMask?,
                         sums given: GradientSums? = nil, dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>,
                         into destination: GradientDestination, pool: ThreadPool) {
        let s = x.shape
        require(n.mean.count == s.c && n.invStd.count == s.c && n.gamma.count == s.c && n.scale.count == s.c
                    && n.shift.count == s.c, "batch-norm parameters for \(s.c) channels")
        require(given.map { $0.sumDy.count == s.c && $0.sumDyXhat.count == s.c } ?? true, "gradient sums for \(s.c) channels")
        let mask = dropout ?? DropoutMask(rate: 0, seed: 0)
        let xd = x.data
        let scale = n.scale, shift = n.shift
        // Rows y and y + 1 (y even) of plane `item`'s output gradient, and their stride: the
        // gradient itself, or the encoder's two gradients combined in a per-thread scratch.
        let ws = roundUp(max(s.w, 1), vectorWidth)
        var scratch: Tensor? = nil
        if case .rectifiedAndPooled = source { scratch = Tensor(Shape(pool.threadCount, 1, 1, 4 * ws), zeroed: false) }
        // Plain pointers, taken once: unwrapping the tensors per row cost a retain and a release
        // each, on reference counts both threads share. `source` holds the tensors meanwhile.
        var plainGradient: UnsafePointer<Float>? = nil, rectifiedGradient: UnsafePointer<Float>? = nil
        var pooledGradient: UnsafePointer<Float>? = nil
        let encoder: Bool
        switch source {
        case .plain(let dy): plainGradient = UnsafePointer(dy.data); encoder = false
        case .rectifiedAndPooled(let r, let p):
            rectifiedGradient = r.map { UnsafePointer($0.data) }; pooledGradient = p.map { UnsafePointer($0.data) }; encoder = true
        }
        let scratchBase = scratch?.data
        func gradientRows(_ item: Int, _ y: Int, _ thread: Int) -> (UnsafePointer<Float>, Int) {
            guard encoder else { return (plainGradient! + item * s.plane + y * s.w, s.w) }
            let c = item % s.c
            return encoderGradientRows(item, y, s, x: xd, scale: scale[c], shift: shift[c], rectified: rectifiedGradient,
                                       pooled: pooledGradient, scratch: scratchBase! + thread * 4 * ws, rowStride: ws)
        }
        let (sumDy, sumDyXhat) = given.map { ($0.sumDy, $0.sumDyXhat) }
            ?? gradientSums(s, x: xd, n, reluAfter: reluAfter, dropout: dropout, gradientRows, pool: pool)
        for c in 0..<s.c { dGamma[c] += Float(sumDyXhat[c]); dBeta[c] += Float(sumDy[c]) }
        let coefficients = dxCoefficients(s, n, sumDy: sumDy, sumDyXhat: sumDyXhat)
        /// dx for row `row` of plane `item` from its output-gradient row `gr`, into `out`.
        func writeRow(_ item: Int, _ row: Int, _ gr: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ stream: Bool) {
            let c = item % s.c
            gradientRow(item, row, gr, out, stream, s, x: xd, scale: scale[c], shift: shift[c], gA: coefficients[3 * c],
                        xB: coefficients[3 * c + 1], cC: coefficients[3 * c + 2], reluAfter: reluAfter,
                        dropout: dropout == nil ? nil : mask)
        }
        withExtendedLifetime((source, scratch)) {
            switch destination {
            case .convolution(let fused):
                backwardThroughConvolution(fused, s, gradientRows, writeRow, pool: pool)
            case .planes(let dd, let planeStride, let rowStride, let borders):
                let stream = streams(s.n * s.c * planeStride, dd, rowStride: rowStride) && planeStride % vectorWidth == 0
                pool.parallelFor(s.n * s.c) { item, thread in
                    defer { if stream { storeFence() } }
                    let outPlane = dd + item * planeStride
                    var y = 0
                    while y < s.h {
                        let (g0, gs) = gradientRows(item, y, thread)
                        for j in 0..<min(2, s.h - y) {
                            borders?.zeroBorders(plane: item, row: y + j)
                            writeRow(item, y + j, g0 + j * gs, outPlane + (y + j) * rowStride, stream)
                        }
                        y += 2
                    }
                }
            }
        }
    }
    /// The encoder's output gradient for rows y, y + 1 of plane `item`: y = x·scale + shift is
    /// recomputed, the skip's gradient gated by y > 0, the pooled map's routed to each window's
    /// maximum and added; into two rows of `scratch` (`rowStride` apart), also holding y.
    @inline(__always)
    static func encoderGradientRows(_ item: Int, _ y: Int, _ s: Shape, x xd: UnsafeMutablePointer<Float>, scale a: Float, shift b: Float,
                                    rectified: UnsafePointer<Float>?, pooled: UnsafePointer<Float>?,
                                    scratch yRows: UnsafeMutablePointer<Float>, rowStride ws: Int) -> (UnsafePointer<Float>, Int) {
        let aV = FloatVector(repeating: a), bV = FloatVector(repeating: b)
        let gRows = yRows + 2 * ws
        let count = min(2, s.h - y)
        for j in 0..<count {
            let xr = xd + item * s.plane + (y + j) * s.w, yr = yRows + j * ws, gr = gRows + j * ws
            let rr = rectified.map { $0 + item * s.plane + (y + j) * s.w }
            var k = 0
            while k + vectorWidth <= s.w {
                let v = loadVector(xr + k) * aV + bV
                storeVector(v, yr + k)
                var g = rr.map { loadVector($0 + k) } ?? .zero
                g.replace(with: 0, where: v .<= FloatVector.zero)
                storeVector(g, gr + k)
                k += vectorWidth
            }
            while k < s.w {
                let v = xr[k] * a + b
                yr[k] = v
                gr[k] = v > 0 ? rr?[k] ?? 0 : 0
                k += 1
            }
        }
        if count == 2, let pooled {
            let ow = s.w / 2
            PoolingKernels.maxPool2x2BackwardRows(UnsafePointer(yRows), UnsafePointer(yRows + ws),
                                                  pooled + item * (s.h / 2) * ow + (y / 2) * ow,
                                                  into: gRows, gRows + ws, count: ow, accumulate: true)
        }
        return (UnsafePointer(gRows), ws)
    }

    /// Pass 1: per channel Σg and Σg·x̂ (g after the ReLU gate and dropout), per (image, channel)
    /// plane, the planes' sums added per channel in image order (independent of the thread count).
    ///
    /// At batch 20 on 512² tiles these passes take about 18 ms of a 420 ms step (AMD EPYC fam 25
    /// mod 17, AVX-512, 2 threads): 13 for the batch norms after convolutions (4.7 for up1_conv1's),
    /// 5 for the encoders'. Tried and not kept there: gathering a decoder's first batch norm's sums
    /// in the fused backward of the convolution that reads its output, as that convolution forms
    /// the gradient (each input-gradient row summed against the batch norm's input while in L1, in
    /// bands matched so the sums were the same bits). up1_conv1's backward lost its pass (38.2 ->
    /// 34.8 ms), but up1_conv2's, already busy with its own kernels, grew by more (31.7 -> 39.0 ms:
    /// the batch norm's input read and the dropout mask hashed there), and the same at every level;
    /// steps alternating in one process, 3 runs of 20: 0.997, 1.011, 1.018 of the time without.
    static func gradientSums(_ s: Shape, x xd: UnsafeMutablePointer<Float>, _ n: Normalisation, reluAfter: Bool,
                             dropout: DropoutMask?, _ gradientRows: (Int, Int, Int) -> (UnsafePointer<Float>, Int),
                             pool: ThreadPool) -> (sumDy: [Double], sumDyXhat: [Double]) {
        let mean = n.mean, invStd = n.invStd, scale = n.scale, shift = n.shift
        let drop = dropout != nil, mask = dropout ?? DropoutMask(rate: 0, seed: 0)
        let planeSums = UnsafeMutablePointer<Double>.allocate(capacity: 2 * s.n * s.c)
        defer { planeSums.deallocate() }
        pool.parallelFor(s.n * s.c) { item, thread in
            let c = item % s.c
            let mu = mean[c], inv = invStd[c]
            let muV = FloatVector(repeating: mu), scaleV = FloatVector(repeating: scale[c])
            let shiftV = FloatVector(repeating: shift[c])
            let xp = xd + item * s.plane
            let key = drop ? mask.planeKey(item) : 0
            var va = FloatVector.zero, vb = FloatVector.zero
            var sa = 0.0, sb = 0.0
            var y = 0
            while y < s.h {
                let (g0, gs) = gradientRows(item, y, thread)
                for j in 0..<min(2, s.h - y) {
                    let xr = xp + (y + j) * s.w, gr = g0 + j * gs, at = (y + j) * s.w
                    // One loop per combination of the flags, each with only the constants it
                    // needs in registers (one loop for all four kept the accumulators on the stack).
                    let k: Int
                    switch (drop, reluAfter) {
                    case (false, false): k = rowSums(xr, gr, s.w, at, muV, scaleV, shiftV, mask, key, false, false, &va, &vb)
                    case (false, true): k = rowSums(xr, gr, s.w, at, muV, scaleV, shiftV, mask, key, false, true, &va, &vb)
                    case (true, false): k = rowSums(xr, gr, s.w, at, muV, scaleV, shiftV, mask, key, true, false, &va, &vb)
                    case (true, true): k = rowSums(xr, gr, s.w, at, muV, scaleV, shiftV, mask, key, true, true, &va, &vb)
                    }
                    for k in k..<s.w {
                        var g = drop ? mask.apply(gr[k], key: key, index: at + k) : gr[k]
                        if reluAfter && xr[k] * scale[c] + shift[c] <= 0 { g = 0 }
                        sa += Double(g); sb += Double(g * (xr[k] - mu))
                    }
                }
                y += 2
            }
            planeSums[2 * item] = sa + Double(laneSum(va))
            planeSums[2 * item + 1] = (sb + Double(laneSum(vb))) * Double(inv)
        }
        var sumDy = [Double](repeating: 0, count: s.c), sumDyXhat = sumDy
        for c in 0..<s.c {
            var a = 0.0, b = 0.0
            for i in 0..<s.n { a += planeSums[2 * (i * s.c + c)]; b += planeSums[2 * (i * s.c + c) + 1] }
            sumDy[c] = a; sumDyXhat[c] = b
        }
        return (sumDy, sumDyXhat)
    }

    /// Pass 1's whole vectors of one row: va += g, vb += g · (x − μ), g gated by the dropout mask
    /// and the ReLU of x · scale + shift as the flags say. Returns the first column left.
    @inline(__always)
    static func rowSums(_ xr: UnsafePointer<Float>, _ gr: UnsafePointer<Float>, _ w: Int, _ at: Int, _ muV: FloatVector,
                        _ scaleV: FloatVector, _ shiftV: FloatVector, _ mask: DropoutMask, _ key: UInt32, _ drop: Bool,
                        _ relu: Bool, _ va: inout FloatVector, _ vb: inout FloatVector) -> Int {
        var a = va, b = vb, k = 0
        while k + vectorWidth <= w {
            let xv = loadVector(xr + k)
            var g = loadVector(gr + k)
            if drop { g = mask.apply(g, key: key, vectorAt: at + k) }
            if relu { g.replace(with: 0, where: xv * scaleV + shiftV .<= FloatVector.zero) }
            a += g; b = b.addingProduct(g, xv - muV)
            k += vectorWidth
        }
        va = a; vb = b
        return k
    }

    /// k1 (m g − Σg − x̂ Σg·x̂) with x̂ = (x − μ) / σ and k1 = γ / (σ m), as g · A + (x · B + C):
    /// (A, B, C) per channel.
    static func dxCoefficients(_ s: Shape, _ n: Normalisation, sumDy: [Double], sumDyXhat: [Double]) -> [Float] {
        let mean = n.mean, invStd = n.invStd, gamma = n.gamma
        let m = Float(s.n * s.plane)
        var coefficients = [Float](repeating: 0, count: 3 * s.c)
        for c in 0..<s.c {
            let inv = invStd[c], mu = mean[c], k1 = gamma[c] * inv / m
            let sdy = Float(sumDy[c]), sdx = Float(sumDyXhat[c])
            coefficients[3 * c] = k1 * m
            coefficients[3 * c + 1] = -k1 * sdx * inv
            coefficients[3 * c + 2] = k1 * (sdx * inv * mu - sdy)
        }
        return coefficients
    }

    /// Pass 2 for one row: dx = g·A + (x·B + C), g gated by the ReLU of x·scale + shift and by
    /// the dropout mask.
    @inline(__always)
    static func gradientRow(_ item: Int, _ row: Int, _ gr: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ stream: Bool,
                            _ s: Shape, x xd: UnsafeMutablePointer<Float>, scale a: Float, shift b: Float, gA: Float, xB: Float,
                            cC: Float, reluAfter: Bool, dropout: DropoutMask?) {
        let drop = dropout != nil, mask = dropout ?? DropoutMask(rate: 0, seed: 0)
        let aV = FloatVector(repeating: a), bV = FloatVector(repeating: b)
        let gAV = FloatVector(repeating: gA), xBV = FloatVector(repeating: xB), cCV = FloatVector(repeating: cC)
        let key = drop ? mask.planeKey(item) : 0
        let xr = xd + item * s.plane + row * s.w
        // One loop per combination of the flags (see `rowSums`).
        var k: Int
        switch (drop, reluAfter, stream) {
        case (false, false, false): k = dxRow(xr, gr, out, s.w, row * s.w, aV, bV, gAV, xBV, cCV, mask, key, false, false, false)
        case (false, true, false): k = dxRow(xr, gr, out, s.w, row * s.w, aV, bV, gAV, xBV, cCV, mask, key, false, true, false)
        case (true, false, false): k = dxRow(xr, gr, out, s.w, row * s.w, aV, bV, gAV, xBV, cCV, mask, key, true, false, false)
        case (true, true, false): k = dxRow(xr, gr, out, s.w, row * s.w, aV, bV, gAV, xBV, cCV, mask, key, true, true, false)
        case (false, false, true): k = dxRow(xr, gr, out, s.w, row * s.w, aV, bV, gAV, xBV, cCV, mask, key, false, false, true)
        case (false, true, true): k = dxRow(xr, gr, out, s.w, row * s.w, aV, bV, gAV, xBV, cCV, mask, key, false, true, true)
        case (true, false, true): k = dxRow(xr, gr, out, s.w, row * s.w, aV, bV, gAV, xBV, cCV, mask, key, true, false, true)
        case (true, true, true): k = dxRow(xr, gr, out, s.w, row * s.w, aV, bV, gAV, xBV, cCV, mask, key, true, true, true)
        }
        while k < s.w {
            let gk = drop ? mask.apply(gr[k], key: key, index: row * s.w + k) : gr[k]
            let g = reluAfter && xr[k] * a + b <= 0 ? 0 : gk
            out[k] = g * gA + (xr[k] * xB + cC)
            k += 1
        }
    }

    /// Pass 2's whole vectors of one row (`gradientRow`). Returns the first column left.
    @inline(__always)
    static func dxRow(_ xr: UnsafePointer<Float>, _ gr: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ w: Int,
                      _ at: Int, _ aV: FloatVector, _ bV: FloatVector, _ gAV: FloatVector, _ xBV: FloatVector, _ cCV: FloatVector,
                      _ mask: DropoutMask, _ key: UInt32, _ drop: Bool, _ relu: Bool, _ stream: Bool) -> Int {
        var k = 0
        while k + vectorWidth <= w {
            let xv = loadVector(xr + k)
            var g = loadVector(gr + k)
            if drop { g = mask.apply(g, key: key, vectorAt: at + k) }
            if relu { g.replace(with: 0, where: xv * aV + bV .<= FloatVector.zero) }
            storeVector(cCV.addingProduct(xv, xBV).addingProduct(g, gAV), out + k, streaming: stream)
            k += vectorWidth
        }
        return k
    }

    /// What a convolution's backward needs to run fused with the batch-norm gradient's second
    /// pass: the gradient of the convolution's output then exists only a band of rows at a time,
    /// in a per-thread scratch, read there by the input-gradient and weight-gradient kernels
    /// instead of being written out and read back twice. It holds every buffer the fused kernel
    /// reads or adds to, so they live as long as the value does, whoever else lets go of them.
    public struct ConvolutionBackward {
        /// The convolution's input, as its forward read it.
        public let input: PaddedPlanes
        /// `Conv3x3.PackedWeights.transposedFlipped` of the weights and the input gradient to
        /// write, when the input needs one.
        public let inputGradient: (weights: Conv3x3.PackedWeights, into: Tensor)?
        /// Added to: dW (cout, cin, 3, 3) and dB (cout values).
        public let dW: Tensor, dB: Tensor?
        /// A decoder convolution's upsampled part (`UpsampledConv3x3`): its map before
        /// upsampling, the weights and gradient for that map when it needs one, and its weight
        /// gradient (cout, map channels, 3, 3) to add to. Its box sums are formed per band too.
        public let upsampled: Upsampled?

        public struct Upsampled {
            public let low: PaddedPlanes
            public let inputGradient: (weights: UpsampledConv3x3.DataWeights, into: Tensor)?
            public let dW: Tensor
            public init(low: PaddedPlanes, inputGradient: (weights: UpsampledConv3x3.DataWeights, into: Tensor)?, dW: Tensor) {
                self.low = low; self.inputGradient = inputGradient; self.dW = dW
            }
        }

        public init(input: PaddedPlanes, inputGradient: (weights: Conv3x3.PackedWeights, into: Tensor)?,
                    dW: Tensor, dB: Tensor?, upsampled: Upsampled? = nil) {
            self.input = input; self.inputGradient = inputGradient; self.dW = dW; self.dB = dB; self.upsampled = upsampled
        }

        /// Checks every part against the batch norm's shape `s` (the convolution's output).
        func validate(_ s: Shape) {
            let cin = input.channels, cout = s.c
            require(input.n == s.n && input.height == s.h && input.width == s.w, "convolution input does not match \(s)")
            require(dW.count == cout * cin * 9 && (dB?.count ?? cout) == cout,
                    "weight gradient of \(dW.count), bias gradient of \(dB?.count ?? 0) values for \(cin) -> \(cout) channels")
            if let (wT, dx) = inputGradient {
                require(dx.shape == Shape(s.n, cin, s.h, s.w) && wT.cin == cout && wT.cout == cin,
                        "input gradient \(dx.shape), transposed weights \(wT.cout)x\(wT.cin) for output \(s) from \(cin) channels")
            }
            if let up = upsampled {
                let cu = up.low.channels
                require(s.h % 2 == 0 && s.w % 2 == 0 && up.low.n == s.n && up.low.height == s.h / 2 && up.low.width == s.w / 2
                            && up.dW.count == cout * cu * 9, "upsampled part does not match \(s)")
                if let (dw, dL) = up.inputGradient {
                    require(dw.cout == cout && dw.cin == cu && dL.shape == Shape(s.n, cu, s.h / 2, s.w / 2),
                            "upsampled part: weights \(dw.cout)x\(dw.cin), map gradient \(dL.shape) for output \(s)")
                }
            }
        }
    }

    /// Rows of 32 per work item (plus one above and below for the input gradient's stencil).
    /// Measured on AMD EPYC fam 26 mod 2 (Zen 5), AVX-512, 2 threads, batch-20 training steps,
    /// builds alternating (4 rounds): 16 rows 0.289 s, 32 rows 0.280 s, 64 rows 0.279 s. Also
    /// tried and not kept: prefetching the next item's rows of x and the output gradient (and of
    /// the convolution's input) while this item's input gradient is computed, paired against
    /// this (6 + 8 rounds, and 8 with the input): median step ratios 0.985, 0.993 and 1.010,
    /// each within its rounds' spread (single rounds 0.92-1.10).
    static let fusedBand = 32

    /// The sizes one band of the fused backward works with.
    struct FusedBand {
        let s: Shape, cin: Int, cout: Int
        /// Scratch of the band's output-gradient rows: row stride, plane stride.
        let rs: Int, ps: Int
        /// The upsampled part's low-resolution width, box-sum row stride, row and plane strides.
        let lw: Int, pws: Int, prs: Int, pps: Int
        let wCount: Int, hasBias: Bool
        let streamX: Bool, streamL: Bool

        /// The band's output-gradient rows in the scratch `sc` (rows y0 − 1 … y1 at scratch rows
        /// 0 … y1 − y0 + 1) as planes whose row y is the image's row y.
        func gradient(_ sc: UnsafeMutablePointer<Float>, band y0: Int) -> PlaneView {
            PlaneView(sc + (1 - y0) * rs + vectorWidth, planeStride: ps, rowStride: rs)
        }

        /// The band's box sums in `bs` (box-sum rows j = y0 … y1 at rows 0 … y1 − y0) as planes
        /// whose row j is the whole map's.
        func boxSums(_ bs: UnsafeMutablePointer<Float>, band y0: Int) -> PlaneView {
            PlaneView(bs + vectorWidth - y0 * prs, planeStride: pps, rowStride: prs)
        }
    }

    /// The second pass fused with the convolution's backward (see `ConvolutionBackward`), per
    /// (image, band of rows): the band's output-gradient rows for every channel into a scratch
    /// of padded rows, then the input gradient's rows and the weight-gradient tiles from it, by
    /// the same row and band routines the plain kernels run (`Conv3x3.PackedWeights.convolveRow`,
    /// `Conv3x3.weightGradientRows`, `UpsampledConv3x3.boxSumRows`, `DataWeights.gradientRow`,
    /// `UpsampledConv3x3.weightGradientRows`). Weight sums per item, added in item order.
    static func backwardThroughConvolution(_ f: ConvolutionBackward, _ s: Shape,
                                           _ gradientRows: (Int, Int, Int) -> (UnsafePointer<Float>, Int),
                                           _ writeRow: (Int, Int, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Bool) -> Void,
                                           pool: ThreadPool) {
        f.validate(s)
        let vw = vectorWidth, cin = f.input.channels, cout = s.c
        let band = fusedBand, bands = (s.h + band - 1) / band
        let rs = roundUp(max(s.w, 1), vw) + 2 * vw, ps = (band + 2) * rs
        let scratch = Tensor(Shape(pool.threadCount, 1, cout, ps), zeroed: false)
        // The upsampled part: box-sum rows of the band (2·cout planes of band + 1 rows, then the
        // column-pair sums), its weight sums after the direct part's.
        let up = f.upsampled, cu = up?.low.channels ?? 0, lw = s.w / 2
        let pws = roundUp(lw + 1, vw), prs = pws + 2 * vw, pps = (band + 1) * prs
        let boxScratch = up.map { _ in Tensor(Shape(pool.threadCount, 1, 2 * cout, pps + 2 * pws), zeroed: false) }
        let wCount = cout * cin * 9
        let partial = PartialSums(items: s.n * bands, stride: wCount + cout + cout * cu * 9)
        let dx = f.inputGradient?.into, wT = f.inputGradient?.weights
        let dL = up?.inputGradient?.into, dataWeights = up?.inputGradient?.weights
        let geometry = FusedBand(
            s: s, cin: cin, cout: cout, rs: rs, ps: ps, lw: lw, pws: pws, prs: prs, pps: pps, wCount: wCount, hasBias: f.dB != nil,
            streamX: dx.map { streams($0.count, $0.data, rowStride: s.w) && s.plane % vw == 0 } ?? false,
            streamL: dL.map { streams($0.count, $0.data, rowStride: lw) && $0.shape.plane % vw == 0 } ?? false)
        pool.parallelFor(s.n * bands) { item, thread in
            defer { if geometry.streamX || geometry.streamL { storeFence() } }
            let i = item / bands, y0 = (item % bands) * band, y1 = min(s.h, y0 + band)
            let sc = scratch.data + thread * cout * ps
            fillGradientBand(i, y0, y1, thread, into: sc, geometry, gradientRows, writeRow)
            let g = geometry.gradient(sc, band: y0)
            if let dx, let wT {
                let out = PlaneView.of(dx, image: i)
                for y in y0..<y1 {
                    for ob in 0..<wT.blocks { wT.convolveRow(y, block: ob, input: g, into: out, width: s.w, stream: geometry.streamX) }
                }
            }
            let acc = partial.take(item)
            Conv3x3.weightGradientRows(x: f.input.view(image: i), channels: cin, dY: g, channels: cout, rows: y0, y1,
                                       width: s.w, bias: geometry.hasBias, into: acc)
            if let up, let boxScratch {
                let bs = boxScratch.data + thread * 2 * cout * (pps + 2 * pws)
                let sums = geometry.boxSums(bs, band: y0)
                for o in 0..<cout {
                    UpsampledConv3x3.boxSumRows(UnsafePointer(g.row(o, 0)), rs, rows: y0...y1, lw: lw, into: sums.row(2 * o, 0),
                                                sums.row(2 * o + 1, 0), rowStride: prs, pairs: bs + 2 * cout * pps, ws: pws,
                                                streaming: false)
                }
                let r0 = y0 / 2, r1 = y1 / 2
                if let dL, let dataWeights {
                    let out = PlaneView.of(dL, image: i)
                    for r in r0..<r1 {
                        for cb in 0..<dataWeights.blocks {
                            dataWeights.gradientRow(r, block: cb, boxSums: sums, into: out, width: lw, stream: geometry.streamL)
                        }
                    }
                }
                UpsampledConv3x3.weightGradientRows(low: up.low.view(image: i), channels: cu, boxSums: sums, outputs: cout,
                                                    rows: r0, r1, width: lw, into: acc + wCount + cout)
            }
        }
        partial.add(count: wCount, into: f.dW.data, pool: pool)
        if let dB = f.dB { partial.add(offset: wCount, count: cout, into: dB.data, pool: pool) }
        if let up { partial.add(offset: wCount + cout, count: cout * cu * 9, into: up.dW.data, pool: pool) }
    }

    /// Output-gradient rows y0 − 1 … y1 at scratch rows 0 … y1 − y0 + 1, zero outside the image
    /// and in the side columns. Row pairs start at even rows (the encoder's source forms two rows
    /// at a time).
    @inline(__always)
    static func fillGradientBand(_ i: Int, _ y0: Int, _ y1: Int, _ thread: Int, into sc: UnsafeMutablePointer<Float>, _ g: FusedBand,
                                 _ gradientRows: (Int, Int, Int) -> (UnsafePointer<Float>, Int),
                                 _ writeRow: (Int, Int, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Bool) -> Void) {
        let vw = vectorWidth, s = g.s, rs = g.rs
        for c in 0..<g.cout {
            let plane = sc + c * g.ps
            var p = y0 - 2
            while p <= y1 {
                let pair = p >= 0 && p < s.h ? gradientRows(i * g.cout + c, p, thread) : nil
                for j in 0..<2 {
                    let yy = p + j
                    guard yy >= y0 - 1 && yy <= y1 else { continue }
                    let row = plane + (yy - y0 + 1) * rs
                    if yy < 0 || yy >= s.h {
                        var k = 0
                        while k < rs { storeVector(.zero, row + k); k += vw }
                        continue
                    }
                    zeroSides(row, width: s.w, rowStride: rs)
                    writeRow(i * g.cout + c, yy, pair!.0 + j * pair!.1, row + vw, false)
                }
                p += 2
            }
        }
    }
}

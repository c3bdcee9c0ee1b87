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
                var k = 0
                while k + vectorWidth <= s.w {
                    var v = vmax(loadVector(xr + k) * aV + bV, floorV)
                    if drop { v = mask.apply(v, key: key, vectorAt: y * s.w + k) }
                    storeVector(v, q + k, streaming: stream)
                    k += vectorWidth
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

    /// Gradients of y = γ (x − μ) / σ + β with batch statistics μ, σ = sqrt(var + ε), or, with
    /// `reluAfter`, of max(that, 0) (the ReLU's mask is recomputed from x, so the BN output need
    /// not be kept). With `dropout` as well, of dropout(max(that, 0)), the mask recomputed too.
    /// Returns dx and accumulates dγ, dβ.
    /// `scale` and `shift` are the forward's y = scale · x + shift, so the recomputed ReLU mask
    /// matches the forward bit for bit.
    public static func backward(x: Tensor, dy: Tensor, mean: [Float], invStd: [Float], gamma: [Float],
                                scale: [Float], shift: [Float], reluAfter: Bool = false, dropout: DropoutMask? = nil,
                                dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>,
                                pool: ThreadPool = .shared) -> Tensor {
        let dx = Tensor(x.shape, zeroed: false)
        backward(x: x, dy: dy, mean: mean, invStd: invStd, gamma: gamma, scale: scale, shift: shift, reluAfter: reluAfter,
                 dropout: dropout, dGamma: dGamma, dBeta: dBeta, out: dx.data, planeStride: x.shape.plane, rowStride: x.shape.w, pool: pool)
        return dx
    }

    /// The same, writing dx into the interior of padded planes: the input gradient of the
    /// convolution that produced x, ready for its backward kernels without another copy.
    public static func backward(x: Tensor, dy: Tensor, mean: [Float], invStd: [Float], gamma: [Float],
                                scale: [Float], shift: [Float], reluAfter: Bool = false, dropout: DropoutMask? = nil,
                                dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>,
                                into dx: PaddedPlanes, pool: ThreadPool = .shared) {
        require(dx.n == x.shape.n && dx.channels == x.shape.c && dx.height == x.shape.h && dx.width == x.shape.w, "gradient planes \(dx.n)x\(dx.channels)x\(dx.height)x\(dx.width) for input \(x.shape)")
        backward(x: x, dy: dy, mean: mean, invStd: invStd, gamma: gamma, scale: scale, shift: shift, reluAfter: reluAfter,
                 dropout: dropout, dGamma: dGamma, dBeta: dBeta, out: dx.origin(0, 0), planeStride: dx.planeStride, rowStride: dx.rowStride,
                 borders: dx, pool: pool)
    }

    /// The gradient of the encoder's `affine(_:scale:shift:rectifiedInto:pooledInto:)`, written
    /// into the interior of padded planes: y's gradient arrives as the skip connection's (of
    /// max(y, 0), gated here by y > 0) plus the pooled map's (routed to each window's first
    /// maximum of y, as `PoolingKernels.maxPool2x2Backward` does); y is recomputed from x two rows
    /// at a time and neither gradient is laid out at full size. Either gradient may be nil (zero).
    /// Accumulates dγ, dβ.
    public static func backward(x: Tensor, rectifiedGradient: Tensor?, pooledGradient: Tensor?, mean: [Float], invStd: [Float],
                                gamma: [Float], scale: [Float], shift: [Float],
                                dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>,
                                into dx: PaddedPlanes, pool: ThreadPool = .shared) {
        let s = x.shape
        require(dx.n == s.n && dx.channels == s.c && dx.height == s.h && dx.width == s.w, "gradient planes \(dx.n)x\(dx.channels)x\(dx.height)x\(dx.width) for input \(s)")
        if let r = rectifiedGradient { require(r.shape == s, "rectified gradient \(r.shape) for \(s)") }
        if let g = pooledGradient {
            require(g.shape == Shape(s.n, s.c, s.h / 2, s.w / 2), "pooled gradient \(g.shape) for \(s)")
        }
        backward(x: x, source: .rectifiedAndPooled(rectifiedGradient, pooledGradient), mean: mean, invStd: invStd,
                 gamma: gamma, scale: scale, shift: shift, reluAfter: false, dropout: nil, dGamma: dGamma, dBeta: dBeta,
                 out: dx.origin(0, 0), planeStride: dx.planeStride, rowStride: dx.rowStride, borders: dx, pool: pool)
    }

    /// The gradient of a convolution → batch norm (→ ReLU → dropout) with the convolution's
    /// backward fused into the second pass (`ConvolutionBackward`): the convolution's output
    /// gradient is never written out.
    public static func backward(x: Tensor, dy: Tensor, mean: [Float], invStd: [Float], gamma: [Float],
                                scale: [Float], shift: [Float], reluAfter: Bool = false, dropout: DropoutMask? = nil,
                                dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>,
                                throughConvolution convolution: ConvolutionBackward, pool: ThreadPool = .shared) {
        require(dy.shape == x.shape, "batch-norm output gradient \(dy.shape) for \(x.shape)")
        // No output gradient is written (`out` goes unused): the convolution reads it in cache.
        backward(x: x, source: .plain(dy), mean: mean, invStd: invStd, gamma: gamma, scale: scale, shift: shift,
                 reluAfter: reluAfter, dropout: dropout, dGamma: dGamma, dBeta: dBeta, out: x.data, planeStride: x.shape.plane,
                 rowStride: x.shape.w, throughConvolution: convolution, pool: pool)
    }

    /// The encoder's gradient (`backward(x:rectifiedGradient:pooledGradient:…into:)`) with the
    /// convolution's backward fused into the second pass.
    public static func backward(x: Tensor, rectifiedGradient: Tensor?, pooledGradient: Tensor?, mean: [Float], invStd: [Float],
                                gamma: [Float], scale: [Float], shift: [Float],
                                dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>,
                                throughConvolution convolution: ConvolutionBackward, pool: ThreadPool = .shared) {
        let s = x.shape
        if let r = rectifiedGradient { require(r.shape == s, "rectified gradient \(r.shape) for \(s)") }
        if let g = pooledGradient {
            require(g.shape == Shape(s.n, s.c, s.h / 2, s.w / 2), "pooled gradient \(g.shape) for \(s)")
        }
        // No output gradient is written (`out` goes unused): the convolution reads it in cache.
        backward(x: x, source: .rectifiedAndPooled(rectifiedGradient, pooledGradient), mean: mean, invStd: invStd,
                 gamma: gamma, scale: scale, shift: shift, reluAfter: false, dropout: nil, dGamma: dGamma, dBeta: dBeta,
                 out: x.data, planeStride: s.plane, rowStride: s.w, throughConvolution: convolution, pool: pool)
    }

    /// Where a batch norm's output gradient comes from.
    enum GradientSource {
        case plain(Tensor)
        /// The encoder's: of max(y, 0) and of maxpool(y); see `backward(x:rectifiedGradient:…)`.
        case rectifiedAndPooled(Tensor?, Tensor?)
    }

    static func backward(x: Tensor, dy: Tensor, mean: [Float], invStd: [Float], gamma: [Float],
                         scale: [Float], shift: [Float], reluAfter: Bool, dropout: DropoutMask?,
                         dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>,
                         out dd: UnsafeMutablePointer<Float>, planeStride: Int, rowStride: Int, borders: PaddedPlanes? = nil,
                         pool: ThreadPool) {
        require(dy.shape == x.shape, "batch-norm output gradient \(dy.shape) for \(x.shape)")
        backward(x: x, source: .plain(dy), mean: mean, invStd: invStd, gamma: gamma, scale: scale, shift: shift,
                 reluAfter: reluAfter, dropout: dropout, dGamma: dGamma, dBeta: dBeta, out: dd, planeStride: planeStride,
                 rowStride: rowStride, borders: borders, pool: pool)
    }

    /// Both passes of the batch-norm gradient (the sums Σg and Σg·x̂ over the batch, then dx),
    /// reading the output gradient g two rows at a time from `source`.
    static func backward(x: Tensor, source: GradientSource, mean: [Float], invStd: [Float], gamma: [Float],
                         scale: [Float], shift: [Float], reluAfter: Bool, dropout: DropoutMask?,
                         dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>,
                         out dd: UnsafeMutablePointer<Float>, planeStride: Int, rowStride: Int, borders: PaddedPlanes? = nil,
                         throughConvolution fused: ConvolutionBackward? = nil, pool: ThreadPool) {
        let s = x.shape
        let mask = dropout ?? DropoutMask(rate: 0, seed: 0)
        let xd = x.data
        // Rows y and y + 1 (y even) of plane `item`'s output gradient, and their stride: the
        // gradient itself, or the encoder's two gradients combined in a per-thread scratch.
        let ws = roundUp(max(s.w, 1), vectorWidth)
        var scratch: Tensor? = nil
        if case .rectifiedAndPooled = source { scratch = Tensor(Shape(pool.threadCount, 1, 1, 4 * ws), zeroed: false) }
        // Plain pointers, taken once: unwrapping the tensors per row cost a retain and a release
        // each, on reference counts both threads share.
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
        let (sumDy, sumDyXhat) = gradientSums(s, x: xd, mean: mean, invStd: invStd, scale: scale, shift: shift,
                                              reluAfter: reluAfter, dropout: dropout, gradientRows, pool: pool)
        for c in 0..<s.c { dGamma[c] += Float(sumDyXhat[c]); dBeta[c] += Float(sumDy[c]) }
        let coefficients = dxCoefficients(s, mean: mean, invStd: invStd, gamma: gamma, sumDy: sumDy, sumDyXhat: sumDyXhat)
        /// dx for row `row` of plane `item` from its output-gradient row `gr`, into `out`.
        func writeRow(_ item: Int, _ row: Int, _ gr: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ stream: Bool) {
            let c = item % s.c
            gradientRow(item, row, gr, out, stream, s, x: xd, scale: scale[c], shift: shift[c], gA: coefficients[3 * c],
                        xB: coefficients[3 * c + 1], cC: coefficients[3 * c + 2], reluAfter: reluAfter,
                        dropout: dropout == nil ? nil : mask)
        }
        if let fused {
            backwardThroughConvolution(fused, s, gradientRows, writeRow, pool: pool)
            return
        }
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
    static func gradientSums(_ s: Shape, x xd: UnsafeMutablePointer<Float>, mean: [Float], invStd: [Float], scale: [Float],
                             shift: [Float], reluAfter: Bool, dropout: DropoutMask?,
                             _ gradientRows: (Int, Int, Int) -> (UnsafePointer<Float>, Int),
                             pool: ThreadPool) -> (sumDy: [Double], sumDyXhat: [Double]) {
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
                    var k = 0
                    while k + vectorWidth <= s.w {
                        let xv = loadVector(xr + k)
                        var g = loadVector(gr + k)
                        if drop { g = mask.apply(g, key: key, vectorAt: at + k) }
                        if reluAfter { g.replace(with: 0, where: xv * scaleV + shiftV .<= FloatVector.zero) }
                        va += g; vb = vb.addingProduct(g, xv - muV)
                        k += vectorWidth
                    }
                    while k < s.w {
                        var g = drop ? mask.apply(gr[k], key: key, index: at + k) : gr[k]
                        if reluAfter && xr[k] * scale[c] + shift[c] <= 0 { g = 0 }
                        sa += Double(g); sb += Double(g * (xr[k] - mu)); k += 1
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

    /// k1 (m g − Σg − x̂ Σg·x̂) with x̂ = (x − μ) / σ and k1 = γ / (σ m), as g · A + (x · B + C):
    /// (A, B, C) per channel.
    static func dxCoefficients(_ s: Shape, mean: [Float], invStd: [Float], gamma: [Float], sumDy: [Double],
                               sumDyXhat: [Double]) -> [Float] {
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
        var k = 0
        while k + vectorWidth <= s.w {
            let xv = loadVector(xr + k)
            var g = loadVector(gr + k)
            if drop { g = mask.apply(g, key: key, vectorAt: row * s.w + k) }
            if reluAfter { g.replace(with: 0, where: xv * aV + bV .<= FloatVector.zero) }
            storeVector(cCV.addingProduct(xv, xBV).addingProduct(g, gAV), out + k, streaming: stream)
            k += vectorWidth
        }
        while k < s.w {
            let gk = drop ? mask.apply(gr[k], key: key, index: row * s.w + k) : gr[k]
            let g = reluAfter && xr[k] * a + b <= 0 ? 0 : gk
            out[k] = g * gA + (xr[k] * xB + cC)
            k += 1
        }
    }

    /// What a convolution's backward needs to run fused with the batch-norm gradient's second
    /// pass: the gradient of the convolution's output then exists only a band of rows at a time,
    /// in a per-thread scratch, read there by the input-gradient and weight-gradient kernels
    /// instead of being written out and read back twice.
    public struct ConvolutionBackward {
        /// The convolution's input, as its forward read it.
        public let input: PaddedPlanes
        /// `Conv3x3.PackedWeights.transposedFlipped` of the weights and the input gradient to
        /// write, when the input needs one.
        public let inputGradient: (weights: Conv3x3.PackedWeights, into: Tensor)?
        /// Added to: dW (cout, cin, 3, 3) and dB (cout).
        public let dW: UnsafeMutablePointer<Float>, dB: UnsafeMutablePointer<Float>?
        /// A decoder convolution's upsampled part (`UpsampledConv3x3`): its map before
        /// upsampling, the weights and gradient for that map when it needs one, and its weight
        /// gradient (cout, map channels, 3, 3) to add to. Its box sums are formed per band too.
        public let upsampled: Upsampled?

        public struct Upsampled {
            public let low: PaddedPlanes
            public let inputGradient: (weights: UpsampledConv3x3.DataWeights, into: Tensor)?
            public let dW: UnsafeMutablePointer<Float>
            public init(low: PaddedPlanes, inputGradient: (weights: UpsampledConv3x3.DataWeights, into: Tensor)?,
                        dW: UnsafeMutablePointer<Float>) {
                self.low = low; self.inputGradient = inputGradient; self.dW = dW
            }
        }

        public init(input: PaddedPlanes, inputGradient: (weights: Conv3x3.PackedWeights, into: Tensor)?,
                    dW: UnsafeMutablePointer<Float>, dB: UnsafeMutablePointer<Float>?, upsampled: Upsampled? = nil) {
            self.input = input; self.inputGradient = inputGradient; self.dW = dW; self.dB = dB; self.upsampled = upsampled
        }
    }

    /// Rows of 32 per work item (plus one above and below for the input gradient's stencil).
    static let fusedBand = 32

    /// The sizes and buffers one band of the fused backward works with.
    struct FusedBand {
        let s: Shape, cin: Int, cout: Int
        /// Scratch of the band's output-gradient rows: row stride, plane stride.
        let rs: Int, ps: Int
        /// The upsampled part's low-resolution width, box-sum row stride, row and plane strides.
        let lw: Int, pws: Int, prs: Int, pps: Int
        let wCount: Int, hasBias: Bool
        let xBase: UnsafePointer<Float>, xps: Int, xrs: Int
        let streamX: Bool, streamL: Bool
    }

    /// The second pass fused with the convolution's backward (see `ConvolutionBackward`), per
    /// (image, band of rows): the band's output-gradient rows for every channel into a scratch
    /// of padded rows, then the input gradient's rows and the weight-gradient tiles from it.
    /// Weight sums per item, added in item order.
    static func backwardThroughConvolution(_ f: ConvolutionBackward, _ s: Shape,
                                           _ gradientRows: (Int, Int, Int) -> (UnsafePointer<Float>, Int),
                                           _ writeRow: (Int, Int, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Bool) -> Void,
                                           pool: ThreadPool) {
        let vw = vectorWidth, cin = f.input.channels, cout = s.c
        require(f.input.n == s.n && f.input.height == s.h && f.input.width == s.w, "convolution input does not match \(s)")
        let band = fusedBand, bands = (s.h + band - 1) / band
        let rs = roundUp(max(s.w, 1), vw) + 2 * vw, ps = (band + 2) * rs
        let scratch = Tensor(Shape(pool.threadCount, 1, cout, ps), zeroed: false)
        // The upsampled part: its map, box-sum rows of the band (2·cout planes of band + 1 rows),
        // its weight sums after the direct part's.
        let up = f.upsampled, cu = up?.low.channels ?? 0, lw = s.w / 2
        if let up {
            require(s.h % 2 == 0 && s.w % 2 == 0 && up.low.n == s.n && up.low.height == s.h / 2 && up.low.width == lw,
                         "upsampled part does not match \(s)")
            if let (dw, dL) = up.inputGradient {
                require(dw.cout == cout && dw.cin == cu && dL.shape == Shape(s.n, cu, s.h / 2, lw), "upsampled part: weights \(dw.cout)x\(dw.cin), map gradient \(dL.shape) for output \(s)")
            }
        }
        let pws = roundUp(lw + 1, vw), prs = pws + 2 * vw, pps = (band + 1) * prs
        let boxScratch = up.map { _ in Tensor(Shape(pool.threadCount, 1, 2 * cout, pps + 2 * pws), zeroed: false) }
        let wCount = cout * cin * 9
        let partial = PartialSums(items: s.n * bands, stride: wCount + cout + cout * cu * 9)
        let dx = f.inputGradient?.into, wT = f.inputGradient?.weights
        if let dx, let wT { require(dx.shape == Shape(s.n, cin, s.h, s.w) && wT.cin == cout && wT.cout == cin, "input gradient \(dx.shape), transposed weights \(wT.cout)x\(wT.cin) for output \(s) from \(cin) channels") }
        let dL = up?.inputGradient?.into
        let geometry = FusedBand(
            s: s, cin: cin, cout: cout, rs: rs, ps: ps, lw: lw, pws: pws, prs: prs, pps: pps, wCount: wCount, hasBias: f.dB != nil,
            xBase: UnsafePointer(f.input.data), xps: f.input.planeStride, xrs: f.input.rowStride,
            streamX: dx.map { streams($0.count, $0.data, rowStride: s.w) && s.plane % vw == 0 } ?? false,
            streamL: dL.map { streams($0.count, $0.data, rowStride: lw) && $0.shape.plane % vw == 0 } ?? false)
        pool.parallelFor(s.n * bands) { item, thread in
            defer { if geometry.streamX || geometry.streamL { storeFence() } }
            let i = item / bands, y0 = (item % bands) * band, y1 = min(s.h, y0 + band)
            let sc = scratch.data + thread * cout * ps
            fillGradientBand(i, y0, y1, thread, into: sc, geometry, gradientRows, writeRow)
            if let dx, let wT { inputGradientBand(i, y0, y1, from: sc, geometry, weights: wT, into: dx) }
            let acc = partial.take(item)
            weightGradientBand(i, y0, y1, from: sc, geometry, into: acc)
            if let up, let boxScratch {
                let bs = boxScratch.data + thread * 2 * cout * (pps + 2 * pws)
                boxSumBand(y0, y1, from: sc, geometry, into: bs)
                upsampledBand(i, y0, y1, boxSums: bs, geometry, up, into: acc + wCount + cout)
            }
        }
        partial.add(count: wCount, into: f.dW, pool: pool)
        if let dB = f.dB { partial.add(offset: wCount, count: cout, into: dB, pool: pool) }
        if let up { partial.add(offset: wCount + cout, count: cout * cu * 9, into: up.dW, pool: pool) }
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
                    storeVector(.zero, row)
                    var k = vw + s.w / vw * vw
                    while k < rs { storeVector(.zero, row + k); k += vw }
                    writeRow(i * g.cout + c, yy, pair!.0 + j * pair!.1, row + vw, false)
                }
                p += 2
            }
        }
    }

    /// The convolution's input gradient for rows y0 ..< y1: the forward row kernel on the band's
    /// gradient rows with the transposed, flipped weights.
    @inline(__always)
    static func inputGradientBand(_ i: Int, _ y0: Int, _ y1: Int, from sc: UnsafeMutablePointer<Float>, _ g: FusedBand,
                                  weights wT: Conv3x3.PackedWeights, into dx: Tensor) {
        let s = g.s
        for y in y0..<y1 {
            for ob in 0..<wT.blocks {
                let o0 = ob * Conv3x3.block
                Conv3x3.convRow(UnsafePointer(sc + (y - y0 + 1) * g.rs + vectorWidth), g.ps, g.rs, g.cout,
                                UnsafePointer(wT.packed.data + ob * g.cout * 9 * Conv3x3.block),
                                UnsafePointer(wT.bias.data + ob * Conv3x3.block), dx.plane(i, o0) + y * s.w, s.plane,
                                min(Conv3x3.block, g.cin - o0), s.w, false, nil, g.streamX)
            }
        }
    }

    /// The band's share of the weight (and bias) gradient: the 3×3 tiles of each (output pair,
    /// input channel), added into the item's partial sums.
    @inline(__always)
    static func weightGradientBand(_ i: Int, _ y0: Int, _ y1: Int, from sc: UnsafeMutablePointer<Float>, _ g: FusedBand,
                                   into acc: UnsafeMutablePointer<Float>) {
        let s = g.s, cin = g.cin, cout = g.cout, rs = g.rs, vw = vectorWidth
        for c in 0..<cin {
            let xo = g.xBase + (i * cin + c) * g.xps + g.xrs + vw
            var o = 0
            while o < cout {
                let o1 = min(o + 1, cout - 1)
                // Gradient row y of channel o at g + y · rs.
                let g0 = UnsafePointer(sc + o * g.ps + (1 - y0) * rs + vw), g1 = UnsafePointer(sc + o1 * g.ps + (1 - y0) * rs + vw)
                let out0 = acc + (o * cin + c) * 9, out1 = o1 != o ? acc + (o1 * cin + c) * 9 : nil
                if c == 0 && g.hasBias {
                    Conv3x3.weightGradTileWithBias(xo, g.xrs, g0, g1, rs, y0, y1, s.w, out0, out1,
                                                   acc + g.wCount + o, o1 != o ? acc + g.wCount + o1 : nil)
                } else {
                    Conv3x3.weightGradTile(xo, g.xrs, g0, g1, rs, y0, y1, s.w, out0, out1)
                }
                o += 2
            }
        }
    }

    /// Box sums P(y, ·) for y = y0 − 1 … y1 − 1 from the band's gradient rows, as
    /// `UpsampledConv3x3.boxSums` lays them out: plane 2o P(y, 2q), plane 2o + 1 P(y, 2q − 1),
    /// row y − y0 + 1, w + 1 columns and zero sides.
    @inline(__always)
    static func boxSumBand(_ y0: Int, _ y1: Int, from sc: UnsafeMutablePointer<Float>, _ g: FusedBand,
                           into bs: UnsafeMutablePointer<Float>) {
        let vw = vectorWidth, pws = g.pws, prs = g.prs, pps = g.pps
        let pairs = bs + 2 * g.cout * pps  // column-pair sums of two gradient rows
        for o in 0..<g.cout {
            let e = bs + 2 * o * pps, d = e + pps
            var above = pairs, below = pairs + 2 * pws
            UpsampledConv3x3.columnPairSums(UnsafePointer(sc + o * g.ps + vw), g.lw, into: above, pws)
            for r in 0..<(y1 - y0 + 1) {
                UpsampledConv3x3.columnPairSums(UnsafePointer(sc + o * g.ps + (r + 1) * g.rs + vw), g.lw, into: below, pws)
                let er = e + r * prs, dr = d + r * prs
                storeVector(.zero, er); storeVector(.zero, dr)
                UpsampledConv3x3.boxSumRow(UnsafePointer(above), UnsafePointer(below), pws, into: er + vw, dr + vw, streaming: false)
                var q = vw + pws
                while q < prs { storeVector(.zero, er + q); storeVector(.zero, dr + q); q += vw }
                swap(&above, &below)
            }
        }
    }

    /// The upsampled part's gradients for the band's low-resolution rows from its box sums: the
    /// map's gradient (when it needs one) and the weight gradient (into `acc`).
    @inline(__always)
    static func upsampledBand(_ i: Int, _ y0: Int, _ y1: Int, boxSums bs: UnsafeMutablePointer<Float>, _ g: FusedBand,
                              _ up: ConvolutionBackward.Upsampled, into acc: UnsafeMutablePointer<Float>) {
        let vw = vectorWidth, prs = g.prs, pps = g.pps, lw = g.lw, cout = g.cout, cu = up.low.channels
        // Row y = 2r + 1 (index 2r + 2 − y0) of output channel 0's even plane for low row r.
        func top(_ r: Int) -> UnsafePointer<Float> { UnsafePointer(bs + (2 * r + 2 - y0) * prs + vw) }
        let r0 = y0 / 2, r1 = y1 / 2
        if let (dw, dL) = up.inputGradient {
            for r in r0..<r1 {
                for cb in 0..<dw.blocks {
                    let c0 = cb * Conv3x3.block, nValid = min(Conv3x3.block, cu - c0)
                    let wp = UnsafePointer(dw.packed.data + cb * cout * 9 * Conv3x3.block)
                    let out = dL.plane(i, c0) + r * lw
                    var q = 0
                    while q + 4 * vw <= lw {
                        UpsampledConv3x3.dataChunk4(top(r) + q, pps, prs, cout, wp, out + q, dL.shape.plane, nValid, g.streamL)
                        q += 4 * vw
                    }
                    while q < lw {
                        UpsampledConv3x3.dataChunk1(top(r) + q, pps, prs, cout, wp, out + q, dL.shape.plane, nValid, min(vw, lw - q))
                        q += vw
                    }
                }
            }
        }
        let low = up.low
        for o in 0..<cout {
            // Rows indexed as in the whole map: row 2r + 2 of these is the band's row 2r + 2 − y0.
            let e = UnsafePointer(bs + 2 * o * pps + vw - y0 * prs), d = e + pps
            var c = 0
            while c < cu {
                let c1 = min(c + 1, cu - 1)
                UpsampledConv3x3.boxSumTile(UnsafePointer(low.origin(i, c)), UnsafePointer(low.origin(i, c1)), low.rowStride,
                                            e, d, prs, r0, r1, lw, acc + (o * cu + c) * 9,
                                            c1 != c ? acc + (o * cu + c1) * 9 : nil)
                c += 2
            }
        }
    }
}

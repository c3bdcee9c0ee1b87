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
    ///
    /// `reluCopy`: padded planes that also receive max(y, 0) in the same pass (a U-Net encoder's
    /// output: plain for pooling, rectified and padded for the decoder's convolution).
    public static func affine(_ x: Tensor, scale: [Float], shift: [Float], relu: Bool = false, dropout: DropoutMask? = nil,
                              into y: Tensor, reluCopy: PaddedPlanes? = nil, pool: ThreadPool = .shared) {
        precondition(y.shape == x.shape, "affine output \(y.shape) for \(x.shape)")
        if let r = reluCopy {
            precondition(r.n == x.shape.n && r.channels == x.shape.c && r.height == x.shape.h && r.width == x.shape.w,
                         "ReLU copy planes do not match \(x.shape)")
        }
        affine(x, scale: scale, shift: shift, relu: relu, dropout: dropout, out: y.data, planeStride: x.shape.plane,
               rowStride: x.shape.w, reluCopy: reluCopy, pool: pool)
    }

    /// The same into the interior of padded planes: the next convolution's input, without a copy.
    public static func affine(_ x: Tensor, scale: [Float], shift: [Float], relu: Bool = false, dropout: DropoutMask? = nil,
                              into y: PaddedPlanes, pool: ThreadPool = .shared) {
        precondition(y.n == x.shape.n && y.channels == x.shape.c && y.height == x.shape.h && y.width == x.shape.w,
                     "affine output planes do not match \(x.shape)")
        affine(x, scale: scale, shift: shift, relu: relu, dropout: dropout, out: y.origin(0, 0), planeStride: y.planeStride,
               rowStride: y.rowStride, borders: y, pool: pool)
    }

    /// `borders`: the padded planes being written, whose borders are zeroed row by row.
    static func affine(_ x: Tensor, scale: [Float], shift: [Float], relu: Bool, dropout: DropoutMask?,
                       out: UnsafeMutablePointer<Float>, planeStride: Int, rowStride: Int, borders: PaddedPlanes? = nil,
                       reluCopy: PaddedPlanes? = nil, pool: ThreadPool) {
        let s = x.shape
        let xd = x.data
        let floor: Float = relu ? 0 : -.infinity
        let drop = dropout != nil, mask = dropout ?? DropoutMask(rate: 0, seed: 0)
        pool.parallelFor(s.n * s.c) { item, _ in
            let c = item % s.c
            let p = xd + item * s.plane, outPlane = out + item * planeStride
            let a = scale[c], b = shift[c]
            let aV = FloatVector(repeating: a), bV = FloatVector(repeating: b), floorV = FloatVector(repeating: floor)
            let key = drop ? mask.planeKey(item) : 0
            for y in 0..<s.h {
                borders?.zeroBorders(plane: item, row: y)
                reluCopy?.zeroBorders(plane: item, row: y)
                let r = reluCopy.map { $0.data + item * $0.planeStride + (y + 1) * $0.rowStride + vectorWidth }
                let xr = p + y * s.w, q = outPlane + y * rowStride
                var k = 0
                while k + vectorWidth <= s.w {
                    var v = vmax(loadVector(xr + k) * aV + bV, floorV)
                    if drop { v = mask.apply(v, key: key, vectorAt: y * s.w + k) }
                    storeVector(v, q + k)
                    if let r { storeVector(vmax(v, .zero), r + k) }
                    k += vectorWidth
                }
                while k < s.w {
                    var v = max(xr[k] * a + b, floor)
                    if drop { v = mask.apply(v, key: key, index: y * s.w + k) }
                    q[k] = v
                    r?[k] = max(v, 0)
                    k += 1
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
        precondition(dx.n == x.shape.n && dx.channels == x.shape.c && dx.height == x.shape.h && dx.width == x.shape.w)
        backward(x: x, dy: dy, mean: mean, invStd: invStd, gamma: gamma, scale: scale, shift: shift, reluAfter: reluAfter,
                 dropout: dropout, dGamma: dGamma, dBeta: dBeta, out: dx.origin(0, 0), planeStride: dx.planeStride, rowStride: dx.rowStride,
                 borders: dx, pool: pool)
    }

    static func backward(x: Tensor, dy: Tensor, mean: [Float], invStd: [Float], gamma: [Float],
                         scale: [Float], shift: [Float], reluAfter: Bool, dropout: DropoutMask?,
                         dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>,
                         out dd: UnsafeMutablePointer<Float>, planeStride: Int, rowStride: Int, borders: PaddedPlanes? = nil,
                         pool: ThreadPool) {
        let s = x.shape
        precondition(dy.shape == s, "batch-norm output gradient \(dy.shape) for \(s)")
        let drop = dropout != nil, mask = dropout ?? DropoutMask(rate: 0, seed: 0)
        let m = Float(s.n * s.plane)
        var sumDy = [Double](repeating: 0, count: s.c), sumDyXhat = sumDy
        let xd = x.data, gd = dy.data
        sumDy.withUnsafeMutableBufferPointer { sd in
            sumDyXhat.withUnsafeMutableBufferPointer { sx in
                let sdp = sd.baseAddress!, sxp = sx.baseAddress!
                pool.parallelFor(s.c) { c, _ in
                    var a = 0.0, b = 0.0
                    let mu = mean[c], inv = invStd[c]
                    let muV = FloatVector(repeating: mu), scaleV = FloatVector(repeating: scale[c])
                    let shiftV = FloatVector(repeating: shift[c])
                    for i in 0..<s.n {
                        let xp = xd + (i * s.c + c) * s.plane, gp = gd + (i * s.c + c) * s.plane
                        let key = drop ? mask.planeKey(i * s.c + c) : 0
                        var va = FloatVector.zero, vb = FloatVector.zero, k = 0
                        while k + vectorWidth <= s.plane {
                            let xv = loadVector(xp + k)
                            var g = loadVector(gp + k)
                            if drop { g = mask.apply(g, key: key, vectorAt: k) }
                            if reluAfter { g.replace(with: 0, where: xv * scaleV + shiftV .<= FloatVector.zero) }
                            va += g; vb = vb.addingProduct(g, xv - muV)
                            k += vectorWidth
                        }
                        var sa = Double(laneSum(va)), sb = Double(laneSum(vb))
                        while k < s.plane {
                            var g = drop ? mask.apply(gp[k], key: key, index: k) : gp[k]
                            if reluAfter && xp[k] * scale[c] + shift[c] <= 0 { g = 0 }
                            sa += Double(g); sb += Double(g * (xp[k] - mu)); k += 1
                        }
                        a += sa; b += sb * Double(inv)
                    }
                    sdp[c] = a; sxp[c] = b
                }
            }
        }
        for c in 0..<s.c { dGamma[c] += Float(sumDyXhat[c]); dBeta[c] += Float(sumDy[c]) }
        pool.parallelFor(s.n * s.c) { item, _ in
            let c = item % s.c
            let xp = xd + item * s.plane, gp = gd + item * s.plane, outPlane = dd + item * planeStride
            let inv = invStd[c], mu = mean[c]
            let k1 = gamma[c] * inv / m
            let sdy = Float(sumDy[c]), sdx = Float(sumDyXhat[c])
            let a = scale[c], b = shift[c]
            let aV = FloatVector(repeating: a), bV = FloatVector(repeating: b)
            // k1 (m g − Σg − x̂ Σg·x̂) with x̂ = (x − μ) / σ, as g · A + (x · B + C).
            let gA = FloatVector(repeating: k1 * m), xB = FloatVector(repeating: -k1 * sdx * inv)
            let cC = FloatVector(repeating: k1 * (sdx * inv * mu - sdy))
            let key = drop ? mask.planeKey(item) : 0
            for y in 0..<s.h {
                borders?.zeroBorders(plane: item, row: y)
                let out = outPlane + y * rowStride, xr = xp + y * s.w, gr = gp + y * s.w
                var k = 0
                while k + vectorWidth <= s.w {
                    let xv = loadVector(xr + k)
                    var g = loadVector(gr + k)
                    if drop { g = mask.apply(g, key: key, vectorAt: y * s.w + k) }
                    if reluAfter { g.replace(with: 0, where: xv * aV + bV .<= FloatVector.zero) }
                    storeVector(cC.addingProduct(xv, xB).addingProduct(g, gA), out + k)
                    k += vectorWidth
                }
                while k < s.w {
                    let gk = drop ? mask.apply(gr[k], key: key, index: y * s.w + k) : gr[k]
                    let g = reluAfter && xr[k] * a + b <= 0 ? 0 : gk
                    out[k] = g * (k1 * m) + (xr[k] * (-k1 * sdx * inv) + k1 * (sdx * inv * mu - sdy))
                    k += 1
                }
            }
        }
    }
}

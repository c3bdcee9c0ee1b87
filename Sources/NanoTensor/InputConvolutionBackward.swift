import Foundation

/// The backward of a U-Net's first stage, conv → encoder batch norm, in one pass over its maps.
///
/// The network's input needs no gradient, so all the convolution's backward has to give is its
/// weight and bias gradients, and those are linear in the gradient dz of its output. With the
/// batch norm's coefficients (`dxCoefficients`) dz = A·g + B·(z − μ) + D (g the output gradient
/// after the ReLU gate and the pooling's routing, D = −γ/σ · Σg / m), so
///
///     dW[c][ci][t] = A_c · Σ g_c · x_t + B_c · Σ (z_c − μ_c) · x_t + D_c · Σ x_t,
///
/// x_t the input shifted by tap t. Every sum on the right is gathered in the pass that gathers
/// the batch norm's own sums (Σg, Σg·(z − μ)), where g and z are in registers anyway, and the
/// input's own tap sums in a small pass over the input alone. The input enters every sum less a
/// constant c per channel (image 0's mean): Σdz·x_t = Σdz·(x_t − c) + c·Σdz, and Σdz is the
/// bias gradient, so the result is the same, but an input far from zero (raw counts in the
/// thousands) no longer makes the first two terms large numbers whose difference is the answer. The two-pass form
/// (`backward(x:rectifiedGradient:pooledGradient:…throughConvolution:)`) reads z, both output
/// gradients and the input a second time and forms g again (the pooling's routing included):
/// at batch 20 on 512² tiles that pass moves about 200 MB at full resolution.
///
/// Sums are per (image, channel) plane, in float vectors flushed into the plane's float sums
/// every `band` rows (the two-pass kernels sum over bands of the same height), the planes added
/// in image order: independent of the thread count. Σg and Σg·(z − μ) are formed exactly as the
/// two-pass gradient forms them, so dγ and dβ are the same bits.
extension BatchNormKernels {
    /// Rows per flush of the vector tap sums into a plane's sums: the bands the two-pass
    /// weight gradient sums over.
    static let tapSumBand = fusedBand

    /// The gradient of `affine(_:scale:shift:rectifiedInto:pooledInto:)` taken through the
    /// convolution that made `x` from `input` to that convolution's weights and bias only (its
    /// input needs no gradient): adds to dγ, dβ, dW (cout, cin, 3, 3) and dB (cout values).
    public static func backwardToWeights(x z: Tensor, rectifiedGradient: Tensor?, pooledGradient: Tensor?, _ n: Normalisation,
                                         input: PaddedPlanes, dGamma: UnsafeMutablePointer<Float>,
                                         dBeta: UnsafeMutablePointer<Float>, dW: UnsafeMutablePointer<Float>,
                                         dB: UnsafeMutablePointer<Float>?, pool: ThreadPool = .shared) {
        let s = z.shape, cin = input.channels, cout = s.c
        require(input.n == s.n && input.height == s.h && input.width == s.w, "convolution input does not match \(s)")
        require(n.mean.count == cout && n.invStd.count == cout && n.gamma.count == cout && n.scale.count == cout
                    && n.shift.count == cout, "batch-norm parameters for \(cout) channels")
        guard case .rectifiedAndPooled(let r, let p) = encoderSource(s, rectifiedGradient, pooledGradient) else { return }
        let vw = vectorWidth, taps = 9 * cin
        let zd = z.data, rs = input.rowStride
        let rectified = r.map { UnsafePointer($0.data) }, pooled = p.map { UnsafePointer($0.data) }
        let ws = roundUp(max(s.w, 1), vw)
        let rows = Tensor(Shape(pool.threadCount, 1, 1, 4 * ws), zeroed: false)
        // Per thread: the vector tap sums of the plane at work (Σg·x_t, then Σ(z − μ)·x_t, then Σ(z − μ)).
        let vectors = Tensor(Shape(pool.threadCount, 1, 1, (2 * taps + 1) * vw), zeroed: false)
        // Per plane: Σg·x_t, Σ(z − μ)·x_t (taps each) and Σ(z − μ), in float; Σg and Σg·x̂ in Double.
        let partial = PartialSums(items: s.n * cout, stride: 2 * taps + 1)
        let planeSums = UnsafeMutablePointer<Double>.allocate(capacity: 2 * s.n * cout)
        defer { planeSums.deallocate() }
        let mean = n.mean, invStd = n.invStd, scale = n.scale, shift = n.shift
        let noMask = DropoutMask(rate: 0, seed: 0)
        let centre = inputCentres(input)
        withExtendedLifetime((r, p)) {
            pool.parallelFor(s.n * cout) { item, thread in
                let i = item / cout, c = item % cout
                let mu = mean[c], muV = FloatVector(repeating: mu)
                let scaleV = FloatVector(repeating: scale[c]), shiftV = FloatVector(repeating: shift[c])
                let acc = vectors.data + thread * (2 * taps + 1) * vw
                acc.initialize(repeating: 0, count: (2 * taps + 1) * vw)
                let sums = partial.take(item)
                var va = FloatVector.zero, vb = FloatVector.zero, sa = 0.0, sb = 0.0
                var y = 0
                while y < s.h {
                    let (g0, gs) = encoderGradientRows(item, y, s, x: zd, scale: scale[c], shift: shift[c], rectified: rectified,
                                                       pooled: pooled, scratch: rows.data + thread * 4 * ws, rowStride: ws)
                    for j in 0..<min(2, s.h - y) {
                        let row = y + j, zr = UnsafePointer(zd + item * s.plane + row * s.w), gr = g0 + j * gs
                        // As `gradientSums` forms them (no ReLU after, no dropout): the same bits.
                        let k = rowSums(zr, gr, s.w, row * s.w, muV, scaleV, shiftV, noMask, 0, false, false, &va, &vb)
                        for k in k..<s.w { sa += Double(gr[k]); sb += Double(gr[k] * (zr[k] - mu)) }
                        for ci in 0..<cin {
                            let top = UnsafePointer(input.origin(i, ci) + (row - 1) * rs)
                            let total = ci == 0 ? (acc + 2 * taps * vw, sums + 2 * taps) : nil
                            let cV = FloatVector(repeating: centre[ci])
                            if RegisterBlocking.vectorRegisters >= 32 {
                                pairedTapSums(gr, zr, muV, top, cV, rs, s.w, acc + 9 * ci * vw, acc + (taps + 9 * ci) * vw,
                                              sums + 9 * ci, sums + taps + 9 * ci, total: total)
                            } else {
                                tapSums(gr, .zero, top, cV, rs, s.w, acc + 9 * ci * vw, sums + 9 * ci, centred: false, total: nil)
                                tapSums(zr, muV, top, cV, rs, s.w, acc + (taps + 9 * ci) * vw, sums + taps + 9 * ci, centred: true,
                                        total: total)
                            }
                        }
                        if (row + 1) % tapSumBand == 0 || row == s.h - 1 { flush(acc, count: 2 * taps + 1, into: sums) }
                    }
                    y += 2
                }
                planeSums[2 * item] = sa + Double(laneSum(va))
                planeSums[2 * item + 1] = (sb + Double(laneSum(vb))) * Double(invStd[c])
            }
        }
        var sumDy = [Double](repeating: 0, count: cout), sumDyXhat = sumDy
        for c in 0..<cout {
            var a = 0.0, b = 0.0
            for i in 0..<s.n { a += planeSums[2 * (i * cout + c)]; b += planeSums[2 * (i * cout + c) + 1] }
            sumDy[c] = a; sumDyXhat[c] = b
            dGamma[c] += Float(b); dBeta[c] += Float(a)
        }
        // The input's tap sums Σx_t per input channel, over every image.
        let inputSums = inputTapSums(input, centres: centre, pool: pool)
        // Each plane's sums added in image order, per channel.
        let totals = Tensor(Shape(1, 1, cout, 2 * taps + 1))
        for c in 0..<cout { for i in 0..<s.n { partial.add(item: i * cout + c, into: totals.data + c * (2 * taps + 1)) } }
        let coefficients = dxCoefficients(s, n, sumDy: sumDy, sumDyXhat: sumDyXhat)
        let m = Float(s.n * s.plane)
        for c in 0..<cout {
            let t = totals.data + c * (2 * taps + 1)
            let a = coefficients[3 * c], b = coefficients[3 * c + 1]
            let d = -(n.gamma[c] * invStd[c] / m) * Float(sumDy[c])
            // Σ dz = A·Σg + B·Σ(z − μ) + D·m, where A·Σg = −D·m exactly: the bias gradient is
            // B·Σ(z − μ), zero but for round-off, as for any convolution a batch norm follows.
            let bias = b * t[2 * taps]
            for k in 0..<taps { dW[c * taps + k] += a * t[k] + b * t[taps + k] + d * inputSums[k] + centre[k / 9] * bias }
            dB?[c] += bias
        }
    }

    /// acc[t] (9 vectors) += Σ over the row's whole vectors of v · (X(row + ky − 1, x + kx − 1) − c),
    /// t = 3·ky + kx, where v is `values` (minus `mu` when `centred`) and `top` is pixel 0 of
    /// the input row above (rows `rs` apart, zero one column either side and above and below
    /// the image); the row's last columns, short of a vector, as floats into tail[t]. With
    /// `total`, also Σv into its vector and float.
    @inline(__always)
    static func tapSums(_ values: UnsafePointer<Float>, _ mu: FloatVector, _ top: UnsafePointer<Float>, _ c: FloatVector, _ rs: Int,
                        _ w: Int,
                        _ acc: UnsafeMutablePointer<Float>, _ tail: UnsafeMutablePointer<Float>, centred: Bool,
                        total: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)?) {
        let vw = vectorWidth
        let r0 = top, r1 = top + rs, r2 = top + 2 * rs
        var a0 = loadVector(acc), a1 = loadVector(acc + vw), a2 = loadVector(acc + 2 * vw)
        var a3 = loadVector(acc + 3 * vw), a4 = loadVector(acc + 4 * vw), a5 = loadVector(acc + 5 * vw)
        var a6 = loadVector(acc + 6 * vw), a7 = loadVector(acc + 7 * vw), a8 = loadVector(acc + 8 * vw)
        var sum = total.map { loadVector($0.0) } ?? .zero
        var k = 0
        while k + vw <= w {
            var v = loadVector(values + k)
            if centred { v -= mu }
            if total != nil { sum += v }
            a0 = a0.addingProduct(v, loadVector(r0 + k - 1) - c); a1 = a1.addingProduct(v, loadVector(r0 + k) - c)
            a2 = a2.addingProduct(v, loadVector(r0 + k + 1) - c)
            a3 = a3.addingProduct(v, loadVector(r1 + k - 1) - c); a4 = a4.addingProduct(v, loadVector(r1 + k) - c)
            a5 = a5.addingProduct(v, loadVector(r1 + k + 1) - c)
            a6 = a6.addingProduct(v, loadVector(r2 + k - 1) - c); a7 = a7.addingProduct(v, loadVector(r2 + k) - c)
            a8 = a8.addingProduct(v, loadVector(r2 + k + 1) - c)
            k += vw
        }
        storeVector(a0, acc); storeVector(a1, acc + vw); storeVector(a2, acc + 2 * vw)
        storeVector(a3, acc + 3 * vw); storeVector(a4, acc + 4 * vw); storeVector(a5, acc + 5 * vw)
        storeVector(a6, acc + 6 * vw); storeVector(a7, acc + 7 * vw); storeVector(a8, acc + 8 * vw)
        if let total { storeVector(sum, total.0) }
        let m = mu[0], cs = c[0]
        while k < w {
            let v = centred ? values[k] - m : values[k]
            if let total { total.1[0] += v }
            for ky in 0..<3 {
                let r = top + ky * rs + k - 1
                tail[3 * ky] += v * (r[0] - cs); tail[3 * ky + 1] += v * (r[1] - cs); tail[3 * ky + 2] += v * (r[2] - cs)
            }
            k += 1
        }
    }

    /// Both rows' tap sums in one loop (`tapSums` of g, and of z − μ with its total), each
    /// input vector loaded once for both: 18 accumulators, for ISAs with 32 vector registers.
    @inline(__always)
    static func pairedTapSums(_ g: UnsafePointer<Float>, _ z: UnsafePointer<Float>, _ mu: FloatVector, _ top: UnsafePointer<Float>,
                              _ c: FloatVector, _ rs: Int, _ w: Int, _ accG: UnsafeMutablePointer<Float>, _ accZ: UnsafeMutablePointer<Float>,
                              _ tailG: UnsafeMutablePointer<Float>, _ tailZ: UnsafeMutablePointer<Float>,
                              total: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)?) {
        let vw = vectorWidth
        let r0 = top, r1 = top + rs, r2 = top + 2 * rs
        var a0 = loadVector(accG), a1 = loadVector(accG + vw), a2 = loadVector(accG + 2 * vw)
        var a3 = loadVector(accG + 3 * vw), a4 = loadVector(accG + 4 * vw), a5 = loadVector(accG + 5 * vw)
        var a6 = loadVector(accG + 6 * vw), a7 = loadVector(accG + 7 * vw), a8 = loadVector(accG + 8 * vw)
        var b0 = loadVector(accZ), b1 = loadVector(accZ + vw), b2 = loadVector(accZ + 2 * vw)
        var b3 = loadVector(accZ + 3 * vw), b4 = loadVector(accZ + 4 * vw), b5 = loadVector(accZ + 5 * vw)
        var b6 = loadVector(accZ + 6 * vw), b7 = loadVector(accZ + 7 * vw), b8 = loadVector(accZ + 8 * vw)
        var sum = total.map { loadVector($0.0) } ?? .zero
        var k = 0
        while k + vw <= w {
            let u = loadVector(g + k), v = loadVector(z + k) - mu
            if total != nil { sum += v }
            var x = loadVector(r0 + k - 1) - c; a0 = a0.addingProduct(u, x); b0 = b0.addingProduct(v, x)
            x = loadVector(r0 + k) - c; a1 = a1.addingProduct(u, x); b1 = b1.addingProduct(v, x)
            x = loadVector(r0 + k + 1) - c; a2 = a2.addingProduct(u, x); b2 = b2.addingProduct(v, x)
            x = loadVector(r1 + k - 1) - c; a3 = a3.addingProduct(u, x); b3 = b3.addingProduct(v, x)
            x = loadVector(r1 + k) - c; a4 = a4.addingProduct(u, x); b4 = b4.addingProduct(v, x)
            x = loadVector(r1 + k + 1) - c; a5 = a5.addingProduct(u, x); b5 = b5.addingProduct(v, x)
            x = loadVector(r2 + k - 1) - c; a6 = a6.addingProduct(u, x); b6 = b6.addingProduct(v, x)
            x = loadVector(r2 + k) - c; a7 = a7.addingProduct(u, x); b7 = b7.addingProduct(v, x)
            x = loadVector(r2 + k + 1) - c; a8 = a8.addingProduct(u, x); b8 = b8.addingProduct(v, x)
            k += vw
        }
        storeVector(a0, accG); storeVector(a1, accG + vw); storeVector(a2, accG + 2 * vw)
        storeVector(a3, accG + 3 * vw); storeVector(a4, accG + 4 * vw); storeVector(a5, accG + 5 * vw)
        storeVector(a6, accG + 6 * vw); storeVector(a7, accG + 7 * vw); storeVector(a8, accG + 8 * vw)
        storeVector(b0, accZ); storeVector(b1, accZ + vw); storeVector(b2, accZ + 2 * vw)
        storeVector(b3, accZ + 3 * vw); storeVector(b4, accZ + 4 * vw); storeVector(b5, accZ + 5 * vw)
        storeVector(b6, accZ + 6 * vw); storeVector(b7, accZ + 7 * vw); storeVector(b8, accZ + 8 * vw)
        if let total { storeVector(sum, total.0) }
        let m = mu[0], cs = c[0]
        while k < w {
            let u = g[k], v = z[k] - m
            if let total { total.1[0] += v }
            for ky in 0..<3 {
                let r = top + ky * rs + k - 1
                let x0 = r[0] - cs, x1 = r[1] - cs, x2 = r[2] - cs
                tailG[3 * ky] += u * x0; tailG[3 * ky + 1] += u * x1; tailG[3 * ky + 2] += u * x2
                tailZ[3 * ky] += v * x0; tailZ[3 * ky + 1] += v * x1; tailZ[3 * ky + 2] += v * x2
            }
            k += 1
        }
    }

    /// sums[t] += the lanes of vector t, t < count, and the vectors zeroed.
    @inline(__always)
    static func flush(_ acc: UnsafeMutablePointer<Float>, count: Int, into sums: UnsafeMutablePointer<Float>) {
        for t in 0..<count {
            sums[t] += laneSum(loadVector(acc + t * vectorWidth))
            storeVector(.zero, acc + t * vectorWidth)
        }
    }

    /// Each input channel's centre c: the mean of image 0's plane (any constant gives the same
    /// gradient; one near the input's level keeps the sums small).
    static func inputCentres(_ input: PaddedPlanes) -> [Float] {
        guard input.n > 0 && input.height * input.width > 0 else { return [Float](repeating: 0, count: input.channels) }
        return (0..<input.channels).map { ci in
            var sum = 0.0
            for row in 0..<input.height {
                sum += Double(ChannelKernels.sum(input.origin(0, ci) + row * input.rowStride, input.width))
            }
            return Float(sum / Double(input.height * input.width))
        }
    }

    /// Σ over every image and interior pixel of the input shifted by each tap, less `centres`,
    /// per input channel (cin × 9 values), per (image, channel) plane in bands of `tapSumBand`
    /// rows, the planes added in image order.
    static func inputTapSums(_ input: PaddedPlanes, centres: [Float], pool: ThreadPool) -> [Float] {
        let vw = vectorWidth, cin = input.channels, h = input.height, w = input.width
        let ones = Tensor(Shape(1, 1, 1, roundUp(max(w, 1), vw)), zeroed: false)
        ones.data.initialize(repeating: 1, count: ones.count)
        let vectors = Tensor(Shape(pool.threadCount, 1, 1, 9 * vw), zeroed: false)
        let partial = PartialSums(items: input.n * cin, stride: 9)
        pool.parallelFor(input.n * cin) { item, thread in
            let i = item / cin, ci = item % cin
            let acc = vectors.data + thread * 9 * vw
            acc.initialize(repeating: 0, count: 9 * vw)
            let sums = partial.take(item)
            for row in 0..<h {
                tapSums(ones.data, .zero, input.origin(i, ci) + (row - 1) * input.rowStride, FloatVector(repeating: centres[ci]),
                        input.rowStride, w, acc, sums, centred: false, total: nil)
                if (row + 1) % tapSumBand == 0 || row == h - 1 { flush(acc, count: 9, into: sums) }
            }
        }
        var out = [Float](repeating: 0, count: 9 * cin)
        out.withUnsafeMutableBufferPointer { o in
            for ci in 0..<cin { for i in 0..<input.n { partial.add(item: i * cin + ci, into: o.baseAddress! + 9 * ci) } }
        }
        return out
    }
}

extension PartialSums {
    /// out[k] += item `item`'s partial[k], k < stride.
    func add(item: Int, into out: UnsafeMutablePointer<Float>) {
        let acc = buffer.data + item * stride
        for k in 0..<stride { out[k] += acc[k] }
    }
}

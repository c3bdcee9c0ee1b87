import CNanoSupport
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
                        _ w: Int, _ acc: UnsafeMutablePointer<Float>, _ tail: UnsafeMutablePointer<Float>, centred: Bool,
                        total: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)?) {
        let vw = vectorWidth
        var a = TapAccumulators(acc)
        var sum = total.map { loadVector($0.0) } ?? .zero
        var k = 0
        while k + vw <= w {
            var v = loadVector(values + k)
            if centred { v -= mu }
            if total != nil { sum += v }
            a.add(v, top, rs, k, c)
            k += vw
        }
        a.store(acc)
        if let total { storeVector(sum, total.0) }
        while k < w {
            let v = centred ? values[k] - mu[0] : values[k]
            if let total { total.1[0] += v }
            TapAccumulators.addTail(v, top, rs, k, c[0], tail)
            k += 1
        }
    }

    /// Both rows' tap sums in one loop (`tapSums` of g, and of z − μ with its total), each
    /// input vector loaded once for both: 18 accumulators, for ISAs with 32 vector registers.
    @inline(__always)
    static func pairedTapSums(_ g: UnsafePointer<Float>, _ z: UnsafePointer<Float>, _ mu: FloatVector, _ top: UnsafePointer<Float>,
                              _ c: FloatVector, _ rs: Int, _ w: Int, _ accG: UnsafeMutablePointer<Float>,
                              _ accZ: UnsafeMutablePointer<Float>, _ tailG: UnsafeMutablePointer<Float>,
                              _ tailZ: UnsafeMutablePointer<Float>, total: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>)?) {
        let vw = vectorWidth
        var a = TapAccumulators(accG), b = TapAccumulators(accZ)
        var sum = total.map { loadVector($0.0) } ?? .zero
        var k = 0
        while k + vw <= w {
            let u = loadVector(g + k), v = loadVector(z + k) - mu
            if total != nil { sum += v }
            a.add(u, and: v, into: &b, top, rs, k, c)
            k += vw
        }
        a.store(accG); b.store(accZ)
        if let total { storeVector(sum, total.0) }
        while k < w {
            let v = z[k] - mu[0]
            if let total { total.1[0] += v }
            TapAccumulators.addTail(g[k], top, rs, k, c[0], tailG)
            TapAccumulators.addTail(v, top, rs, k, c[0], tailZ)
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

/// The 9 vector sums of one value row times the 3×3 taps of the input around it
/// (`BatchNormKernels.tapSums`): loaded from and stored to memory once per row, in registers
/// between. Written once for the single and the paired loops.
struct TapAccumulators {
    var a0, a1, a2, a3, a4, a5, a6, a7, a8: FloatVector

    @inline(__always) init(_ p: UnsafePointer<Float>) {
        let vw = vectorWidth
        a0 = loadVector(p); a1 = loadVector(p + vw); a2 = loadVector(p + 2 * vw)
        a3 = loadVector(p + 3 * vw); a4 = loadVector(p + 4 * vw); a5 = loadVector(p + 5 * vw)
        a6 = loadVector(p + 6 * vw); a7 = loadVector(p + 7 * vw); a8 = loadVector(p + 8 * vw)
    }

    @inline(__always) func store(_ p: UnsafeMutablePointer<Float>) {
        let vw = vectorWidth
        storeVector(a0, p); storeVector(a1, p + vw); storeVector(a2, p + 2 * vw)
        storeVector(a3, p + 3 * vw); storeVector(a4, p + 4 * vw); storeVector(a5, p + 5 * vw)
        storeVector(a6, p + 6 * vw); storeVector(a7, p + 7 * vw); storeVector(a8, p + 8 * vw)
    }

    /// The input's tap t = 3·ky + kx at columns k … k + vw − 1, less c: row ky below `top`,
    /// shifted by kx − 1. The shifted loads go through an opaque pointer (`nf_opaque`): LLVM
    /// otherwise builds them from the unshifted ones and their neighbours with masked loads and
    /// permutes (4 of them per column vector in the 16-lane build), which contend with the
    /// multiply-adds for the same pipes.
    @inline(__always) static func tap(_ top: UnsafePointer<Float>, _ rs: Int, _ k: Int, _ t: Int, _ c: FloatVector) -> FloatVector {
        let p = top + (t / 3) * rs + k + t % 3 - 1
        return loadVector(t % 3 == 1 ? p : nf_opaque(p)) - c
    }

    /// a_t += v · (tap t − c).
    @inline(__always) mutating func add(_ v: FloatVector, _ top: UnsafePointer<Float>, _ rs: Int, _ k: Int, _ c: FloatVector) {
        a0 = a0.addingProduct(v, Self.tap(top, rs, k, 0, c)); a1 = a1.addingProduct(v, Self.tap(top, rs, k, 1, c))
        a2 = a2.addingProduct(v, Self.tap(top, rs, k, 2, c)); a3 = a3.addingProduct(v, Self.tap(top, rs, k, 3, c))
        a4 = a4.addingProduct(v, Self.tap(top, rs, k, 4, c)); a5 = a5.addingProduct(v, Self.tap(top, rs, k, 5, c))
        a6 = a6.addingProduct(v, Self.tap(top, rs, k, 6, c)); a7 = a7.addingProduct(v, Self.tap(top, rs, k, 7, c))
        a8 = a8.addingProduct(v, Self.tap(top, rs, k, 8, c))
    }

    /// a_t += u · (tap t − c) and b_t += v · (tap t − c), each tap loaded once.
    @inline(__always) mutating func add(_ u: FloatVector, and v: FloatVector, into b: inout TapAccumulators,
                                        _ top: UnsafePointer<Float>, _ rs: Int, _ k: Int, _ c: FloatVector) {
        var x = Self.tap(top, rs, k, 0, c); a0 = a0.addingProduct(u, x); b.a0 = b.a0.addingProduct(v, x)
        x = Self.tap(top, rs, k, 1, c); a1 = a1.addingProduct(u, x); b.a1 = b.a1.addingProduct(v, x)
        x = Self.tap(top, rs, k, 2, c); a2 = a2.addingProduct(u, x); b.a2 = b.a2.addingProduct(v, x)
        x = Self.tap(top, rs, k, 3, c); a3 = a3.addingProduct(u, x); b.a3 = b.a3.addingProduct(v, x)
        x = Self.tap(top, rs, k, 4, c); a4 = a4.addingProduct(u, x); b.a4 = b.a4.addingProduct(v, x)
        x = Self.tap(top, rs, k, 5, c); a5 = a5.addingProduct(u, x); b.a5 = b.a5.addingProduct(v, x)
        x = Self.tap(top, rs, k, 6, c); a6 = a6.addingProduct(u, x); b.a6 = b.a6.addingProduct(v, x)
        x = Self.tap(top, rs, k, 7, c); a7 = a7.addingProduct(u, x); b.a7 = b.a7.addingProduct(v, x)
        x = Self.tap(top, rs, k, 8, c); a8 = a8.addingProduct(u, x); b.a8 = b.a8.addingProduct(v, x)
    }

    /// tail[t] += v · (tap t − c) at the single column k.
    @inline(__always) static func addTail(_ v: Float, _ top: UnsafePointer<Float>, _ rs: Int, _ k: Int, _ c: Float,
                                          _ tail: UnsafeMutablePointer<Float>) {
        for t in 0..<9 { tail[t] += v * (top[(t / 3) * rs + k + t % 3 - 1] - c) }
    }
}

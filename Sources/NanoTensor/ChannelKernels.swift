import Foundation

/// Channel concatenation, 1×1 convolution and softmax over channels.
public enum ChannelKernels {
    /// Concatenates along channels, first tensor first.
    public static func concat(_ parts: [Tensor], pool: ThreadPool = .shared) -> Tensor {
        let s0 = parts[0].shape
        let c = parts.reduce(0) { $0 + $1.shape.c }
        let y = Tensor(Shape(s0.n, c, s0.h, s0.w), zeroed: false)
        for i in 0..<s0.n {
            var off = 0
            for p in parts {
                require(p.shape.n == s0.n && p.shape.h == s0.h && p.shape.w == s0.w, "concat shapes differ")
                y.plane(i, off).update(from: p.plane(i, 0), count: p.shape.c * s0.plane)
                off += p.shape.c
            }
        }
        return y
    }

    /// Channels offset..<offset+count of every image, as a new tensor.
    public static func channels(of t: Tensor, offset: Int, count: Int, pool: ThreadPool = .shared) -> Tensor {
        let s = t.shape
        let out = Tensor(Shape(s.n, count, s.h, s.w), zeroed: false)
        pool.parallelFor(s.n) { i, _ in out.plane(i, 0).update(from: t.plane(i, offset), count: count * s.plane) }
        return out
    }

    /// Splits a gradient back into the parts' channel counts.
    public static func split(_ dy: Tensor, channels: [Int]) -> [Tensor] {
        let s = dy.shape
        var off = 0
        return channels.map { c in
            let t = Tensor(Shape(s.n, c, s.h, s.w), zeroed: false)
            for i in 0..<s.n { t.plane(i, 0).update(from: dy.plane(i, off), count: c * s.plane) }
            off += c
            return t
        }
    }

    /// A batch norm (folded to scale and shift) and ReLU applied to a 1×1 convolution's input as
    /// it is read, x_c = max(z_c · scale[c] + shift[c], 0) exactly as `BatchNormKernels.affine`
    /// computes it, so that input is never stored: a U-Net's last block before its head.
    public struct RectifiedAffine: Sendable {
        public let scale: [Float], shift: [Float]
        public init(scale: [Float], shift: [Float]) { self.scale = scale; self.shift = shift }
    }

    /// The input of pixels lo..<hi of image i as a pointer p and channel stride with p + c·stride
    /// + k the value at pixel k: the tensor itself, or its `transform` laid out in `scratch`
    /// (room for channels × (hi − lo) floats).
    @inline(__always)
    static func inputPiece(_ x: Tensor, _ transform: RectifiedAffine?, _ i: Int, _ lo: Int, _ hi: Int,
                           _ scratch: UnsafeMutablePointer<Float>?) -> (UnsafePointer<Float>, Int) {
        let s = x.shape
        guard let transform, let scratch else { return (UnsafePointer(x.plane(i, 0)), s.plane) }
        let size = hi - lo
        for c in 0..<s.c {
            let src = x.plane(i, c) + lo, dst = scratch + c * size
            let a = transform.scale[c], b = transform.shift[c]
            let aV = FloatVector(repeating: a), bV = FloatVector(repeating: b)
            var k = 0
            while k + vectorWidth <= size { storeVector(vmax(loadVector(src + k) * aV + bV, .zero), dst + k); k += vectorWidth }
            while k < size { dst[k] = max(src[k] * a + b, 0); k += 1 }
        }
        return (UnsafePointer(scratch - lo), size)
    }

    /// out[o] = b[o] + Σ_c w[o·cin + c] · x[c], with x transformed as it is read when
    /// `inputTransform` is given.
    public static func conv1x1(_ x: Tensor, weights w: UnsafePointer<Float>, bias b: UnsafePointer<Float>?,
                               cout: Int, inputTransform: RectifiedAffine? = nil, pool: ThreadPool = .shared) -> Tensor {
        let s = x.shape
        let y = Tensor(Shape(s.n, cout, s.h, s.w), zeroed: false)
        let (pieces, size) = pixelPieces(s.plane)
        let stream = streams(y.count, y.data, rowStride: s.plane)
        let scratch = inputTransform.map { _ in Tensor(Shape(pool.threadCount, 1, s.c, size), zeroed: false) }
        pool.parallelFor(s.n * pieces) { item, thread in
            defer { if stream { storeFence() } }
            let i = item / pieces, lo = (item % pieces) * size, hi = min(s.plane, lo + size)
            if lo >= hi { return }
            let (xp, xs) = inputPiece(x, inputTransform, i, lo, hi, scratch.map { $0.data + thread * s.c * size })
            // One output channel at a time over a piece small enough that the inputs stay in L2.
            for o in 0..<cout {
                let q = y.plane(i, o)
                let bo = b?[o] ?? 0, bV = FloatVector(repeating: bo)
                var k = lo
                while k + vectorWidth <= hi {
                    var acc = bV
                    for c in 0..<s.c { acc = acc.addingProduct(loadVector(xp + c * xs + k), FloatVector(repeating: w[o * s.c + c])) }
                    storeVector(acc, q + k, streaming: stream)
                    k += vectorWidth
                }
                while k < hi {
                    var acc = bo
                    for c in 0..<s.c { acc += w[o * s.c + c] * xp[c * xs + k] }
                    q[k] = acc
                    k += 1
                }
            }
        }
        return y
    }

    /// Gradients of the 1×1 conv: dx, and accumulated dW (cout × cin), dB. Runs in parallel over
    /// pieces of each image; the weight sums of each piece are kept apart and added in piece
    /// order, so the result does not depend on the thread count.
    public static func conv1x1Backward(x: Tensor, dy: Tensor, weights w: UnsafePointer<Float>,
                                       dW: UnsafeMutablePointer<Float>, dB: UnsafeMutablePointer<Float>,
                                       inputTransform: RectifiedAffine? = nil, pool: ThreadPool = .shared) -> Tensor {
        conv1x1Backward(x: x, dy: dy, weights: w, dW: dW, dB: dB, inputTransform: inputTransform, gatheringSumsOf: nil, pool: pool).dx
    }

    /// The same, also gathering the first pass of the batch norm whose ReLU made the input
    /// (`inputTransform`, a `Normalisation` with the same scale and shift): its sums Σg and Σg·x̂
    /// of the input gradient g, gated by that ReLU, while g and the pre-BN map are at hand, so
    /// the batch norm's backward need not read both again (`BatchNormKernels.backward(…sums:)`).
    public static func conv1x1Backward(x: Tensor, dy: Tensor, weights w: UnsafePointer<Float>,
                                       dW: UnsafeMutablePointer<Float>, dB: UnsafeMutablePointer<Float>,
                                       inputTransform: RectifiedAffine?, gatheringSumsOf norm: BatchNormKernels.Normalisation?,
                                       pool: ThreadPool = .shared) -> (dx: Tensor, sums: BatchNormKernels.GradientSums?) {
        let s = x.shape, cout = dy.shape.c
        require(dy.shape == Shape(s.n, cout, s.h, s.w), "1×1 conv gradient \(dy.shape) for input \(s)")
        return conv1x1Backward(x: x, cout: cout, weights: w, dW: dW, dB: dB, inputTransform: inputTransform, gatheringSumsOf: norm,
                               pool: pool) { i, _, _, _ in
            (UnsafePointer(dy.plane(i, 0)), s.plane)
        }
    }

    /// The 1×1 backward over pieces of each image; `gradient(image, lo, hi, thread)` gives a
    /// pointer p and a channel stride such that p + o · stride + k is dy[o] at pixel k of the
    /// piece lo..<hi.
    static func conv1x1Backward(x: Tensor, cout: Int, weights w: UnsafePointer<Float>,
                                dW: UnsafeMutablePointer<Float>, dB: UnsafeMutablePointer<Float>,
                                inputTransform: RectifiedAffine? = nil, gatheringSumsOf norm: BatchNormKernels.Normalisation? = nil,
                                pool: ThreadPool,
                                gradient: (Int, Int, Int, Int) -> (UnsafePointer<Float>, Int))
        -> (dx: Tensor, sums: BatchNormKernels.GradientSums?) {
        let s = x.shape
        if let norm {
            require(norm.mean.count == s.c && norm.scale.count == s.c && norm.shift.count == s.c && norm.invStd.count == s.c,
                    "batch-norm parameters for \(s.c) channels")
        }
        let dx = Tensor(s, zeroed: false)
        let (pieces, size) = pixelPieces(s.plane)
        let items = s.n * pieces, stride = cout * s.c + cout
        let partial = Tensor(Shape(items, 1, 1, stride))
        // Per piece and input channel: Σg and Σg·(x − μ), g gated by the batch norm's ReLU.
        // Zeroed: a piece past the plane's end (its size rounded up to whole vectors) adds nothing.
        let pieceSums = norm.map { _ in UnsafeMutablePointer<Double>.allocate(capacity: 2 * items * s.c) }
        pieceSums?.initialize(repeating: 0, count: 2 * items * s.c)
        defer { pieceSums?.deallocate() }
        let stream = streams(dx.count, dx.data, rowStride: s.plane)
        let scratch = inputTransform.map { _ in Tensor(Shape(pool.threadCount, 1, s.c, size), zeroed: false) }
        pool.parallelFor(items) { item, thread in
            defer { if stream { storeFence() } }
            let i = item / pieces, lo = (item % pieces) * size, hi = min(s.plane, lo + size)
            if lo >= hi { return }
            let acc = partial.data + item * stride
            let (g, gs) = gradient(i, lo, hi, thread)
            let (xp, xs) = inputPiece(x, inputTransform, i, lo, hi, scratch.map { $0.data + thread * s.c * size })
            for c in 0..<s.c {
                let d = dx.plane(i, c)
                var k = lo
                // With `norm`, the batch norm's first pass too, as `BatchNormKernels.gradientSums`
                // gates and sums (ReLU after, no dropout).
                let gather = norm != nil
                let zp = x.plane(i, c), mu = norm?.mean[c] ?? 0, a = norm?.scale[c] ?? 0, b = norm?.shift[c] ?? 0
                let muV = FloatVector(repeating: mu), aV = FloatVector(repeating: a), bV = FloatVector(repeating: b)
                var va = FloatVector.zero, vb = FloatVector.zero
                while k + vectorWidth <= hi {
                    var v = FloatVector.zero
                    for o in 0..<cout { v = v.addingProduct(loadVector(g + o * gs + k), FloatVector(repeating: w[o * s.c + c])) }
                    storeVector(v, d + k, streaming: stream)
                    if gather {
                        let zv = loadVector(zp + k)
                        v.replace(with: 0, where: zv * aV + bV .<= FloatVector.zero)
                        va += v; vb = vb.addingProduct(v, zv - muV)
                    }
                    k += vectorWidth
                }
                var sa = Double(laneSum(va)), sb = Double(laneSum(vb))
                while k < hi {
                    var v: Float = 0
                    for o in 0..<cout { v += w[o * s.c + c] * g[o * gs + k] }
                    d[k] = v
                    if gather {
                        if zp[k] * a + b <= 0 { v = 0 }
                        sa += Double(v); sb += Double(v * (zp[k] - mu))
                    }
                    k += 1
                }
                if let pieceSums { pieceSums[2 * (item * s.c + c)] = sa; pieceSums[2 * (item * s.c + c) + 1] = sb }
                for o in 0..<cout { acc[o * s.c + c] = dot(g + o * gs + lo, xp + c * xs + lo, hi - lo) }
            }
            for o in 0..<cout { acc[cout * s.c + o] = sum(g + o * gs + lo, hi - lo) }
        }
        for t in 0..<items {
            let acc = partial.data + t * stride
            for k in 0..<(cout * s.c) { dW[k] += acc[k] }
            for o in 0..<cout { dB[o] += acc[cout * s.c + o] }
        }
        guard let norm, let pieceSums else { return (dx, nil) }
        // Pieces added per channel in item order (independent of the thread count).
        var sums = BatchNormKernels.GradientSums(sumDy: [Double](repeating: 0, count: s.c), sumDyXhat: [Double](repeating: 0, count: s.c))
        for c in 0..<s.c {
            var a = 0.0, b = 0.0
            for t in 0..<items { a += pieceSums[2 * (t * s.c + c)]; b += pieceSums[2 * (t * s.c + c) + 1] }
            sums.sumDy[c] = a; sums.sumDyXhat[c] = b * Double(norm.invStd[c])
        }
        return (dx, sums)
    }

    /// The same for an output gradient kept as a cross-entropy gradient: each piece of it is
    /// evaluated into a small scratch and used from there, so the logits' gradient is never
    /// written out. The same operations in the same order as laying it out first.
    public static func conv1x1Backward(x: Tensor, lossGradient g: CrossEntropyGradient, weights w: UnsafePointer<Float>,
                                       dW: UnsafeMutablePointer<Float>, dB: UnsafeMutablePointer<Float>,
                                       inputTransform: RectifiedAffine? = nil, pool: ThreadPool = .shared) -> Tensor {
        conv1x1Backward(x: x, lossGradient: g, weights: w, dW: dW, dB: dB, inputTransform: inputTransform, gatheringSumsOf: nil,
                        pool: pool).dx
    }

    /// The same, also gathering the batch norm's sums (see `conv1x1Backward(x:dy:…gatheringSumsOf:)`).
    public static func conv1x1Backward(x: Tensor, lossGradient g: CrossEntropyGradient, weights w: UnsafePointer<Float>,
                                       dW: UnsafeMutablePointer<Float>, dB: UnsafeMutablePointer<Float>,
                                       inputTransform: RectifiedAffine?, gatheringSumsOf norm: BatchNormKernels.Normalisation?,
                                       pool: ThreadPool = .shared) -> (dx: Tensor, sums: BatchNormKernels.GradientSums?) {
        let s = x.shape, cout = g.shape.c
        require(g.shape == Shape(s.n, cout, s.h, s.w), "1×1 conv gradient \(g.shape) for input \(s)")
        let size = pixelPieces(s.plane).size
        let scratch = Tensor(Shape(pool.threadCount, 1, cout, size), zeroed: false)
        return conv1x1Backward(x: x, cout: cout, weights: w, dW: dW, dB: dB, inputTransform: inputTransform, gatheringSumsOf: norm,
                               pool: pool) { i, lo, hi, thread in
            let dy = scratch.data + thread * cout * size
            for o in 0..<cout { g.evaluate(image: i, class: o, from: lo, count: hi - lo, into: dy + o * size) }
            return (UnsafePointer(dy - lo), size)
        }
    }

    /// Pieces of a plane for per-pixel kernels: about 4096 pixels each, whole vectors.
    static func pixelPieces(_ plane: Int) -> (count: Int, size: Int) {
        let pieces = max(1, plane / 4096)
        return (pieces, roundUp((plane + pieces - 1) / pieces, vectorWidth))
    }

    /// Σ a·b with vector accumulators (a plain float loop would not vectorise: no reassociation).
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc0 = FloatVector.zero, acc1 = FloatVector.zero, k = 0
        while k + 2 * vectorWidth <= n {
            acc0 = acc0.addingProduct(loadVector(a + k), loadVector(b + k))
            acc1 = acc1.addingProduct(loadVector(a + k + vectorWidth), loadVector(b + k + vectorWidth))
            k += 2 * vectorWidth
        }
        var s = laneSum(acc0 + acc1)
        while k < n { s += a[k] * b[k]; k += 1 }
        return s
    }

    /// Σ of `n` floats: four chains of vector adds over blocks of four vectors (so the loads, not
    /// the adds' latency, bound it: `MemoryBandwidth` reads memory through it), then single
    /// vectors, then the last floats.
    public static func sum(_ a: UnsafePointer<Float>, _ n: Int) -> Float {
        let vw = vectorWidth
        var a0 = FloatVector.zero, a1 = a0, a2 = a0, a3 = a0, k = 0
        while k + 4 * vw <= n {
            a0 += loadVector(a + k); a1 += loadVector(a + k + vw); a2 += loadVector(a + k + 2 * vw); a3 += loadVector(a + k + 3 * vw)
            k += 4 * vw
        }
        while k + vw <= n { a0 += loadVector(a + k); k += vw }
        var s = laneSum((a0 + a1) + (a2 + a3))
        while k < n { s += a[k]; k += 1 }
        return s
    }

    /// The least probability the cross-entropy takes a log of: Keras' epsilon (its
    /// `categorical_crossentropy` clips to it), for the training and validation losses alike.
    public static let crossEntropyFloor: Float = 1e-7

    /// Σ −log p[label] over all pixels (p clamped to `crossEntropyFloor`), for softmax
    /// probabilities p and a label map of class indices 0, 1, … stored as floats; summed per piece
    /// in Double and added in piece order.
    public static func crossEntropySum(probabilities p: Tensor, labels: Tensor,
                                       pool: ThreadPool = .shared) -> (total: Double, pixels: Int) {
        let s = p.shape
        require(labels.shape == Shape(s.n, 1, s.h, s.w), "labels \(labels.shape) for probabilities \(s)")
        let (pieces, size) = pixelPieces(s.plane)
        var parts = [Double](repeating: 0, count: s.n * pieces)
        parts.withUnsafeMutableBufferPointer { partsBuffer in
            let out = partsBuffer.baseAddress!
            pool.parallelFor(s.n * pieces) { item, _ in
                let i = item / pieces, lo = (item % pieces) * size, hi = min(s.plane, lo + size)
                if lo >= hi { return }
                let lp = labels.plane(i, 0)
                let floor = FloatVector(repeating: crossEntropyFloor)
                var acc = FloatVector.zero, part = 0.0, k = lo, n = 0
                while k + vectorWidth <= hi {
                    let t = loadVector(lp + k)
                    var pt = loadVector(p.plane(i, 0) + k)
                    for c in 1..<max(s.c, 1) { pt.replace(with: loadVector(p.plane(i, c) + k), where: t .== Float(c)) }
                    acc -= vectorLog(vmax(pt, floor))
                    k += vectorWidth; n += 1
                    if n == 64 { part += Double(laneSum(acc)); acc = .zero; n = 0 }  // keep float sums short
                }
                part += Double(laneSum(acc))
                while k < hi {  // as the vector loop: class 0 unless the label equals another index
                    var pt = p.plane(i, 0)[k]
                    for c in 1..<max(s.c, 1) where lp[k] == Float(c) { pt = p.plane(i, c)[k] }
                    part -= Double(logf(max(pt, crossEntropyFloor)))
                    k += 1
                }
                out[item] = part
            }
        }
        return (parts.reduce(0, +), s.n * s.plane)
    }

    /// The cross-entropy's gradient with respect to the logits: (p − onehot(label)) · scale.
    public static func crossEntropyGradient(probabilities p: Tensor, labels: Tensor, scale: Float,
                                            pool: ThreadPool = .shared) -> Tensor {
        let s = p.shape
        let dz = Tensor(s, zeroed: false)
        let (pieces, size) = pixelPieces(s.plane)
        let stream = streams(dz.count, dz.data, rowStride: s.plane)
        pool.parallelFor(s.n * pieces) { item, _ in
            defer { if stream { storeFence() } }
            let i = item / pieces, lo = (item % pieces) * size, hi = min(s.plane, lo + size)
            if lo >= hi { return }
            let lp = labels.plane(i, 0)
            let scaleV = FloatVector(repeating: scale)
            for c in 0..<s.c {
                let pp = p.plane(i, c), d = dz.plane(i, c)
                var k = lo
                while k + vectorWidth <= hi {
                    let hit = FloatVector.zero.replacing(with: 1, where: loadVector(lp + k) .== Float(c))
                    storeVector((loadVector(pp + k) - hit) * scaleV, d + k, streaming: stream)
                    k += vectorWidth
                }
                while k < hi { d[k] = (pp[k] - (lp[k] == Float(c) ? 1 : 0)) * scale; k += 1 }
            }
        }
        return dz
    }

    /// Softmax over channels at every pixel (max-subtracted), vectorised along pixels.
    public static func softmax(_ z: Tensor, pool: ThreadPool = .shared) -> Tensor {
        let y = Tensor(z.shape, zeroed: false)
        softmax(z, into: y, pool: pool)
        return y
    }

    /// Softmax of `z` written into `y` (which may be `z` itself).
    public static func softmax(_ z: Tensor, into y: Tensor, pool: ThreadPool = .shared) {
        let s = z.shape
        require(y.shape == s, "output \(y.shape) for input \(s)")
        let vw = vectorWidth
        let pieces = max(1, s.plane / 8192)
        let size = roundUp((s.plane + pieces - 1) / pieces, vw)
        // In place (y = z) the lines are read first anyway.
        let stream = y !== z && streams(y.count, y.data, rowStride: s.plane)
        pool.parallelFor(s.n * pieces) { item, _ in
            defer { if stream { storeFence() } }
            let i = item / pieces, lo = (item % pieces) * size, hi = min(s.plane, lo + size)
            if lo >= hi { return }
            var k = lo
            // Whole vectors
            while k + vw <= hi {
                if s.c == 2 {
                    let z0 = loadVector(z.plane(i, 0) + k), z1 = loadVector(z.plane(i, 1) + k)
                    let e = vectorExp(z0 - z1)          // p1 = 1 / (1 + e), p0 = e / (1 + e)
                    let inv = 1 / (1 + e)
                    storeVector(e * inv, y.plane(i, 0) + k, streaming: stream)
                    storeVector(inv, y.plane(i, 1) + k, streaming: stream)
                } else {
                    var m = loadVector(z.plane(i, 0) + k)
                    for c in 1..<s.c { m = vmax(m, loadVector(z.plane(i, c) + k)) }
                    var sum = FloatVector.zero
                    for c in 0..<s.c {
                        let e = vectorExp(loadVector(z.plane(i, c) + k) - m)
                        storeVector(e, y.plane(i, c) + k); sum += e
                    }
                    let inv = 1 / sum
                    for c in 0..<s.c { storeVector(loadVector(y.plane(i, c) + k) * inv, y.plane(i, c) + k) }
                }
                k += vw
            }
            // Tail pixels
            while k < hi {
                var m = -Float.infinity
                for c in 0..<s.c { m = max(m, z.plane(i, c)[k]) }
                var sum = Float(0)
                for c in 0..<s.c { let e = expf(z.plane(i, c)[k] - m); y.plane(i, c)[k] = e; sum += e }
                for c in 0..<s.c { y.plane(i, c)[k] /= sum }
                k += 1
            }
        }
    }
}

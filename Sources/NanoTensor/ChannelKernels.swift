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
                precondition(p.shape.n == s0.n && p.shape.h == s0.h && p.shape.w == s0.w, "concat shapes differ")
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

    /// out[o] = b[o] + Σ_c w[o·cin + c] · x[c].
    public static func conv1x1(_ x: Tensor, weights w: UnsafePointer<Float>, bias b: UnsafePointer<Float>?,
                               cout: Int, pool: ThreadPool = .shared) -> Tensor {
        let s = x.shape
        let y = Tensor(Shape(s.n, cout, s.h, s.w), zeroed: false)
        let pieces = max(1, s.plane / 4096)
        let size = roundUp((s.plane + pieces - 1) / pieces, vectorWidth)
        pool.parallelFor(s.n * pieces) { item, _ in
            let i = item / pieces, lo = (item % pieces) * size, hi = min(s.plane, lo + size)
            if lo >= hi { return }
            for o in 0..<cout {
                let q = y.plane(i, o)
                let bo = b?[o] ?? 0
                for k in lo..<hi { q[k] = bo }
                for c in 0..<s.c {
                    let p = x.plane(i, c), wv = w[o * s.c + c]
                    for k in lo..<hi { q[k] += wv * p[k] }
                }
            }
        }
        return y
    }

    /// Gradients of the 1×1 conv: dx, and accumulated dW (cout × cin), dB.
    public static func conv1x1Backward(x: Tensor, dy: Tensor, weights w: UnsafePointer<Float>,
                                       dW: UnsafeMutablePointer<Float>, dB: UnsafeMutablePointer<Float>,
                                       pool: ThreadPool = .shared) -> Tensor {
        let s = x.shape, cout = dy.shape.c
        let dx = Tensor(s)
        for i in 0..<s.n {
            for c in 0..<s.c {
                let d = dx.plane(i, c), xp = x.plane(i, c)
                for o in 0..<cout {
                    let g = dy.plane(i, o), wv = w[o * s.c + c]
                    for k in 0..<s.plane { d[k] += wv * g[k] }
                    dW[o * s.c + c] += dot(g, xp, s.plane)
                }
            }
            for o in 0..<cout { dB[o] += sum(dy.plane(i, o), s.plane) }
        }
        return dx
    }

    /// Σ a·b with vector accumulators (a plain float loop would not vectorise: no reassociation).
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc0 = FloatVector.zero, acc1 = FloatVector.zero, k = 0
        while k + 2 * vectorWidth <= n {
            acc0 = acc0.addingProduct(loadVector(a + k), loadVector(b + k))
            acc1 = acc1.addingProduct(loadVector(a + k + vectorWidth), loadVector(b + k + vectorWidth))
            k += 2 * vectorWidth
        }
        var s = (acc0 + acc1).sum()
        while k < n { s += a[k] * b[k]; k += 1 }
        return s
    }

    public static func sum(_ a: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = FloatVector.zero, k = 0
        while k + vectorWidth <= n { acc += loadVector(a + k); k += vectorWidth }
        var s = acc.sum()
        while k < n { s += a[k]; k += 1 }
        return s
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
        precondition(y.shape == s)
        let vw = vectorWidth
        let pieces = max(1, s.plane / 8192)
        let size = roundUp((s.plane + pieces - 1) / pieces, vw)
        pool.parallelFor(s.n * pieces) { item, _ in
            let i = item / pieces, lo = (item % pieces) * size, hi = min(s.plane, lo + size)
            if lo >= hi { return }
            var k = lo
            // Whole vectors
            while k + vw <= hi {
                if s.c == 2 {
                    let z0 = loadVector(z.plane(i, 0) + k), z1 = loadVector(z.plane(i, 1) + k)
                    let e = vectorExp(z0 - z1)          // p1 = 1 / (1 + e), p0 = e / (1 + e)
                    let inv = 1 / (1 + e)
                    storeVector(e * inv, y.plane(i, 0) + k)
                    storeVector(inv, y.plane(i, 1) + k)
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

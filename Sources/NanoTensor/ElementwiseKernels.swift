/// ReLU and dropout, forward and backward.
public enum ElementwiseKernels {
    public static func relu(_ x: Tensor, pool: ThreadPool = .shared) -> Tensor {
        let y = Tensor(x.shape, zeroed: false)
        let xp = x.data, yp = y.data
        chunks(x.count, pool) { lo, hi in for k in lo..<hi { yp[k] = max(xp[k], 0) } }
        return y
    }

    /// dx = dy where x > 0.
    public static func reluBackward(x: Tensor, dy: Tensor, pool: ThreadPool = .shared) -> Tensor {
        let dx = Tensor(x.shape, zeroed: false)
        reluBackward(x: x, dy: dy, into: dx, pool: pool)
        return dx
    }

    /// The same into `dx`, which may be `dy` itself (masking the gradient in place).
    public static func reluBackward(x: Tensor, dy: Tensor, into dx: Tensor, pool: ThreadPool = .shared) {
        require(x.count == dy.count && dx.count == dy.count, "relu gradient \(dy.shape) for \(x.shape)")
        let xp = x.data, gp = dy.data, dp = dx.data
        chunks(x.count, pool) { lo, hi in
            var k = lo
            while k + vectorWidth <= hi {
                storeVector(FloatVector.zero.replacing(with: loadVector(gp + k), where: loadVector(xp + k) .> 0), dp + k)
                k += vectorWidth
            }
            while k < hi { dp[k] = xp[k] > 0 ? gp[k] : 0; k += 1 }
        }
    }

    /// Inverted dropout mask as a tensor: 0 with probability `rate`, else 1 / (1 − rate); the
    /// same mask `DropoutMask` computes on the fly inside the fused kernels.
    public static func dropoutMask(_ shape: Shape, rate: Float, seed: UInt64, pool: ThreadPool = .shared) -> Tensor {
        let m = Tensor(shape, zeroed: false)
        let mask = DropoutMask(rate: rate, seed: seed)
        pool.parallelFor(shape.n * shape.c) { item, _ in
            let key = mask.planeKey(item)
            let p = m.data + item * shape.plane
            for k in 0..<shape.plane { p[k] = mask.apply(1, key: key, index: k) }
        }
        return m
    }

    public static func multiply(_ a: Tensor, _ b: Tensor, pool: ThreadPool = .shared) -> Tensor {
        require(a.shape == b.shape, "\(a.shape) and \(b.shape)")
        let y = Tensor(a.shape, zeroed: false)
        let ap = a.data, bp = b.data, yp = y.data
        chunks(a.count, pool) { lo, hi in for k in lo..<hi { yp[k] = ap[k] * bp[k] } }
        return y
    }

    /// a += b
    public static func addInPlace(_ a: Tensor, _ b: Tensor, pool: ThreadPool = .shared) {
        require(a.count == b.count, "\(a.count) and \(b.count) values")
        let ap = a.data, bp = b.data
        chunks(a.count, pool) { lo, hi in for k in lo..<hi { ap[k] += bp[k] } }
    }

    /// Splits 0..<count into a few contiguous chunks run in parallel.
    public static func chunks(_ count: Int, _ pool: ThreadPool, _ body: (Int, Int) -> Void) {
        let pieces = count < 65536 ? 1 : pool.threadCount * 4
        let size = (count + pieces - 1) / pieces
        pool.parallelFor(pieces) { i, _ in
            let lo = i * size, hi = min(count, lo + size)
            if lo < hi { body(lo, hi) }
        }
    }
}

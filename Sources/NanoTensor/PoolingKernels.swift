/// 2×2 max pooling with stride 2 ("valid") and nearest-neighbour 2× upsampling.
public enum PoolingKernels {
    public static func maxPool2x2(_ x: Tensor, pool: ThreadPool = .shared) -> Tensor {
        let s = x.shape
        let oh = s.h / 2, ow = s.w / 2
        let y = Tensor(Shape(s.n, s.c, oh, ow), zeroed: false)
        pool.parallelFor(s.n * s.c) { item, _ in
            let p = x.data + item * s.plane, q = y.data + item * oh * ow
            for r in 0..<oh { maxPoolRow(p + 2 * r * s.w, p + (2 * r + 1) * s.w, into: q + r * ow, count: ow) }
        }
        return y
    }

    /// One pooled row: o[k] = max of a[2k], a[2k+1], b[2k], b[2k+1] for k < count.
    @inline(__always) static func maxPoolRow(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                                             into o: UnsafeMutablePointer<Float>, count: Int) {
        var k = 0
        while k + vectorWidth <= count {
            let m0 = vmax(loadVector(a + 2 * k), loadVector(b + 2 * k))
            let m1 = vmax(loadVector(a + 2 * k + vectorWidth), loadVector(b + 2 * k + vectorWidth))
            storeVector(vmax(evenLanes(m0, m1), oddLanes(m0, m1)), o + k)
            k += vectorWidth
        }
        while k < count { o[k] = max(max(a[2 * k], a[2 * k + 1]), max(b[2 * k], b[2 * k + 1])); k += 1 }
    }

    /// Routes each output gradient to the first maximum of its window (row-major order).
    /// `PoolingReference` holds the plain twin.
    public static func maxPool2x2Backward(x: Tensor, dy: Tensor, pool: ThreadPool = .shared) -> Tensor {
        let s = x.shape
        // Every position of each 2×2 window is written; only an odd last row or column needs zeros.
        let dx = Tensor(s, zeroed: s.h % 2 == 1 || s.w % 2 == 1)
        maxPool2x2Backward(x: x, dy: dy, into: dx, accumulate: false, pool: pool)
        return dx
    }

    /// The same, added to `dx` (the input's gradient from its other consumers), so the pooled
    /// gradient never exists as a tensor of its own.
    public static func maxPool2x2Backward(x: Tensor, dy: Tensor, addingInto dx: Tensor, pool: ThreadPool = .shared) {
        require(dx.shape == x.shape, "gradient \(dx.shape) for input \(x.shape)")
        maxPool2x2Backward(x: x, dy: dy, into: dx, accumulate: true, pool: pool)
    }

    static func maxPool2x2Backward(x: Tensor, dy: Tensor, into dx: Tensor, accumulate: Bool, pool: ThreadPool) {
        let s = x.shape
        let oh = s.h / 2, ow = s.w / 2
        require(dy.shape == Shape(s.n, s.c, oh, ow), "pooled gradient \(dy.shape) for input \(s)")
        let xd = x.data, gd = dy.data, dd = dx.data
        pool.parallelFor(s.n * s.c) { item, _ in
            let p = xd + item * s.plane, g = gd + item * oh * ow, d = dd + item * s.plane
            for r in 0..<oh {
                let a = p + 2 * r * s.w, da = d + 2 * r * s.w
                maxPool2x2BackwardRows(a, a + s.w, UnsafePointer(g + r * ow), into: da, da + s.w, count: ow, accumulate: accumulate)
            }
        }
    }

    /// One row of windows: routes gr[k] to the first maximum (row-major) of the window over
    /// a[2k], a[2k+1], b[2k], b[2k+1], writing (or adding, with `accumulate`) da and db at
    /// columns 0..<2·count.
    @inline(__always)
    static func maxPool2x2BackwardRows(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ gr: UnsafePointer<Float>,
                                       into da: UnsafeMutablePointer<Float>, _ db: UnsafeMutablePointer<Float>,
                                       count ow: Int, accumulate: Bool) {
        let even = evenLaneMask
        // A vector of input columns holds vectorWidth / 2 whole windows, each as an (even,
        // odd) lane pair; swapPairs puts each lane's partner beside it.
        var x = 0
        while x + vectorWidth <= 2 * ow {
            let va = loadVector(a + x), vb = loadVector(b + x)
            let sa = swapPairs(va), sb = swapPairs(vb)
            let pairA = vmax(va, sa), m = vmax(pairA, vmax(vb, swapPairs(vb)))
            let gv = duplicateLanes(loadHalfVector(gr + x / 2))
            // First maximum in row-major order: the top row wins over the bottom row, and
            // within a row the even lane over the odd one.
            let takeA = (va .== m) .& (even .| (sa .!= m))
            let takeB = (vb .== m) .& (pairA .!= m) .& (even .| (sb .!= m))
            var outA = FloatVector.zero.replacing(with: gv, where: takeA)
            var outB = FloatVector.zero.replacing(with: gv, where: takeB)
            if accumulate { outA += loadVector(da + x); outB += loadVector(db + x) }
            storeVector(outA, da + x); storeVector(outB, db + x)
            x += vectorWidth
        }
        for k in (x / 2)..<ow {
            let v00 = a[2 * k], v01 = a[2 * k + 1], v10 = b[2 * k], v11 = b[2 * k + 1]
            let m = max(max(v00, v01), max(v10, v11))
            let gv = gr[k]
            let t00 = v00 == m, t01 = !t00 && v01 == m, t10 = !t00 && !t01 && v10 == m
            let t11 = !t00 && !t01 && !t10
            if accumulate {
                da[2 * k] += t00 ? gv : 0; da[2 * k + 1] += t01 ? gv : 0
                db[2 * k] += t10 ? gv : 0; db[2 * k + 1] += t11 ? gv : 0
            } else {
                da[2 * k] = t00 ? gv : 0; da[2 * k + 1] = t01 ? gv : 0
                db[2 * k] = t10 ? gv : 0; db[2 * k + 1] = t11 ? gv : 0
            }
        }
    }

    public static func upsample2x(_ x: Tensor, pool: ThreadPool = .shared) -> Tensor {
        let s = x.shape
        let y = Tensor(Shape(s.n, s.c, s.h * 2, s.w * 2), zeroed: false)
        let ow = s.w * 2
        pool.parallelFor(s.n * s.c) { item, _ in
            let p = x.data + item * s.plane, q = y.data + item * s.plane * 4
            for r in 0..<(s.h * 2) {
                let src = p + (r / 2) * s.w, dst = q + r * ow
                for k in 0..<ow { dst[k] = src[k >> 1] }
            }
        }
        return y
    }

    /// Sum of each 2×2 block of the upsampled gradient.
    public static func upsample2xBackward(dy: Tensor, pool: ThreadPool = .shared) -> Tensor {
        let s = dy.shape
        let oh = s.h / 2, ow = s.w / 2
        let dx = Tensor(Shape(s.n, s.c, oh, ow), zeroed: false)
        pool.parallelFor(s.n * s.c) { item, _ in
            let g = dy.data + item * s.plane, d = dx.data + item * oh * ow
            for r in 0..<oh {
                let a = g + 2 * r * s.w, b = a + s.w, o = d + r * ow
                var k = 0
                while 2 * k + 2 * vectorWidth <= 2 * ow {
                    // Pair sums land on the even lanes, in the scalar loop's order of additions.
                    let a0 = loadVector(a + 2 * k), a1 = loadVector(a + 2 * k + vectorWidth)
                    let b0 = loadVector(b + 2 * k), b1 = loadVector(b + 2 * k + vectorWidth)
                    let s0 = (a0 + swapPairs(a0)) + (b0 + swapPairs(b0))
                    let s1 = (a1 + swapPairs(a1)) + (b1 + swapPairs(b1))
                    storeVector(evenLanes(s0, s1), o + k)
                    k += vectorWidth
                }
                while k < ow { o[k] = (a[2 * k] + a[2 * k + 1]) + (b[2 * k] + b[2 * k + 1]); k += 1 }
            }
        }
        return dx
    }
}

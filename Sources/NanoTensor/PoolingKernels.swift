/// 2×2 max pooling with stride 2 ("valid") and nearest-neighbour 2× upsampling.
public enum PoolingKernels {
    public static func maxPool2x2(_ x: Tensor, pool: ThreadPool = .shared) -> Tensor {
        let s = x.shape
        let oh = s.h / 2, ow = s.w / 2
        let y = Tensor(Shape(s.n, s.c, oh, ow), zeroed: false)
        pool.parallelFor(s.n * s.c) { item, _ in
            let p = x.data + item * s.plane, q = y.data + item * oh * ow
            for r in 0..<oh {
                let a = p + 2 * r * s.w, b = a + s.w, o = q + r * ow
                for k in 0..<ow { o[k] = max(max(a[2 * k], a[2 * k + 1]), max(b[2 * k], b[2 * k + 1])) }
            }
        }
        return y
    }

    /// Routes each output gradient to the first maximum of its window (row-major order).
    /// (A vectorised version built on SIMDMask logic measured 2.5× slower: Swift lowered the mask
    /// operations lane by lane. `PoolingReference` holds the plain twin.)
    public static func maxPool2x2Backward(x: Tensor, dy: Tensor, pool: ThreadPool = .shared) -> Tensor {
        let s = x.shape
        let oh = s.h / 2, ow = s.w / 2
        // Every position of each 2×2 window is written; only an odd last row or column needs zeros.
        let dx = Tensor(s, zeroed: s.h % 2 == 1 || s.w % 2 == 1)
        let xd = x.data, gd = dy.data, dd = dx.data
        pool.parallelFor(s.n * s.c) { item, _ in
            let p = xd + item * s.plane, g = gd + item * oh * ow, d = dd + item * s.plane
            for r in 0..<oh {
                let a = p + 2 * r * s.w, b = a + s.w, da = d + 2 * r * s.w, db = da + s.w
                for k in 0..<ow {
                    let v00 = a[2 * k], v01 = a[2 * k + 1], v10 = b[2 * k], v11 = b[2 * k + 1]
                    let m = max(max(v00, v01), max(v10, v11))
                    let gv = g[r * ow + k]
                    // The first maximum in row-major order takes the gradient.
                    let t00 = v00 == m, t01 = !t00 && v01 == m, t10 = !t00 && !t01 && v10 == m
                    let t11 = !t00 && !t01 && !t10
                    da[2 * k] = t00 ? gv : 0; da[2 * k + 1] = t01 ? gv : 0
                    db[2 * k] = t10 ? gv : 0; db[2 * k + 1] = t11 ? gv : 0
                }
            }
        }
        return dx
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
                let a = g + 2 * r * s.w, b = a + s.w
                for k in 0..<ow { d[r * ow + k] = (a[2 * k] + a[2 * k + 1]) + (b[2 * k] + b[2 * k + 1]) }
            }
        }
        return dx
    }
}

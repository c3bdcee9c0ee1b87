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
    public static func maxPool2x2Backward(x: Tensor, dy: Tensor, pool: ThreadPool = .shared) -> Tensor {
        let s = x.shape
        let oh = s.h / 2, ow = s.w / 2
        let dx = Tensor(s)
        pool.parallelFor(s.n * s.c) { item, _ in
            let p = x.data + item * s.plane, g = dy.data + item * oh * ow, d = dx.data + item * s.plane
            for r in 0..<oh {
                for k in 0..<ow {
                    let i0 = 2 * r * s.w + 2 * k
                    var best = i0
                    for j in [i0 + 1, i0 + s.w, i0 + s.w + 1] where p[j] > p[best] { best = j }
                    d[best] += g[r * ow + k]
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

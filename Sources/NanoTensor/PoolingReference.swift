/// Plain twins of the vectorised pooling, upsampling and ReLU backward kernels, for the tests.
public enum PoolingReference {
    /// Each output gradient goes to the first maximum of its 2×2 window in row-major order.
    public static func maxPool2x2Backward(x: Tensor, dy: Tensor) -> Tensor {
        let s = x.shape
        let dx = Tensor(s)
        for i in 0..<s.n { for c in 0..<s.c { for r in 0..<(s.h / 2) { for k in 0..<(s.w / 2) {
            var best = (2 * r, 2 * k)
            for (y, xx) in [(2 * r, 2 * k + 1), (2 * r + 1, 2 * k), (2 * r + 1, 2 * k + 1)]
            where x[i, c, y, xx] > x[i, c, best.0, best.1] { best = (y, xx) }
            dx[i, c, best.0, best.1] = dy[i, c, r, k]
        } } } }
        return dx
    }

    /// Each input pixel's gradient is the sum of its 2×2 block of the upsampled gradient.
    public static func upsample2xBackward(dy: Tensor) -> Tensor {
        let s = dy.shape
        let dx = Tensor(Shape(s.n, s.c, s.h / 2, s.w / 2))
        for i in 0..<s.n { for c in 0..<s.c { for r in 0..<(s.h / 2) { for k in 0..<(s.w / 2) {
            dx[i, c, r, k] = (dy[i, c, 2 * r, 2 * k] + dy[i, c, 2 * r, 2 * k + 1])
                + (dy[i, c, 2 * r + 1, 2 * k] + dy[i, c, 2 * r + 1, 2 * k + 1])
        } } } }
        return dx
    }

    /// dx = dy where x > 0, else 0.
    public static func reluBackward(x: Tensor, dy: Tensor) -> Tensor {
        Tensor(x.shape, values: zip(x.array, dy.array).map { $0 > 0 ? $1 : 0 })
    }

    /// The maximum of each 2×2 window (stride 2; an odd last row or column is dropped).
    public static func maxPool2x2(_ x: Tensor) -> Tensor {
        let s = x.shape
        let y = Tensor(Shape(s.n, s.c, s.h / 2, s.w / 2))
        for i in 0..<s.n { for c in 0..<s.c { for r in 0..<(s.h / 2) { for k in 0..<(s.w / 2) {
            y[i, c, r, k] = max(max(x[i, c, 2 * r, 2 * k], x[i, c, 2 * r, 2 * k + 1]),
                                max(x[i, c, 2 * r + 1, 2 * k], x[i, c, 2 * r + 1, 2 * k + 1]))
        } } } }
        return y
    }
}

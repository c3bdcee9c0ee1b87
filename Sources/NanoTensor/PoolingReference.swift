/// Plain twin of the vectorised max-pool backward kernel, for the tests.
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
}

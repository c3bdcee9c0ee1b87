/// How an image is extended beyond its edges, named as `scipy.ndimage` names its `mode`s.
///
/// Shown for a row `a b c d` (the bars mark the image):
///
/// | case | left extension, image, right extension | scipy.ndimage | `numpy.pad` |
/// |---|---|---|---|
/// | `.mirror`  | `d c b | a b c d | c b a` | `'mirror'`  | `'reflect'` |
/// | `.reflect` | `c b a | a b c d | d c b` | `'reflect'` | `'symmetric'` |
/// | `.nearest` | `a a a | a b c d | d d d` | `'nearest'` | `'edge'` |
/// | `.wrap`    | `b c d | a b c d | a b c` | `'grid-wrap'` | `'wrap'` |
///
/// Extensions longer than the image continue the pattern periodically (period `2(n-1)` for
/// `.mirror`, `2n` for `.reflect`, `n` for `.wrap`), so any index is defined for any `n >= 1`.
public enum BorderMode: String, Sendable, Equatable, CaseIterable, Codable {
    /// Whole-sample symmetric (the edge sample is not repeated). What pyNanoFind's
    /// `median_filter` used: `skimage.util.pad(image, 3, 'reflect')` (NumPy `'reflect'`).
    case mirror
    /// Half-sample symmetric (the edge sample is repeated); scipy.ndimage's default.
    case reflect
    /// Replicate the edge sample.
    case nearest
    /// Periodic: index modulo the size (Keras' `fill_mode='wrap'`, used by pyNanoFind's rotations).
    case wrap

    /// The in-image index that index `i` of an axis with `n` samples reads under this mode.
    @inlinable
    public func index(_ i: Int, count n: Int) -> Int {
        if i >= 0 && i < n { return i }
        switch self {
        case .nearest:
            return i < 0 ? 0 : n - 1
        case .wrap:
            let m = i % n
            return m < 0 ? m + n : m
        case .reflect:
            let p = 2 * n
            var m = i % p
            if m < 0 { m += p }
            return m < n ? m : p - 1 - m
        case .mirror:
            if n == 1 { return 0 }
            let p = 2 * (n - 1)
            var m = i % p
            if m < 0 { m += p }
            return m < n ? m : p - m
        }
    }
}

/// A check on arguments that stays on under `-Ounchecked` (which drops `precondition`): used only
/// for cheap shape checks at API boundaries, never inside pixel loops.
@inline(__always)
func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
             file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError(message(), file: file, line: line) }
}

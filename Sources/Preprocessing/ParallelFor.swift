/// How this module's whole-image passes split their work: `parallel(count) { piece in … }` runs
/// `piece` 0 ..< count, each exactly once, in any order and possibly side by side. `serially`
/// runs them one after another; the segmentation pipeline passes its thread pool. No result
/// depends on which: every piece writes only its own part, and parts are combined in order.
public typealias ParallelFor = (_ count: Int, _ piece: (Int) -> Void) -> Void

/// Runs the pieces one after another.
public func serially(_ count: Int, _ piece: (Int) -> Void) {
    for i in 0..<count { piece(i) }
}

/// Items 0 ..< total cut into `count` contiguous pieces of `size` (the last may be shorter).
struct Pieces {
    let total: Int, count: Int, size: Int
    /// The items of piece `k`.
    @inline(__always) func range(_ k: Int) -> Range<Int> { (k * size)..<Swift.min(total, k * size + size) }
}

/// `total` items cut into at most `maximum` contiguous pieces of at least `minimum` items.
func pieces(_ total: Int, maximum: Int = 16, minimum: Int = 1 << 16) -> Pieces {
    let n = Swift.max(1, Swift.min(maximum, total / Swift.max(1, minimum)))
    let size = Swift.max(1, (total + n - 1) / n)
    return Pieces(total: total, count: (total + size - 1) / size, size: size)
}

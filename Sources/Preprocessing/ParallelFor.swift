/// How this module's whole-image passes split their work: `parallel(count) { piece in … }` runs
/// `piece` 0 ..< count, each exactly once, in any order and possibly side by side. `serially`
/// runs them one after another; the segmentation pipeline passes its thread pool. No result
/// depends on which: every piece writes only its own part, and parts are combined in order.
public typealias ParallelFor = (_ count: Int, _ piece: (Int) -> Void) -> Void

/// Runs the pieces one after another.
public func serially(_ count: Int, _ piece: (Int) -> Void) {
    for i in 0..<count { piece(i) }
}

/// `count` items cut into at most `maximum` contiguous pieces of at least `minimum` items:
/// (pieces, items per piece; the last may be shorter).
func pieces(_ count: Int, maximum: Int = 16, minimum: Int = 1 << 16) -> (count: Int, size: Int) {
    let n = Swift.max(1, Swift.min(maximum, count / Swift.max(1, minimum)))
    let size = Swift.max(1, (count + n - 1) / n)
    return ((count + size - 1) / size, size)
}

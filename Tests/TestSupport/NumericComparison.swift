/// Comparisons for the numeric tests that a NaN cannot slip through.
///
/// Swift's `max(a, b)` is `b >= a ? b : a` and `Sequence.max()` keeps its result unless
/// `result < e`: both drop a NaN that does not come first, so `worst < tolerance` built on them
/// passes a kernel that writes NaN anywhere but at index 0 (recycled buffers hold NaN).

/// The largest |a[i] − b[i]|; NaN when any pair gives NaN, +∞ when the counts differ (`zip`
/// would compare only the common prefix).
public func maxAbsDifference<T: BinaryFloatingPoint>(_ a: [T], _ b: [T]) -> T {
    guard a.count == b.count else { return .infinity }
    var worst: T = 0
    for i in a.indices { worst = worse(worst, abs(a[i] - b[i])) }
    return worst
}

/// The larger of two error figures, NaN if either is NaN.
@inline(__always) public func worse<T: FloatingPoint>(_ a: T, _ b: T) -> T {
    a.isNaN || b.isNaN ? .nan : Swift.max(a, b)
}

/// The largest element, NaN if any is NaN; nil when empty.
public func largest<T: FloatingPoint>(_ values: [T]) -> T? {
    guard var result = values.first else { return nil }
    for v in values { result = worse(result, v) }
    return result
}

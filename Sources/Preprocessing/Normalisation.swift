/// Intensity normalisation of micrographs before they reach the network.
///
/// ## Which one, and the default
/// `Normalisation.default` is `.percentile(lower: 0.5, upper: 99.5)`: per image, the 0.5 % and
/// 99.5 % intensity quantiles map to 0 and 1 and everything outside is clipped. Per-image,
/// because detector gain, dose and offset differ between microscopes and sessions, so one scale
/// for a whole dataset does not carry over to a new micrograph; robust, because a single hot
/// pixel or X-ray spike that escapes the median filter sets the maximum of min-max (or
/// divide-by-max) scaling and squeezes all real contrast into a sliver of [0, 1].
///
/// The paper's own recipe is available for reproducing it: pyNanoFind min-max normalised each
/// image after spike removal and then divided the stacked training set by its maximum
/// (`X / X.max()`, see `DatasetMaxNormaliser`).
public enum Normalisation: Sendable, Equatable {
    /// `(x - min) / (max - min)` per image (a constant image becomes all zeros).
    case minMax
    /// `(x - q_lower) / (q_upper - q_lower)` clipped to [0, 1], with `q_p` the p-th percentile
    /// (0...100, NumPy's default linear interpolation). Falls back to min-max when the two
    /// percentiles coincide.
    case percentile(lower: Float, upper: Float)
    /// `(x - median) / (1.4826 * MAD)`: zero median, unit robust standard deviation, not clipped
    /// (MAD = median absolute deviation; 1.4826 makes it the standard deviation for Gaussian
    /// data). Falls back to subtracting the median when MAD is 0.
    case medianMAD
    /// `x / divisor` (pyNanoFind's divide-by-dataset-maximum; see `DatasetMaxNormaliser`).
    case divide(by: Float)

    /// Robust per-image percentile scaling, 0.5 %–99.5 % (see the type's documentation).
    public static let `default` = Normalisation.percentile(lower: 0.5, upper: 99.5)

    /// The normalised image.
    public func apply(_ image: FloatImage) -> FloatImage {
        switch self {
        case .minMax: return minMaxNormalise(image)
        case let .percentile(lower, upper):
            return percentileNormalise(image, lower: lower, upper: upper)
        case .medianMAD: return medianMADStandardise(image)
        case let .divide(by: d): return scale(image, by: 1 / d)
        }
    }
}

/// Per-image min-max scaling to [0, 1]: `(x - min) / (max - min)`; a constant image becomes 0.
public func minMaxNormalise(_ image: consuming FloatImage) -> FloatImage {
    let (lo, hi) = image.minMax()
    guard hi > lo else { return FloatImage(width: image.width, height: image.height, repeating: 0) }
    // A range of denormals (below 2⁻¹²⁶) has no finite reciprocal: scaled up by a power of two
    // first, which changes no value's place in it.
    guard (1 / (hi - lo)).isFinite else { return minMaxNormalise(scale(consume image, by: 0x1p64)) }
    return affine(consume image, offset: lo, scale: 1 / (hi - lo), clip: false)
}

/// Per-image robust scaling: percentiles `lower` and `upper` (in percent, 0...100) map to 0 and 1,
/// values outside are clipped. Percentiles are found by selection (O(n)), not by sorting.
/// `parallel` splits the passes over the pixels (the same values either way).
public func percentileNormalise(_ image: consuming FloatImage, lower: Float = 0.5, upper: Float = 99.5,
                                parallel: ParallelFor = serially) -> FloatImage {
    require(0 <= lower && lower < upper && upper <= 100,
            "percentileNormalise: need 0 <= lower < upper <= 100, got \(lower), \(upper)")
    guard image.count > 0 else { return image }
    let q = percentiles(image.pixels, [Double(lower), Double(upper)], parallel: parallel)
    guard q[1] > q[0] else { return minMaxNormalise(consume image) }
    guard (1 / (q[1] - q[0])).isFinite else {  // denormals: see minMaxNormalise
        return percentileNormalise(scale(consume image, by: 0x1p64), lower: lower, upper: upper, parallel: parallel)
    }
    return affine(consume image, offset: q[0], scale: 1 / (q[1] - q[0]), clip: true, parallel: parallel)
}

/// Per-image robust standardisation: `(x - median) / (1.4826 * MAD)`, not clipped.
public func medianMADStandardise(_ image: consuming FloatImage) -> FloatImage {
    guard image.count > 0 else { return image }
    let median = percentiles(image.pixels, [50])[0]
    let deviations = image.pixels.map { abs($0 - median) }
    let mad = percentiles(deviations, [50])[0]
    let s: Float = mad > 0 ? 1 / (1.4826 * mad) : 1
    guard s.isFinite else { return medianMADStandardise(scale(consume image, by: 0x1p64)) }  // denormals: see minMaxNormalise
    return affine(consume image, offset: median, scale: s, clip: false)
}

/// `x * factor` for every sample.
func scale(_ image: FloatImage, by factor: Float) -> FloatImage {
    affine(image, offset: 0, scale: factor, clip: false)
}

/// `(x - offset) * scale`, optionally clipped to [0, 1]. The normalisations consume their image,
/// so the last owner's pixels (a median-filtered copy, say) are scaled where they lie instead of
/// being copied first (a fresh full-size array: 64 MB and its page faults for a 4096² image).
func affine(_ image: consuming FloatImage, offset: Float, scale: Float, clip: Bool, parallel: ParallelFor = serially) -> FloatImage {
    var out = consume image
    out.pixels.withUnsafeMutableBufferPointer { all in
        let parts = pieces(all.count)
        parallel(parts.count) { piece in
            let p = all.baseAddress!
            if clip {
                for i in parts.range(piece) { p[i] = smin(smax((p[i] - offset) * scale, 0), 1) }
            } else {
                for i in parts.range(piece) { p[i] = (p[i] - offset) * scale }
            }
        }
    }
    return out
}

/// pyNanoFind's dataset scaling: divide every image by the largest sample of the whole
/// (training) dataset, `X / X.max()`.
///
/// Accumulate the maximum over the training images, then apply the same divisor to training,
/// validation and inference images (store `maximum` with the model).
public struct DatasetMaxNormaliser: Sendable, Equatable, Codable {
    /// The largest sample seen so far (`-infinity` before any image).
    public private(set) var maximum: Float = -.infinity

    /// An empty normaliser; call `accumulate(_:)` for every image of the dataset.
    public init() {}

    /// The maximum of `images`.
    public init(images: [FloatImage]) {
        for image in images { accumulate(image) }
    }

    /// A normaliser with a known maximum (e.g. one stored with a model).
    public init(maximum: Float) { self.maximum = maximum }

    /// Takes `image`'s largest sample into account.
    public mutating func accumulate(_ image: FloatImage) {
        if image.count > 0 { maximum = Swift.max(maximum, image.minMax().max) }
    }

    /// `image / maximum`. The maximum must be positive and finite.
    public func apply(_ image: FloatImage) -> FloatImage {
        require(maximum > 0 && maximum.isFinite,
                "DatasetMaxNormaliser: maximum is \(maximum); it must be positive (accumulate images first)")
        return scale(image, by: 1 / maximum)
    }
}

/// Percentiles of `values` (each in percent, 0...100) with NumPy's default linear interpolation:
/// for p, the rank `r = p/100 * (n - 1)`; the result is `v[floor(r)] + frac(r) * (v[floor(r)+1] -
/// v[floor(r)])` in the sorted order. The order statistics come from `orderStatistics` (a
/// histogram, then selection among the few values of the wanted bins; selection over everything
/// for small inputs), never a full sort. `values` must not be empty; with NaN among them the
/// result is unspecified (such inputs take the selection path).
public func percentiles(_ values: [Float], _ ps: [Double], parallel: ParallelFor = serially) -> [Float] {
    require(!values.isEmpty, "percentiles: no values")
    let n = values.count
    // The order statistics wanted: rank k and, when interpolating, k + 1.
    let ranks = ps.map { p -> (k: Int, frac: Float) in
        let rank = Swift.min(Swift.max(p, 0), 100) / 100 * Double(n - 1)
        let k = Swift.min(Int(rank.rounded(.down)), n - 1)
        return (k, Float(rank - Double(k)))
    }
    let wanted = Array(Set(ranks.flatMap { $0.frac > 0 && $0.k + 1 < n ? [$0.k, $0.k + 1] : [$0.k] })).sorted()
    let order = orderStatistics(values, wanted, parallel: parallel)
    return ranks.map { r in
        let vk = order[r.k]!
        guard r.frac > 0 && r.k + 1 < n else { return vk }
        return vk + r.frac * (order[r.k + 1]! - vk)
    }
}

/// The values of rank `ranks` (0-based, ascending) in the sorted order of `values`. Large inputs
/// go through a histogram: one pass counts the values per bin of [min, max] (the bin of a value
/// is monotonic in it, so a bin holds a contiguous run of ranks), a second collects only the
/// values of the bins holding the wanted ranks, and selection runs on those few. Exact: the same
/// values as selection over everything, a few times faster on a 16-megapixel image.
/// `parallel` runs each pass in contiguous pieces, combined in order: the same values.
func orderStatistics(_ values: [Float], _ ranks: [Int], parallel: ParallelFor = serially) -> [Int: Float] {
    let n = values.count
    let bins = 1 << 14
    if n >= 4 * bins, let found = orderStatisticsByBrackets(values, ranks, parallel: parallel) { return found }
    let parts = pieces(n), count = parts.count
    var lo = values[0], hi = values[0], nan = false
    if n >= 4 * bins {
        var partial = [(lo: Float, hi: Float, nan: Bool)](repeating: (values[0], values[0], false), count: count)
        values.withUnsafeBufferPointer { v in partial.withUnsafeMutableBufferPointer { out in
            parallel(count) { piece in
                // A NaN or an infinity sends the ranks to plain selection below.
                let s = scanExtremes(v.baseAddress!, parts.range(piece))
                out[piece] = (s.min, s.max, !s.finite)
            }
        } }
        for p in partial { lo = smin(lo, p.lo); hi = smax(hi, p.hi); nan = nan || p.nan }
    }
    let scale = Float(bins) / (hi - lo)
    // The histogram needs every value's bin to be a number in 0 ..< bins: no NaN, and a span
    // that is finite in Float (else x − lo can overflow to infinity and the product to NaN).
    guard n >= 4 * bins, !nan, lo.isFinite, hi.isFinite, hi > lo, (hi - lo).isFinite, scale.isFinite, scale > 0 else {
        return orderStatisticsBySelection(values, ranks)
    }
    @inline(__always) func bin(_ x: Float) -> Int { Swift.min(bins - 1, Swift.max(0, Int((x - lo) * scale))) }
    // Counts per piece, added in piece order.
    var pieceCounts = [Int](repeating: 0, count: count * bins)
    values.withUnsafeBufferPointer { v in pieceCounts.withUnsafeMutableBufferPointer { all in
        parallel(count) { piece in
            let c = all.baseAddress! + piece * bins
            for i in parts.range(piece) { c[bin(v[i])] += 1 }
        }
    } }
    var counts = [Int](repeating: 0, count: bins)
    for piece in 0..<count { for b in 0..<bins { counts[b] += pieceCounts[piece * bins + b] } }
    // Each wanted rank's bin and the rank of the bin's first value.
    var start = [Int](repeating: 0, count: bins + 1)
    for b in 0..<bins { start[b + 1] = start[b] + counts[b] }
    var binOf: [Int: Int] = [:]
    for k in ranks {
        var l = 0, h = bins - 1  // the last bin whose start is <= k
        while l < h { let m = (l + h + 1) / 2; if start[m] <= k { l = m } else { h = m - 1 } }
        binOf[k] = l
    }
    // The wanted bins' values, gathered in one pass: slot[b] is the bin's place among them.
    let chosen = Array(Set(binOf.values)).sorted()
    var slot = [Int](repeating: -1, count: bins)
    for (j, b) in chosen.enumerated() { slot[b] = j }
    // Per piece, then joined in piece order: the values in the order one pass would meet them.
    var pieceMembers = [[[Float]]](repeating: chosen.map { _ in [] }, count: count)
    values.withUnsafeBufferPointer { v in slot.withUnsafeBufferPointer { slot in pieceMembers.withUnsafeMutableBufferPointer { out in
        parallel(count) { piece in
            var lists = chosen.map { _ in [Float]() }
            for i in parts.range(piece) { let x = v[i]; let j = slot[bin(x)]; if j >= 0 { lists[j].append(x) } }
            out[piece] = lists
        }
    } } }
    let members = chosen.indices.map { j -> [Float] in
        var list = [Float](); list.reserveCapacity(counts[chosen[j]])
        for piece in 0..<count { list.append(contentsOf: pieceMembers[piece][j]) }
        return list
    }
    var result: [Int: Float] = [:]
    for (j, b) in chosen.enumerated() {
        let inBin = ranks.filter { binOf[$0] == b }.map { $0 - start[b] }
        for (k, v) in orderStatisticsBySelection(members[j], inBin) { result[k + start[b]] = v }
    }
    return result
}

/// The same in one pass when a sample brackets the ranks, else nil: every wanted rank's value is
/// looked for between two values of a sample of 65536 (spread over the image: every
/// `stride`-th value, the stride odd so a sample visits every column), ranks 6 standard
/// deviations of the sampling (and 16) beyond on either side; one pass counts the values below
/// each bracket and collects those inside (blocks of 16 compared at once), and selection runs on
/// those few. Exact: nil, not a guess, when a rank's value is outside its bracket (then
/// `orderStatistics` counts a histogram), more than two brackets are wanted, or a value is NaN.
/// On 4096² values, one thread: the 0.5 and 99.5 % percentiles in 16–18 ms instead of 46–50
/// (Intel Xeon fam 6 mod 207).
package func orderStatisticsByBrackets(_ values: [Float], _ ranks: [Int], parallel: ParallelFor) -> [Int: Float]? {
    let n = values.count, m = 1 << 16
    // Counts per piece fit the lanes' Int32 (and ranks outside the values have no bracket).
    guard n < 1 << 31, ranks.allSatisfy({ (0..<n).contains($0) }) else { return nil }
    if ranks.isEmpty { return [:] }
    let stride = max(1, n / m) | 1
    // Each rank's bracket in the sample: its place there ± 6 standard deviations of a binomial
    // count, plus 16; overlapping brackets are joined. `bracketOf[k]`: rank k's bracket.
    var brackets: [(lo: Int, hi: Int)] = [], bracketOf: [Int: Int] = [:]
    for k in Set(ranks).sorted() {
        let q = Double(k) / Double(max(1, n - 1)), spread = 6 * (Double(m) * q * (1 - q)).squareRoot() + 16
        let j = q * Double(m - 1)
        let lo = max(0, Int(j - spread)), hi = min(m - 1, Int(j + spread) + 1)
        if let last = brackets.last, lo <= last.hi { brackets[brackets.count - 1].hi = max(last.hi, hi) } else { brackets.append((lo, hi)) }
        bracketOf[k] = brackets.count - 1
    }
    // At most two brackets (the usual: two percentiles), else the histogram.
    guard brackets.count <= 2 else { return nil }
    // The brackets' ends as values (the first from −∞ and the last to +∞ when they reach the
    // sample's ends).
    var sample = (0..<m).map { values[$0 * stride % n] }
    let ends = sample.withUnsafeMutableBufferPointer { a -> [Int: Float] in
        var lowerBound = 0, found: [Int: Float] = [:]
        for j in Set(brackets.flatMap { [$0.lo, $0.hi] }).sorted() { select(a, j, from: lowerBound); lowerBound = j; found[j] = a[j] }
        return found
    }
    sample = []
    let count = brackets.count
    let lows = brackets.map { $0.lo == 0 ? -Float.infinity : ends[$0.lo]! }
    let highs = brackets.map { $0.hi == m - 1 ? Float.infinity : ends[$0.hi]! }
    // One pass, in pieces: per bracket the values below it and those inside it; and any NaN.
    // Blocks of 16 values, compared at once; the few blocks with a value inside a bracket (or a
    // NaN) are gone through one by one.
    let lo0 = lows[0], hi0 = highs[0], lo1 = count > 1 ? lows[1] : Float.infinity, hi1 = count > 1 ? highs[1] : -Float.infinity
    let parts = pieces(n), pieceCount = parts.count
    var below = [Int](repeating: 0, count: pieceCount * 2), nan = [Bool](repeating: false, count: pieceCount)
    var inside = [[[Float]]](repeating: [], count: pieceCount)
    values.withUnsafeBufferPointer { v in below.withUnsafeMutableBufferPointer { below in
        nan.withUnsafeMutableBufferPointer { nan in inside.withUnsafeMutableBufferPointer { inside in
            parallel(pieceCount) { piece in
                var list0 = [Float](), list1 = [Float](), sawNaN = false
                var under0 = SIMD16<Int32>(), under1 = SIMD16<Int32>()
                let l0 = SIMD16<Float>(repeating: lo0), h0 = SIMD16<Float>(repeating: hi0)
                let l1 = SIMD16<Float>(repeating: lo1), h1 = SIMD16<Float>(repeating: hi1)
                let one = SIMD16<Int32>(repeating: 1)
                var tail0 = 0, tail1 = 0
                func look(_ x: Float) {
                    if x != x { sawNaN = true }
                    if x >= lo0 && x <= hi0 { list0.append(x) }
                    if x >= lo1 && x <= hi1 { list1.append(x) }
                }
                let range = parts.range(piece)
                var i = range.lowerBound
                while i + 16 <= range.upperBound {
                    let x = UnsafeRawPointer(v.baseAddress! + i).loadUnaligned(as: SIMD16<Float>.self)
                    under0 &+= one.replacing(with: 0, where: .!(x .< l0))
                    under1 &+= one.replacing(with: 0, where: .!(x .< l1))
                    let special = ((x .>= l0) .& (x .<= h0)) .| ((x .>= l1) .& (x .<= h1)) .| (x .!= x)
                    if any(special) { for k in 0..<16 { look(x[k]) } }
                    i += 16
                }
                while i < range.upperBound {
                    let x = v[i]
                    tail0 += x < lo0 ? 1 : 0; tail1 += x < lo1 ? 1 : 0
                    look(x); i += 1
                }
                below[2 * piece] = Int(under0.wrappedSum()) + tail0
                below[2 * piece + 1] = Int(under1.wrappedSum()) + tail1
                inside[piece] = [list0, list1]
                nan[piece] = sawNaN
            }
        } }
    } }
    guard !nan.contains(true) else { return nil }
    var result: [Int: Float] = [:]
    for b in 0..<count {
        let under = (0..<pieceCount).reduce(0) { $0 + below[$1 * 2 + b] }
        var members = [Float]()
        members.reserveCapacity(inside.reduce(0) { $0 + $1[b].count })
        for piece in 0..<pieceCount { members += inside[piece][b] }
        let mine = bracketOf.filter { $0.value == b }.map { $0.key - under }
        // A rank's value lies in its bracket when as many values are below as its rank allows.
        guard mine.allSatisfy({ $0 >= 0 && $0 < members.count }) else { return nil }
        for (k, v) in orderStatisticsBySelection(members, mine) { result[k + under] = v }
    }
    return result
}

/// The same by quickselect on one copy of all the values (O(n) expected per rank).
package func orderStatisticsBySelection(_ values: [Float], _ ranks: [Int]) -> [Int: Float] {
    var work = values
    var result: [Int: Float] = [:]
    work.withUnsafeMutableBufferPointer { a in
        var lowerBound = 0
        for k in ranks.sorted() {  // each selection only searches what lies above the last
            select(a, k, from: lowerBound)
            lowerBound = k
            result[k] = a[k]
        }
    }
    return result
}

/// Rearranges `a[lowerBound...]` so that `a[k]` holds the value it would have if sorted, with
/// nothing smaller after it and nothing larger before it (C++ `nth_element`). Hoare partition
/// with a median-of-three pivot; deterministic.
func select(_ a: UnsafeMutableBufferPointer<Float>, _ k: Int, from lowerBound: Int) {
    var lo = lowerBound, hi = a.count - 1
    while hi > lo {
        let m = lo + (hi - lo) / 2
        // Median of three as pivot.
        if a[m] < a[lo] { a.swapAt(m, lo) }
        if a[hi] < a[lo] { a.swapAt(hi, lo) }
        if a[hi] < a[m] { a.swapAt(hi, m) }
        let pivot = a[m]
        var i = lo, j = hi
        while i <= j {
            while a[i] < pivot { i += 1 }
            while pivot < a[j] { j -= 1 }
            if i <= j { a.swapAt(i, j); i += 1; j -= 1 }
        }
        // Now a[lo...j] <= pivot <= a[i...hi], and a[j+1..<i] == pivot.
        if k <= j { hi = j } else if k >= i { lo = i } else { return }
    }
}

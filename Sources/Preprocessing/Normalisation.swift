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
public func minMaxNormalise(_ image: FloatImage) -> FloatImage {
    let (lo, hi) = image.minMax()
    guard hi > lo else { return FloatImage(width: image.width, height: image.height, repeating: 0) }
    return affine(image, offset: lo, scale: 1 / (hi - lo), clip: false)
}

/// Per-image robust scaling: percentiles `lower` and `upper` (in percent, 0...100) map to 0 and 1,
/// values outside are clipped. Percentiles are found by selection (O(n)), not by sorting.
public func percentileNormalise(_ image: FloatImage, lower: Float = 0.5, upper: Float = 99.5) -> FloatImage {
    require(0 <= lower && lower < upper && upper <= 100,
            "percentileNormalise: need 0 <= lower < upper <= 100, got \(lower), \(upper)")
    guard image.count > 0 else { return image }
    let q = percentiles(image.pixels, [Double(lower), Double(upper)])
    guard q[1] > q[0] else { return minMaxNormalise(image) }
    return affine(image, offset: q[0], scale: 1 / (q[1] - q[0]), clip: true)
}

/// Per-image robust standardisation: `(x - median) / (1.4826 * MAD)`, not clipped.
public func medianMADStandardise(_ image: FloatImage) -> FloatImage {
    guard image.count > 0 else { return image }
    let median = percentiles(image.pixels, [50])[0]
    let deviations = image.pixels.map { abs($0 - median) }
    let mad = percentiles(deviations, [50])[0]
    let s: Float = mad > 0 ? 1 / (1.4826 * mad) : 1
    return affine(image, offset: median, scale: s, clip: false)
}

/// `x * factor` for every sample.
func scale(_ image: FloatImage, by factor: Float) -> FloatImage {
    affine(image, offset: 0, scale: factor, clip: false)
}

/// `(x - offset) * scale`, optionally clipped to [0, 1].
func affine(_ image: FloatImage, offset: Float, scale: Float, clip: Bool) -> FloatImage {
    var out = image
    out.pixels.withUnsafeMutableBufferPointer { p in
        if clip {
            for i in 0..<p.count { p[i] = smin(smax((p[i] - offset) * scale, 0), 1) }
        } else {
            for i in 0..<p.count { p[i] = (p[i] - offset) * scale }
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
/// v[floor(r)])` in the sorted order. Uses quickselect on one copy (O(n) expected per
/// percentile), never a full sort. `values` must not be empty or contain NaN.
public func percentiles(_ values: [Float], _ ps: [Double]) -> [Float] {
    require(!values.isEmpty, "percentiles: no values")
    var work = values
    let n = work.count
    // Process ranks in increasing order so each selection only searches what lies above the last.
    let order = ps.indices.sorted { ps[$0] < ps[$1] }
    var result = [Float](repeating: 0, count: ps.count)
    work.withUnsafeMutableBufferPointer { a in
        var lowerBound = 0
        for i in order {
            let p = Swift.min(Swift.max(ps[i], 0), 100)
            let rank = p / 100 * Double(n - 1)
            let k = Swift.min(Int(rank.rounded(.down)), n - 1)
            let frac = Float(rank - Double(k))
            select(a, k, from: lowerBound)
            lowerBound = k
            let vk = a[k]
            if frac > 0 && k + 1 < n {
                // The (k+1)-th order statistic is the minimum of the part above k.
                var next = a[k + 1]
                for j in (k + 2)..<n { next = smin(next, a[j]) }
                result[i] = vk + frac * (next - vk)
            } else {
                result[i] = vk
            }
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

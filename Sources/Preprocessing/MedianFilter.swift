/// 3×3 median filtering: pyNanoFind's removal of X-ray spikes (single bright or dark pixels
/// where a stray X-ray or cosmic ray hit the camera).
///
/// ## Edge rule
/// Pixels outside the image are taken from the `border` mode (see `BorderMode`). The default is
/// `.mirror` (`d c b | a b c d`, edge not repeated) because that is what pyNanoFind's own code
/// did: `utilities/realDataProcess.py::median_filter` pads with `skimage.util.pad(img, 3,
/// 'reflect')` (NumPy's `'reflect'`, which is scipy.ndimage's `'mirror'`) and then runs
/// `scipy.signal.medfilt2d(padded, 3)`, whose zero padding only touches the discarded margin.
/// Pass `.reflect` for `scipy.ndimage.median_filter(img, 3)` (its default `mode='reflect'`,
/// `c b a | a b c d`); both are tested on hand-computed arrays.
///
/// ## Speed
/// Per output row, in chunks of up to 1024 columns (their buffers stay in the first-level
/// cache), every column of the three source rows is sorted once, read where it lies (lo <= mid
/// <= hi, branch-free min/max; the border's column beyond an edge), and each output is
/// `med3(max(lo[x-1...x+1]), med3(mid[x-1...x+1]), min(hi[x-1...x+1]))` — the exact median of
/// the nine values in 19 min/max operations, in loops the compiler vectorises.
/// NaN samples give unspecified results.
/// `parallel` runs bands of rows side by side (the same values either way).
public func medianFilter3x3(_ image: FloatImage, border: BorderMode = .mirror, parallel: ParallelFor = serially) -> FloatImage {
    let w = image.width, h = image.height
    guard w > 0 && h > 0 else { return image }
    let left = border.index(-1, count: w), right = border.index(w, count: w)
    let bands = pieces(h, minimum: Swift.max(1, (1 << 16) / w))
    // Every pixel is written by its band (no zero-filling pass first, which would also take the
    // new array's page faults on one thread).
    let out = [Float](unsafeUninitializedCapacity: w * h) { dst, initialised in
        image.pixels.withUnsafeBufferPointer { src in
            parallel(bands.count) { piece in
                // Each band its own buffers: the sorted columns of a chunk of the row (and one
                // column either side), read straight from the three source rows.
                let chunk = Swift.min(w, 1024)
                var buffers = [Float](repeating: 0, count: 3 * (chunk + 2))
                buffers.withUnsafeMutableBufferPointer { all in
                    let lo = all.baseAddress!, mid = lo + chunk + 2, hi = mid + chunk + 2
                    let s = src.baseAddress!
                    for y in bands.range(piece) {
                        let a = s + border.index(y - 1, count: h) * w, b = s + y * w, c = s + border.index(y + 1, count: h) * w
                        // Sorts source column `x` of the three rows into slot j.
                        @inline(__always) func sortColumn(_ j: Int, _ x: Int) {
                            let p = a[x], q = b[x], r = c[x]
                            let mn = smin(p, q), mx = smax(p, q)
                            lo[j] = smin(mn, r)
                            let t = smax(mn, r)
                            mid[j] = smin(mx, t)
                            hi[j] = smax(mx, t)
                        }
                        // The output row as a local pointer: indexing the captured buffer
                        // reloaded its base every pixel and kept this loop scalar.
                        let row = dst.baseAddress! + y * w
                        var x0 = 0
                        while x0 < w {
                            let n = Swift.min(chunk, w - x0)
                            // Slot j holds column x0 − 1 + j (the border's column beyond an edge).
                            sortColumn(0, x0 == 0 ? left : x0 - 1)
                            for j in 1...n { sortColumn(j, x0 + j - 1) }
                            sortColumn(n + 1, x0 + n == w ? right : x0 + n)
                            for i in 0..<n {
                                let maxLo = smax(smax(lo[i], lo[i + 1]), lo[i + 2])
                                let minHi = smin(smin(hi[i], hi[i + 1]), hi[i + 2])
                                let medMid = med3(mid[i], mid[i + 1], mid[i + 2])
                                row[x0 + i] = med3(maxLo, medMid, minHi)
                            }
                            x0 += n
                        }
                    }
                }
            }
        }
        initialised = w * h
    }
    return FloatImage(width: w, height: h, pixels: out)
}

/// pyNanoFind's X-ray spike correction: a pixel is replaced by its 3×3 median only where it
/// differs from that median by more than `threshold` standard deviations of the whole image
/// (population standard deviation; pyNanoFind uses 5). Everything else is left untouched, so
/// lattice fringes keep their full resolution.
///
/// pyNanoFind's `median_filter` then min-max normalises the result: follow with
/// `minMaxNormalise` (or another `Normalisation`) to reproduce it.
public func removeSpikes(_ image: FloatImage, threshold: Float = 5,
                         border: BorderMode = .mirror) -> FloatImage {
    guard image.count > 0 else { return image }
    let median = medianFilter3x3(image, border: border)
    let limit = threshold * standardDeviation(image.pixels)
    var out = image
    out.pixels.withUnsafeMutableBufferPointer { o in
        median.pixels.withUnsafeBufferPointer { m in
            for i in 0..<o.count where abs(o[i] - m[i]) > limit { o[i] = m[i] }
        }
    }
    return out
}

/// Population standard deviation (divides by n), accumulated in double precision.
func standardDeviation(_ values: [Float]) -> Float {
    guard !values.isEmpty else { return 0 }
    return values.withUnsafeBufferPointer { p in
        var sum = 0.0
        for v in p { sum += Double(v) }
        let mean = sum / Double(p.count)
        var ss = 0.0
        for v in p { let d = Double(v) - mean; ss += d * d }
        return Float((ss / Double(p.count)).squareRoot())
    }
}

@inline(__always) func smin(_ a: Float, _ b: Float) -> Float { a < b ? a : b }
@inline(__always) func smax(_ a: Float, _ b: Float) -> Float { a > b ? a : b }
@inline(__always) func med3(_ a: Float, _ b: Float, _ c: Float) -> Float {
    smax(smin(a, b), smin(smax(a, b), c))
}

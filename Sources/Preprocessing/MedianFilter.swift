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
/// Per output row, the three source rows are copied into edge-padded buffers, every column of
/// three is sorted once (lo <= mid <= hi, branch-free min/max), and each output is
/// `med3(max(lo[x-1...x+1]), med3(mid[x-1...x+1]), min(hi[x-1...x+1]))` — the exact median of
/// the nine values in 19 min/max operations, in loops the compiler vectorises.
/// NaN samples give unspecified results.
/// `parallel` runs bands of rows side by side (the same values either way).
public func medianFilter3x3(_ image: FloatImage, border: BorderMode = .mirror, parallel: ParallelFor = serially) -> FloatImage {
    let w = image.width, h = image.height
    guard w > 0 && h > 0 else { return image }
    let pw = w + 2
    let left = border.index(-1, count: w), right = border.index(w, count: w)
    let bands = pieces(h, minimum: Swift.max(1, (1 << 16) / w))
    // Every pixel is written by its band (no zero-filling pass first, which would also take the
    // new array's page faults on one thread).
    let out = [Float](unsafeUninitializedCapacity: w * h) { dst, initialised in
        image.pixels.withUnsafeBufferPointer { src in
            parallel(bands.count) { piece in
                // Each band its own row buffers: the three source rows (edge-padded) and the
                // sorted columns.
                var buffers = [Float](repeating: 0, count: 6 * pw)
                buffers.withUnsafeMutableBufferPointer { all in
                    let base = all.baseAddress!
                    let a = base, b = base + pw, c = base + 2 * pw, lo = base + 3 * pw, mid = base + 4 * pw, hi = base + 5 * pw
                    func load(_ row: Int, into buf: UnsafeMutablePointer<Float>) {
                        let start = row * w
                        buf[0] = src[start + left]
                        for x in 0..<w { buf[x + 1] = src[start + x] }
                        buf[w + 1] = src[start + right]
                    }
                    for y in bands.range(piece) {
                        load(border.index(y - 1, count: h), into: a)
                        load(y, into: b)
                        load(border.index(y + 1, count: h), into: c)
                        // Sort each column of three.
                        for j in 0..<pw {
                            let p = a[j], q = b[j], r = c[j]
                            let mn = smin(p, q), mx = smax(p, q)
                            lo[j] = smin(mn, r)
                            let t = smax(mn, r)
                            mid[j] = smin(mx, t)
                            hi[j] = smax(mx, t)
                        }
                        // The output row as a local pointer: indexing the captured buffer
                        // reloaded its base every pixel and kept this loop scalar.
                        let row = dst.baseAddress! + y * w
                        for x in 0..<w {
                            let maxLo = smax(smax(lo[x], lo[x + 1]), lo[x + 2])
                            let minHi = smin(smin(hi[x], hi[x + 1]), hi[x + 2])
                            let medMid = med3(mid[x], mid[x + 1], mid[x + 2])
                            row[x] = med3(maxLo, medMid, minHi)
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

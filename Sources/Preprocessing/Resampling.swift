/// Resizing with an antialiasing filter, as Pillow's `Image.resize(..., BICUBIC)` does it: each
/// output sample is a weighted sum of the input samples under a Keys cubic kernel (a = −0.5)
/// centred on it, stretched by the reduction factor when shrinking so that the filter removes
/// what the new sampling cannot hold. Separable: rows first, then columns; weights are
/// normalised per output sample, so a constant image stays constant. Edges replicate: taps
/// beyond the edge take the edge pixel, where Pillow drops them and renormalises, so the
/// outermost pixel or two differ from Pillow's (a 512 → 256 ramp's first value 0.508 against
/// 0.544).
///
/// Both passes run in bands of rows through `parallel`; every output sample is summed in the
/// same order however the bands fall, so the result does not depend on it. With `clamp`, the
/// values are clamped to it as they are stored (the filter overshoots near sharp edges).
public func resample(_ image: FloatImage, width: Int, height: Int, clamp: ClosedRange<Float>? = nil,
                     parallel: ParallelFor = serially) -> FloatImage {
    require(width > 0 && height > 0 && image.width > 0 && image.height > 0,
            "resample: \(image.width)x\(image.height) to \(width)x\(height)")
    if width == image.width && height == image.height {
        guard let clamp else { return image }
        var out = image
        let rows = pieces(image.height, minimum: max(1, (1 << 16) / image.width))
        out.pixels.withUnsafeMutableBufferPointer { p in
            let base = p.baseAddress!
            parallel(rows.count) { k in
                let r = rows.range(k)
                for i in (r.lowerBound * width)..<(r.upperBound * width) { base[i] = min(max(base[i], clamp.lowerBound), clamp.upperBound) }
            }
        }
        return out
    }
    let wx = ResamplingWeights(from: image.width, to: width)
    let wy = ResamplingWeights(from: image.height, to: height)
    let w = width, iw = image.width
    // Rows first: every input row to `width` samples.
    let inRows = pieces(image.height, minimum: max(1, (1 << 16) / w))
    let horizontal = [Float](unsafeUninitializedCapacity: w * image.height) { buffer, count in
        let h = buffer.baseAddress!
        image.pixels.withUnsafeBufferPointer { srcBuffer in
            let src = srcBuffer.baseAddress!
            wx.withTaps { start, index, weight in
                parallel(inRows.count) { k in
                    for y in inRows.range(k) {
                        let row = src + y * iw, out = h + y * w
                        for x in 0..<w {
                            var s: Float = 0
                            for t in start[x]..<start[x + 1] { s += weight[t] * row[Int(index[t])] }
                            out[x] = s
                        }
                    }
                }
            }
        }
        count = w * image.height
    }
    // Then columns: each output row a weighted sum of rows of `horizontal`, in tap order.
    let outRows = pieces(height, minimum: max(1, (1 << 16) / w))
    let out = [Float](unsafeUninitializedCapacity: w * height) { buffer, count in
        let o = buffer.baseAddress!
        horizontal.withUnsafeBufferPointer { hBuffer in
            let h = hBuffer.baseAddress!
            wy.withTaps { start, index, weight in
                parallel(outRows.count) { k in
                    for y in outRows.range(k) {
                        let dst = o + y * w
                        for x in 0..<w { dst[x] = 0 }
                        for t in start[y]..<start[y + 1] {
                            let src = h + Int(index[t]) * w, wt = weight[t]
                            for x in 0..<w { dst[x] += wt * src[x] }
                        }
                        if let clamp {
                            for x in 0..<w { dst[x] = min(max(dst[x], clamp.lowerBound), clamp.upperBound) }
                        }
                    }
                }
            }
        }
        count = w * height
    }
    return FloatImage(width: width, height: height, pixels: out)
}

/// The taps of a 1-D resampling from `n` to `m` samples (pixel centres aligned, as Pillow does),
/// flat: output sample j sums weight[t] · input[index[t]] for t in start[j] ..< start[j + 1].
struct ResamplingWeights {
    var start: [Int] = [0]
    var index: [Int32] = []
    var weight: [Float] = []

    init(from n: Int, to m: Int) {
        let scale = Double(n) / Double(m)
        let stretch = max(1, scale)  // widen the kernel when shrinking
        let support = 2 * stretch
        start.reserveCapacity(m + 1)
        var list: [(Int, Double)] = []
        for j in 0..<m {
            let centre = (Double(j) + 0.5) * scale
            let lo = Int((centre - support).rounded(.down)), hi = Int((centre + support).rounded(.up))
            list.removeAll(keepingCapacity: true)
            var total = 0.0
            for i in lo...hi {
                let w = ResamplingWeights.cubic((Double(i) + 0.5 - centre) / stretch)
                guard w != 0 else { continue }
                list.append((min(max(i, 0), n - 1), w)); total += w
            }
            for (i, w) in list { index.append(Int32(i)); weight.append(Float(w / total)) }
            start.append(index.count)
        }
    }

    /// The three arrays as pointers, for the passes' inner loops.
    func withTaps<R>(_ body: (UnsafePointer<Int>, UnsafePointer<Int32>, UnsafePointer<Float>) -> R) -> R {
        start.withUnsafeBufferPointer { s in
            index.withUnsafeBufferPointer { i in
                weight.withUnsafeBufferPointer { w in body(s.baseAddress!, i.baseAddress!, w.baseAddress!) }
            }
        }
    }

    /// Keys' cubic convolution kernel with a = −0.5 (Pillow's BICUBIC).
    static func cubic(_ x: Double) -> Double {
        let a = -0.5, t = abs(x)
        if t < 1 { return ((a + 2) * t - (a + 3)) * t * t + 1 }
        if t < 2 { return (((t - 5) * t + 8) * t - 4) * a }
        return 0
    }
}

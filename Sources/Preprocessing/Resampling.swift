/// Resizing with an antialiasing filter, as Pillow's `Image.resize(..., BICUBIC)` does it: each
/// output sample is a weighted sum of the input samples under a Keys cubic kernel (a = −0.5)
/// centred on it, stretched by the reduction factor when shrinking so that the filter removes
/// what the new sampling cannot hold. Separable: rows first, then columns; weights are
/// normalised per output sample, so a constant image stays constant. Edges replicate.
public func resample(_ image: FloatImage, width: Int, height: Int) -> FloatImage {
    require(width > 0 && height > 0 && image.width > 0 && image.height > 0,
            "resample: \(image.width)x\(image.height) to \(width)x\(height)")
    if width == image.width && height == image.height { return image }
    let wx = ResamplingWeights(from: image.width, to: width)
    let wy = ResamplingWeights(from: image.height, to: height)
    var horizontal = [Float](repeating: 0, count: width * image.height)
    image.pixels.withUnsafeBufferPointer { src in
        for y in 0..<image.height {
            let row = y * image.width
            for x in 0..<width {
                var s: Float = 0
                for (i, w) in wx.taps[x] { s += w * src[row + i] }
                horizontal[y * width + x] = s
            }
        }
    }
    var out = [Float](repeating: 0, count: width * height)
    for y in 0..<height {
        for (i, w) in wy.taps[y] {
            let src = i * width, dst = y * width
            for x in 0..<width { out[dst + x] += w * horizontal[src + x] }
        }
    }
    return FloatImage(width: width, height: height, pixels: out)
}

/// The taps of a 1-D resampling from `n` to `m` samples (pixel centres aligned, as Pillow does).
struct ResamplingWeights {
    var taps: [[(Int, Float)]]

    init(from n: Int, to m: Int) {
        let scale = Double(n) / Double(m)
        let stretch = max(1, scale)  // widen the kernel when shrinking
        let support = 2 * stretch
        taps = (0..<m).map { j in
            let centre = (Double(j) + 0.5) * scale
            let lo = Int((centre - support).rounded(.down)), hi = Int((centre + support).rounded(.up))
            var list: [(Int, Double)] = []
            var total = 0.0
            for i in lo...hi {
                let w = ResamplingWeights.cubic((Double(i) + 0.5 - centre) / stretch)
                guard w != 0 else { continue }
                list.append((min(max(i, 0), n - 1), w)); total += w
            }
            return list.map { ($0.0, Float($0.1 / total)) }
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


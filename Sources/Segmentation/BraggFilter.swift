import Foundation
import ParticleAnalysis
import Preprocessing

/// Crystalline regions found without learning, by Bragg filtering (the paper's baseline, made
/// automatic): the log power spectrum minus its 25×25 median (which removes the smooth
/// background and the Thon rings of the carbon film), peaks above a robust threshold inside the
/// band of lattice spacings, a smooth mask around them, the inverse transform of the filtered
/// spectrum, its local amplitude, Otsu's threshold, and a clean-up (holes filled, objects below
/// `minimumAreaNm2` dropped). An image with no peak above the threshold has no particles.
public struct BraggFilter: Sendable {
    /// Lattice spacings (nm) searched for peaks.
    public var spacing: ClosedRange<Double> = 0.1...0.45
    /// Peaks: log power above median + k · 1.4826 · MAD of the band (pure noise never reaches k = 5).
    public var peakSigma = 6.0
    /// Gaussian smoothing of the log-power residual before peaks are looked for (frequency pixels).
    public var peakSmoothing = 1.5
    public var backgroundWindow = 25
    /// Smoothing of the amplitude map (nm).
    public var amplitudeSigmaNm = 0.4
    public var minimumAreaNm2 = 1.0

    public init() {}

    public struct Result: Sendable {
        public var mask: BinaryMask
        public var amplitude: FloatImage
        /// Peak pixels kept in the spectrum (0 means no lattice found).
        public var peaks: Int
        /// What a user should know about the image's pixels that show no specimen (as
        /// `Segmenter`'s notes): NaN or infinite ones, flat padding, nothing to filter.
        public var notes: [String] = []
    }

    /// Why images of `pixelSizeNm` nm per pixel cannot be Bragg filtered, or nil: the finest
    /// spacing an image resolves in every direction is two pixels (Nyquist along the axes; only
    /// the diagonals reach √2 pixels), and it must reach into `spacing` (a coarser image would
    /// come out with no crystal at all, said as if it had none).
    /// The smallest side an image can be filtered at: its spectrum's background is a median over
    /// `backgroundWindow` frequency pixels, and a lattice peak must stand apart from it (images of
    /// 8–32 px reported "0.0 % crystalline" for a particle that a 64-px crop of it shows).
    public static let smallestSide = 64

    /// Why an image of `width` × `height` pixels cannot be filtered, or nil.
    public func sizeProblem(width: Int, height: Int) -> String? {
        guard min(width, height) < BraggFilter.smallestSide else { return nil }
        return "is \(width)×\(height) pixels; Bragg filtering needs at least \(BraggFilter.smallestSide) a side (a lattice peak must stand out of the spectrum's background)"
    }

    public func problem(pixelSizeNm: Double) -> String? {
        guard 2 * pixelSizeNm > spacing.upperBound else { return nil }
        return String(format: "at %.4g nm per pixel the finest lattice spacing resolved in every direction is %.4g nm, above the %.2g–%.2g nm Bragg filtering looks for (it needs %.4g nm per pixel or finer)",
                      pixelSizeNm, 2 * pixelSizeNm, spacing.lowerBound, spacing.upperBound, spacing.upperBound / 2)
    }

    /// The finest spacing of the densest planes of the common fcc metals (Au, Ag, Pt, Pd: {111}
    /// at 0.22–0.24 nm, nm).
    public static let metalSpacingNm = 0.22

    /// What a user should know before filtering images of `pixelSizeNm` nm per pixel that it
    /// can filter (`problem` nil), or nil: an image too coarse to resolve the densest planes of
    /// the common metals in every direction shows their particles by other planes, if at all.
    public func warning(pixelSizeNm: Double) -> String? {
        guard problem(pixelSizeNm: pixelSizeNm) == nil, 2 * pixelSizeNm > BraggFilter.metalSpacingNm else { return nil }
        return String(format: "at %.4g nm per pixel only lattice spacings of %.4g nm or more are resolved in every direction: the densest planes of Au, Ag, Pt and Pd (0.22–0.24 nm) are not, and such particles showing no other planes are missed (%.4g nm per pixel or finer resolves them)",
                      pixelSizeNm, 2 * pixelSizeNm, BraggFilter.metalSpacingNm / 2)
    }

    /// The mask of `image` (raw intensities) at `pixelSizeNm` nm per pixel.
    public func segment(_ image: FloatImage, pixelSizeNm: Double) -> Result {
        let w = image.width, h = image.height, n = w * h
        // What shows no specimen (an aligned sum's flat padding at the edges, NaN pixels) is
        // filled with pixels drawn from the others before the transform, as segment fills it (the
        // edge of a flat fill was taken for a crystal), and is never crystal.
        var image = image
        let nonFinite = image.nonFinitePixels(), padding = image.edgePadding()
        func nothing(_ note: String, after notes: [String] = []) -> Result {
            Result(mask: BinaryMask(width: w, height: h), amplitude: FloatImage(width: w, height: h), peaks: 0, notes: notes + [note])
        }
        if nonFinite.mask?.foregroundCount == n { return nothing(OutsideNotes.allNonFinite(nothingTo: "filter", no: "crystal")) }
        var notes: [String] = []
        if let m = nonFinite.mask { notes.append(OutsideNotes.nonFinite(m.foregroundCount, never: "crystal")) }
        // One value besides any NaN (the extremes leave NaN out): nothing to filter.
        if nonFinite.min == nonFinite.max {
            return nothing(OutsideNotes.oneValue(nonFinite.min, nothingTo: "filter", no: "crystal"), after: notes)
        }
        let outside = BinaryMask.union(padding, nonFinite.mask)
        if padding?.foregroundCount == n { return nothing(OutsideNotes.allPadding(nothingTo: "filter", no: "crystal")) }
        if outside?.foregroundCount == n { return nothing(OutsideNotes.allOutside(nothingTo: "filter", no: "crystal")) }
        if let m = padding { notes.append(OutsideNotes.padding(m.foregroundCount, never: "crystal")) }
        if let outside { image.fillLikeOthers(outside) }
        let fft = FFT2D(width: w, height: h)
        // Zero mean, edges tapered (a Tukey window over 8 % of each side) against the edge cross.
        let normalised = percentileNormalise(image)
        let mean = normalised.pixels.reduce(0, +) / Float(max(1, n))
        func taper(_ i: Int, _ count: Int) -> Float {
            let edge = max(1, count * 8 / 100), d = min(i, count - 1 - i)
            return d >= edge ? 1 : Float(0.5 - 0.5 * cos(Double.pi * Double(d) / Double(edge)))
        }
        var input = [Float](repeating: 0, count: n)
        for y in 0..<h { let ty = taper(y, h); for x in 0..<w { input[y * w + x] = (normalised.pixels[y * w + x] - mean) * ty * taper(x, w) } }
        let spectrum = fft.forward(real: input)
        var logPower = [Float](repeating: 0, count: n)
        for i in 0..<n { logPower[i] = logf(spectrum[2 * i] * spectrum[2 * i] + spectrum[2 * i + 1] * spectrum[2 * i + 1] + 1e-12) }
        // Smoothed, so that the exponential speckle of the power of noise averages out while a
        // lattice peak (broadened by the particle's finite size) keeps its height.
        let residual = gaussianBlur(FloatImage(width: w, height: h, pixels: zip(logPower, periodicMedian(logPower, width: w, height: h, window: backgroundWindow)).map { $0 - $1 }),
                                    sigma: peakSmoothing, border: .wrap).pixels
        // The band of lattice spacings, in cycles per pixel.
        func frequency(_ i: Int, _ count: Int) -> Double { Double(i <= count / 2 ? i : i - count) / Double(count) }
        var band: [Int] = []
        for y in 0..<h { for x in 0..<w {
            let f = (frequency(x, w) * frequency(x, w) + frequency(y, h) * frequency(y, h)).squareRoot()
            if f > 0, spacing.contains(pixelSizeNm / f) { band.append(y * w + x) }
        } }
        let values = band.map { residual[$0] }
        guard values.count > 16 else { return Result(mask: BinaryMask(width: w, height: h), amplitude: FloatImage(width: w, height: h), peaks: 0, notes: notes) }
        let median = percentiles(values, [50])[0]
        let mad = percentiles(values.map { abs($0 - median) }, [50])[0]
        let threshold = median + Float(peakSigma * 1.4826) * mad
        var peakMask = [Float](repeating: 0, count: n)
        var peaks = 0
        for i in band where residual[i] > threshold { peakMask[i] = 1; peaks += 1 }
        if ProcessInfo.processInfo.environment["NANOFIND_DEBUG"] != nil {
            try? FileHandle.standardError.write(contentsOf: Data("bragg: band \(values.count) median \(median) mad \(mad) threshold \(threshold) peaks \(peaks) max \(values.max() ?? 0)\n".utf8))
        }
        guard peaks > 0 else { return Result(mask: BinaryMask(width: w, height: h), amplitude: FloatImage(width: w, height: h), peaks: 0, notes: notes) }
        // A smooth mask around the peaks (Gaussian, periodic), at most 1.
        let smooth = gaussianBlur(FloatImage(width: w, height: h, pixels: peakMask), sigma: 1.5, border: .wrap)
        let scale = 1 / max(1e-6, smooth.pixels.max() ?? 1)
        var filtered = spectrum
        for i in 0..<n {
            let m = min(1, smooth.pixels[i] * scale * 3)
            filtered[2 * i] *= m; filtered[2 * i + 1] *= m
        }
        let lattice = fft.inverseNormalised(filtered)
        var amplitude = [Float](repeating: 0, count: n)
        // The taper scaled the lattice near the edges down with the rest: undone here, or particles
        // at the edge came out a quarter smaller and no longer touching it. Only down to a half:
        // the filtered value at a pixel averages less-tapered pixels around it, and a larger
        // boost lit the carbon along every edge (a quarter: 55 % precision in the outer 16 px).
        for y in 0..<h {
            let ty = taper(y, h)
            for x in 0..<w {
                let i = y * w + x
                amplitude[i] = (lattice[2 * i] * lattice[2 * i] + lattice[2 * i + 1] * lattice[2 * i + 1]).squareRoot() / max(0.5, ty * taper(x, w))
            }
        }
        let local = gaussianBlur(FloatImage(width: w, height: h, pixels: amplitude), sigma: amplitudeSigmaNm / pixelSizeNm)
        let t = otsuThreshold(local.pixels)
        let raw = BinaryMask(width: w, height: h, values: (0..<n).map { local.pixels[$0] > t && (outside?.values[$0] ?? 0) == 0 ? 1 : 0 })
        let cleaned = ParticleMeasurement(mask: raw, pixelSizeNm: pixelSizeNm, minimumAreaNm2: minimumAreaNm2)
        let mask = BinaryMask(width: w, height: h, values: cleaned.labels.labels.map { $0 == 0 ? 0 : 1 })
        return Result(mask: mask, amplitude: local, peaks: peaks, notes: notes)
    }
}

/// Median over a window × window neighbourhood with periodic wrap (a spectrum is periodic),
/// evaluated every 4 pixels and bilinearly interpolated in between: the background varies slowly.
func periodicMedian(_ values: [Float], width w: Int, height h: Int, window: Int) -> [Float] {
    let step = 4, r = window / 2
    let gw = (w + step - 1) / step + 1, gh = (h + step - 1) / step + 1
    var grid = [Float](repeating: 0, count: gw * gh)
    var scratch = [Float](repeating: 0, count: window * window)
    for gy in 0..<gh { for gx in 0..<gw {
        let cx = gx * step, cy = gy * step
        var k = 0
        for dy in -r...r { let y = ((cy + dy) % h + h) % h; for dx in -r...r { scratch[k] = values[y * w + ((cx + dx) % w + w) % w]; k += 1 } }
        grid[gy * gw + gx] = percentiles(Array(scratch[0..<k]), [50])[0]
    } }
    var out = [Float](repeating: 0, count: w * h)
    for y in 0..<h {
        let gy = y / step, fy = Float(y % step) / Float(step)
        for x in 0..<w {
            let gx = x / step, fx = Float(x % step) / Float(step)
            let a = grid[gy * gw + gx], b = grid[gy * gw + gx + 1], c = grid[(gy + 1) * gw + gx], d = grid[(gy + 1) * gw + gx + 1]
            out[y * w + x] = (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy
        }
    }
    return out
}

/// Otsu's threshold: the value that maximises the between-class variance (256-bin histogram).
func otsuThreshold(_ values: [Float]) -> Float {
    guard let lo = values.min(), let hi = values.max(), hi > lo else { return values.first ?? 0 }
    let bins = 256
    var histogram = [Double](repeating: 0, count: bins)
    for v in values { histogram[min(bins - 1, Int((v - lo) / (hi - lo) * Float(bins)))] += 1 }
    let total = Double(values.count)
    let sumAll = histogram.enumerated().reduce(0.0) { $0 + Double($1.offset) * $1.element }
    var weightB = 0.0, sumB = 0.0, best = 0.0, bestBin = 0
    for t in 0..<bins {
        weightB += histogram[t]
        guard weightB > 0, total - weightB > 0 else { continue }
        sumB += Double(t) * histogram[t]
        let meanB = sumB / weightB, meanF = (sumAll - sumB) / (total - weightB)
        let between = weightB * (total - weightB) * (meanB - meanF) * (meanB - meanF)
        if between > best { best = between; bestBin = t }
    }
    return lo + (hi - lo) * Float(bestBin + 1) / Float(bins)
}

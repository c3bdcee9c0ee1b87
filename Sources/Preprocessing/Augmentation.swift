import Foundation

// Data augmentation for training tiles. Geometric operations are applied identically to the
// image and its mask: the image is resampled bilinearly, the mask by nearest neighbour, so the
// mask stays strictly 0/1 (never soft labels). Intensity operations touch only the image.
//
// Coordinates: x = column (0 = left), y = row (0 = top); rotations and zooms are about the image
// centre ((width - 1) / 2, (height - 1) / 2). Positive angles turn the picture counter-clockwise
// as displayed (row 0 at the top), like `numpy.rot90` and `scipy.ndimage.rotate`.

// MARK: Flips

extension FloatImage {
    /// Mirrored left-right (column x becomes column width - 1 - x).
    public func flippedHorizontally() -> FloatImage {
        FloatImage(width: width, height: height, pixels: flipColumns(pixels, width, height))
    }
    /// Mirrored top-bottom (row y becomes row height - 1 - y).
    public func flippedVertically() -> FloatImage {
        FloatImage(width: width, height: height, pixels: flipRows(pixels, width, height))
    }
}

extension BinaryMask {
    /// Mirrored left-right (column x becomes column width - 1 - x).
    public func flippedHorizontally() -> BinaryMask {
        var m = self; m.values = flipColumns(values, width, height); return m
    }
    /// Mirrored top-bottom (row y becomes row height - 1 - y).
    public func flippedVertically() -> BinaryMask {
        var m = self; m.values = flipRows(values, width, height); return m
    }
}

private func flipColumns<T>(_ a: [T], _ w: Int, _ h: Int) -> [T] {
    var out = a
    for y in 0..<h { for x in 0..<w { out[y * w + x] = a[y * w + (w - 1 - x)] } }
    return out
}

private func flipRows<T>(_ a: [T], _ w: Int, _ h: Int) -> [T] {
    var out = a
    for y in 0..<h { out[(y * w)..<((y + 1) * w)] = a[((h - 1 - y) * w)..<((h - y) * w)] }
    return out
}

// MARK: Rotation and zoom

/// A rotation by `degrees` (counter-clockwise as displayed) combined with a zoom by `zoom`
/// (> 1 enlarges the content) about the image centre, stored as the output-to-source mapping.
public struct GeometricTransform: Sendable, Equatable {
    public var degrees: Double
    public var zoom: Double
    public init(degrees: Double = 0, zoom: Double = 1) {
        require(zoom > 0 && zoom.isFinite, "GeometricTransform: zoom must be positive, got \(zoom)")
        self.degrees = degrees; self.zoom = zoom
    }

    /// cos and sin of the angle, exact (0, ±1) for multiples of 90° so that such rotations
    /// move pixels exactly.
    var cosSin: (Double, Double) {
        let r = degrees.truncatingRemainder(dividingBy: 360)
        let turn = r < 0 ? r + 360 : r
        switch turn {
        case 0: return (1, 0)
        case 90: return (0, 1)
        case 180: return (-1, 0)
        case 270: return (0, -1)
        default:
            let t = turn * Double.pi / 180
            return (cos(t), sin(t))
        }
    }

    /// The 2×2 matrix taking an output offset from the centre to the source offset.
    var inverseMatrix: (a: Double, b: Double, c: Double, d: Double) {
        let (cs, sn) = cosSin
        return (cs / zoom, -sn / zoom, sn / zoom, cs / zoom)
    }

    /// True when the transform leaves every pixel where it is.
    var isIdentity: Bool { cosSin == (1, 0) && zoom == 1 }
}

/// `image` rotated by `degrees` about its centre (bilinear; `fill` defines samples from outside,
/// default `.wrap` as in pyNanoFind's Keras augmentation). 0° and 360° return the image exactly.
public func rotate(_ image: FloatImage, degrees: Double, fill: BorderMode = .wrap) -> FloatImage {
    transform(image, GeometricTransform(degrees: degrees), fill: fill)
}

/// `mask` rotated exactly like `rotate(_:degrees:fill:)` rotates its image, by nearest neighbour.
public func rotate(_ mask: BinaryMask, degrees: Double, fill: BorderMode = .wrap) -> BinaryMask {
    transform(mask, GeometricTransform(degrees: degrees), fill: fill)
}

/// `image` zoomed by `factor` about its centre (> 1 zooms in), same size, bilinear.
public func zoom(_ image: FloatImage, factor: Double, fill: BorderMode = .wrap) -> FloatImage {
    transform(image, GeometricTransform(zoom: factor), fill: fill)
}

/// `mask` zoomed like its image, nearest neighbour.
public func zoom(_ mask: BinaryMask, factor: Double, fill: BorderMode = .wrap) -> BinaryMask {
    transform(mask, GeometricTransform(zoom: factor), fill: fill)
}

/// `image` resampled through `t` in one bilinear interpolation.
public func transform(_ image: FloatImage, _ t: GeometricTransform, fill: BorderMode = .wrap) -> FloatImage {
    if t.isIdentity { return image }
    let w = image.width, h = image.height
    guard w > 0 && h > 0 else { return image }
    let m = t.inverseMatrix
    let cx = Double(w - 1) / 2, cy = Double(h - 1) / 2
    var out = [Float](repeating: 0, count: w * h)
    image.pixels.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            for y in 0..<h {
                let dy = Double(y) - cy
                for x in 0..<w {
                    let dx = Double(x) - cx
                    let sx = cx + m.a * dx + m.b * dy
                    let sy = cy + m.c * dx + m.d * dy
                    let fx0 = sx.rounded(.down), fy0 = sy.rounded(.down)
                    let fx = Float(sx - fx0), fy = Float(sy - fy0)
                    let x0 = Int(fx0), y0 = Int(fy0)
                    let c0 = fill.index(x0, count: w), c1 = fill.index(x0 + 1, count: w)
                    let r0 = fill.index(y0, count: h) * w, r1 = fill.index(y0 + 1, count: h) * w
                    let p00 = src[r0 + c0], p01 = src[r0 + c1], p10 = src[r1 + c0], p11 = src[r1 + c1]
                    // a + f (b - a): exactly a when f == 0, so pure pixel moves are exact.
                    let top = fx == 0 ? p00 : p00 + fx * (p01 - p00)
                    let bottom = fx == 0 ? p10 : p10 + fx * (p11 - p10)
                    dst[y * w + x] = fy == 0 ? top : top + fy * (bottom - top)
                }
            }
        }
    }
    return FloatImage(width: w, height: h, pixels: out)
}

/// `mask` resampled through `t` by nearest neighbour (stays 0/1).
public func transform(_ mask: BinaryMask, _ t: GeometricTransform, fill: BorderMode = .wrap) -> BinaryMask {
    if t.isIdentity { return mask }
    let w = mask.width, h = mask.height
    guard w > 0 && h > 0 else { return mask }
    let m = t.inverseMatrix
    let cx = Double(w - 1) / 2, cy = Double(h - 1) / 2
    var out = [UInt8](repeating: 0, count: w * h)
    mask.values.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            for y in 0..<h {
                let dy = Double(y) - cy
                for x in 0..<w {
                    let dx = Double(x) - cx
                    let sx = Int((cx + m.a * dx + m.b * dy).rounded())
                    let sy = Int((cy + m.c * dx + m.d * dy).rounded())
                    dst[y * w + x] = src[fill.index(sy, count: h) * w + fill.index(sx, count: w)]
                }
            }
        }
    }
    return BinaryMask(width: w, height: h, values: out)
}

// MARK: Intensity

/// The normalised 1-D Gaussian kernel scipy.ndimage uses: radius `r = Int(truncate * sigma + 0.5)`,
/// weights `exp(-i² / (2 sigma²))` for i in -r...r divided by their sum. `sigma` in pixels, > 0.
public func gaussianKernel(sigma: Double, truncate: Double = 4) -> [Float] {
    require(sigma > 0, "gaussianKernel: sigma must be positive, got \(sigma)")
    let r = Int(truncate * sigma + 0.5)
    let raw = (-r...r).map { exp(-Double($0 * $0) / (2 * sigma * sigma)) }
    let sum = raw.reduce(0, +)
    return raw.map { Float($0 / sum) }
}

/// Separable Gaussian blur with standard deviation `sigma` pixels (a defocus-like loss of
/// resolution), kernel from `gaussianKernel(sigma:truncate:)`, samples outside from `border`
/// (default `.reflect`, scipy.ndimage.gaussian_filter's default). With `.wrap` or `.reflect` the
/// image sum is preserved (up to rounding). `sigma <= 0` returns the image unchanged.
public func gaussianBlur(_ image: FloatImage, sigma: Double, border: BorderMode = .reflect,
                         truncate: Double = 4) -> FloatImage {
    guard sigma > 0, image.count > 0 else { return image }
    let k = gaussianKernel(sigma: sigma, truncate: truncate)
    let r = k.count / 2
    let w = image.width, h = image.height
    var tmp = [Float](repeating: 0, count: w * h)
    var out = tmp
    var padded = [Float](repeating: 0, count: w + 2 * r)
    let columns = (0..<(w + 2 * r)).map { border.index($0 - r, count: w) }
    // Horizontal pass through an edge-padded copy of each row.
    image.pixels.withUnsafeBufferPointer { src in
        tmp.withUnsafeMutableBufferPointer { dst in
            padded.withUnsafeMutableBufferPointer { p in
                k.withUnsafeBufferPointer { k in
                    for y in 0..<h {
                        let row = y * w
                        for j in 0..<p.count { p[j] = src[row + columns[j]] }
                        for x in 0..<w {
                            var s: Float = 0
                            for i in 0..<k.count { s += k[i] * p[x + i] }
                            dst[row + x] = s
                        }
                    }
                }
            }
        }
    }
    // Vertical pass: each output row is a weighted sum of whole rows (vectorises along x).
    tmp.withUnsafeBufferPointer { src in
        out.withUnsafeMutableBufferPointer { dst in
            k.withUnsafeBufferPointer { k in
                for y in 0..<h {
                    let o = y * w
                    for i in 0..<k.count {
                        let s = border.index(y + i - r, count: h) * w
                        let wi = k[i]
                        for x in 0..<w { dst[o + x] += wi * src[s + x] }
                    }
                }
            }
        }
    }
    return FloatImage(width: w, height: h, pixels: out)
}

/// Shot noise at a finite electron dose: each sample becomes `Poisson(x * dose) / dose`, where
/// `dose` is the expected number of counts for intensity 1 (counts per unit intensity; for an
/// image normalised to [0, 1], the count at full brightness). Mean is kept, variance becomes
/// `x / dose`. Negative intensities count as 0. Large means use the normal approximation (see
/// `SeededRandom.nextPoisson(mean:)`).
public func addShotNoise(_ image: FloatImage, dose: Float, rng: inout SeededRandom) -> FloatImage {
    require(dose > 0, "addShotNoise: dose must be positive, got \(dose)")
    var out = image
    let d = Double(dose)
    for i in 0..<out.pixels.count {
        let mean = Swift.max(Double(out.pixels[i]), 0) * d
        out.pixels[i] = Float(Double(rng.nextPoisson(mean: mean)) / d)
    }
    return out
}

/// Contrast change about the image mean: `mean + factor * (x - mean)` (factor 1: unchanged).
public func adjustContrast(_ image: FloatImage, factor: Float) -> FloatImage {
    guard image.count > 0 else { return image }
    let mean = Float(image.pixels.reduce(0.0) { $0 + Double($1) } / Double(image.count))
    return image.map { mean + factor * ($0 - mean) }
}

/// Gamma change within the image's own range: with `t = (x - min) / (max - min)`, the result is
/// `min + (max - min) * t^gamma` (gamma < 1 brightens mid-tones, > 1 darkens them); min and max
/// are kept. A constant image is returned unchanged.
public func adjustGamma(_ image: FloatImage, gamma: Float) -> FloatImage {
    require(gamma > 0, "adjustGamma: gamma must be positive, got \(gamma)")
    let (lo, hi) = image.minMax()
    guard hi > lo else { return image }
    let range = hi - lo
    return image.map { lo + range * powf(($0 - lo) / range, gamma) }
}

// MARK: Pipeline

/// Probabilities and ranges of `AugmentationPipeline`. Each probability is the chance (0...1)
/// that a tile gets that operation; ranges are sampled uniformly unless noted.
public struct AugmentationConfig: Sendable, Equatable {
    /// Rotation by an angle drawn from `rotationDegrees` (the paper: always, 0–360°).
    public var rotationProbability: Double = 1
    public var rotationDegrees: ClosedRange<Double> = 0...360
    /// Left-right and top-bottom flips (the paper: 0.5 each).
    public var horizontalFlipProbability: Double = 0.5
    public var verticalFlipProbability: Double = 0.5
    /// Scale jitter: zoom factor drawn log-uniformly from `zoomRange` (> 1 zooms in); it stands
    /// in for the spread of pixel sizes between microscopes and magnifications.
    public var zoomProbability: Double = 0.5
    public var zoomRange: ClosedRange<Double> = 0.8...1.25
    /// How rotation and zoom fill pixels that come from outside the tile (the paper: `.wrap`).
    public var fill: BorderMode = .wrap
    /// Defocus-like Gaussian blur, sigma in pixels.
    public var blurProbability: Double = 0.3
    public var blurSigma: ClosedRange<Double> = 0.3...1.5
    /// Contrast factor about the mean.
    public var contrastProbability: Double = 0.5
    public var contrastRange: ClosedRange<Float> = 0.7...1.3
    /// Gamma, drawn log-uniformly.
    public var gammaProbability: Double = 0.3
    public var gammaRange: ClosedRange<Float> = 0.7...1.4
    /// Shot noise; dose (counts per unit intensity) drawn log-uniformly.
    public var noiseProbability: Double = 0.5
    public var doseRange: ClosedRange<Float> = 20...2000

    /// The defaults above: the paper's geometry plus moderate intensity and scale jitter aimed
    /// at the simulated-to-real gap (dose, defocus, detector response, pixel size).
    public init() {}

    /// Exactly the paper's augmentation: rotation 0–360° with wrap fill and random flips.
    public static var paper: AugmentationConfig {
        var c = AugmentationConfig()
        c.zoomProbability = 0; c.blurProbability = 0; c.contrastProbability = 0
        c.gammaProbability = 0; c.noiseProbability = 0
        return c
    }

    /// No augmentation at all (every probability 0).
    public static var none: AugmentationConfig {
        var c = AugmentationConfig.paper
        c.rotationProbability = 0; c.horizontalFlipProbability = 0; c.verticalFlipProbability = 0
        return c
    }
}

/// Random augmentation of (image, mask) training pairs.
///
/// Order: flips; rotation and zoom together in one resampling (one interpolation, not two);
/// then, on the image only, blur, contrast, gamma and shot noise (noise last, as on a detector).
/// The image is expected normalised (about [0, 1]); the result is not re-normalised.
/// Random draws depend only on `config` and `rng`, so a seed reproduces a run.
public struct AugmentationPipeline: Sendable, Equatable {
    public var config: AugmentationConfig

    public init(config: AugmentationConfig = AugmentationConfig()) { self.config = config }

    /// One random augmentation of `image` and `mask` (same size), advancing `rng`.
    public func apply(image: FloatImage, mask: BinaryMask, rng: inout SeededRandom)
        -> (image: FloatImage, mask: BinaryMask) {
        require(image.width == mask.width && image.height == mask.height,
                "AugmentationPipeline: image \(image.width)x\(image.height), mask \(mask.width)x\(mask.height)")
        let c = config
        var img = image, msk = mask
        if rng.nextBool(probability: c.horizontalFlipProbability) {
            img = img.flippedHorizontally(); msk = msk.flippedHorizontally()
        }
        if rng.nextBool(probability: c.verticalFlipProbability) {
            img = img.flippedVertically(); msk = msk.flippedVertically()
        }
        var t = GeometricTransform()
        if rng.nextBool(probability: c.rotationProbability) {
            t.degrees = rng.nextDouble(in: c.rotationDegrees)
        }
        if rng.nextBool(probability: c.zoomProbability) {
            t.zoom = logUniform(c.zoomRange, &rng)
        }
        img = transform(img, t, fill: c.fill)
        msk = transform(msk, t, fill: c.fill)
        if rng.nextBool(probability: c.blurProbability) {
            img = gaussianBlur(img, sigma: rng.nextDouble(in: c.blurSigma), border: c.fill == .wrap ? .wrap : .reflect)
        }
        if rng.nextBool(probability: c.contrastProbability) {
            img = adjustContrast(img, factor: rng.nextFloat(in: c.contrastRange))
        }
        if rng.nextBool(probability: c.gammaProbability) {
            img = adjustGamma(img, gamma: Float(logUniform(Double(c.gammaRange.lowerBound)...Double(c.gammaRange.upperBound), &rng)))
        }
        if rng.nextBool(probability: c.noiseProbability) {
            let dose = Float(logUniform(Double(c.doseRange.lowerBound)...Double(c.doseRange.upperBound), &rng))
            img = addShotNoise(img, dose: dose, rng: &rng)
        }
        return (img, msk)
    }
}

/// exp(uniform(log lo, log hi)); both bounds > 0.
private func logUniform(_ range: ClosedRange<Double>, _ rng: inout SeededRandom) -> Double {
    require(range.lowerBound > 0, "log-uniform range must be positive, got \(range)")
    return exp(rng.nextDouble(in: log(range.lowerBound)...log(range.upperBound)))
}

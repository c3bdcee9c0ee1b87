import Foundation
import Preprocessing

/// How training crops are varied.
public enum AugmentationPreset: String, Codable, Sendable, CaseIterable {
    /// pyNanoFind's: rotation by any angle (wrap) and flips.
    case paper
    /// The paper's plus scale (0.7–1.4×), contrast, gamma, blur (defocus, resolution) and noise
    /// (dose) jitter, and uneven light (`CropSampler.unevenLight`): for micrographs from other
    /// microscopes, pixel sizes, doses and illuminations.
    case robust
    /// Crops as they are.
    case none
}

/// Where a training crop's centre is drawn.
public enum CropPlacement: String, Codable, Sendable, CaseIterable {
    /// Anywhere in the image, sampled with periodic wrap (Keras' `fill_mode='wrap'` for all that
    /// lies outside): every pixel is as likely to be seen, but most crops of an image twice their
    /// size carry a seam where the image's opposite edges meet. (The paper's generator shifts
    /// nothing: it turns each 512² image about its centre, which is `inside` for a crop as large
    /// as the image; docs/results.md measured `inside` no better.)
    case wrap
    /// Where the turned, zoomed window lies wholly inside the image (no seam; pixels near the
    /// edges are seen less often); a window too large to fit is centred and wraps where it
    /// overhangs (so the paper's 512² crop of a 512² image is turned about the image's centre, as
    /// Keras turns it).
    case inside
}

/// Random training crops: each is a `size`×`size` window of a (prepared) image, centred as
/// `placement` says, rotated by a random angle about its centre, possibly flipped and zoomed,
/// bilinear for the image and nearest for the mask, indices wrapping periodically where they
/// leave the image, then given the preset's intensity jitter. Everything is drawn from the
/// `SeededRandom` passed in.
public struct CropSampler: Sendable {
    public var size: Int
    public var preset: AugmentationPreset
    public var placement: CropPlacement

    public init(size: Int, preset: AugmentationPreset, placement: CropPlacement = .wrap) {
        self.size = size; self.preset = preset; self.placement = placement
    }

    /// Writes one crop into `x` and its labels (0/1 as Float) into `t`, `size * size` each.
    /// `rawZero`: where the raw image's zero lies in `image`'s units (`PreparedImage.rawZero`),
    /// which the `robust` preset's uneven light needs.
    public func sample(_ image: FloatImage, _ mask: BinaryMask, rawZero: Float = 0, rng: inout SeededRandom,
                       x: UnsafeMutablePointer<Float>, t: UnsafeMutablePointer<Float>) {
        let n = size
        let angle = preset == .none ? 0 : rng.nextDouble() * 2 * Double.pi
        let flipX = preset != .none && rng.nextBool(probability: 0.5)
        let flipY = preset != .none && rng.nextBool(probability: 0.5)
        let zoom = preset == .robust ? exp(rng.nextDouble(in: log(0.7)...log(1.4))) : 1
        let c = cos(angle) / zoom, s = sin(angle) / zoom
        let w = image.width, h = image.height
        let e = Double(n - 1) / 2 * (abs(c) + abs(s))  // the turned window's half extent
        var cx = placement == .wrap ? rng.nextDouble() * Double(w) : CropSampler.centre(rng.nextDouble(), length: w, halfExtent: e)
        var cy = placement == .wrap ? rng.nextDouble() * Double(h) : CropSampler.centre(rng.nextDouble(), length: h, halfExtent: e)
        if preset == .none { (cx, cy) = (CropSampler.onWholePixels(cx, size: n), CropSampler.onWholePixels(cy, size: n)) }
        // The source position of output pixel (u, v) is ((cx + c·du) − s·dv − 0.5, (cy + s·du) +
        // c·dv − 0.5): the products are taken once per column and once per row, the sums in that
        // order per pixel (the same values as the formula written inline; `referenceSample` in the
        // tests is that inline form). Indices wrap only when they leave the image.
        var cdu = [Double](repeating: 0, count: n), sdu = [Double](repeating: 0, count: n)
        for u in 0..<n {
            let du = (Double(u) + 0.5 - Double(n) / 2) * (flipX ? -1 : 1)
            cdu[u] = c * du; sdu[u] = s * du
        }
        image.pixels.withUnsafeBufferPointer { src in
            mask.values.withUnsafeBufferPointer { m in
                for v in 0..<n {
                    let dv = (Double(v) + 0.5 - Double(n) / 2) * (flipY ? -1 : 1)
                    let sdv = s * dv, cdv = c * dv
                    let xRow = x + v * n, tRow = t + v * n
                    for u in 0..<n {
                        let sx = cx + cdu[u] - sdv - 0.5, sy = cy + sdu[u] + cdv - 0.5
                        let fx0 = sx.rounded(.down), fy0 = sy.rounded(.down)
                        let x0 = Int(fx0), y0 = Int(fy0)
                        let fx = Float(sx - fx0), fy = Float(sy - fy0)
                        let xa = wrap(x0, w), xb = wrap(x0 + 1, w), ya = wrap(y0, h) * w, yb = wrap(y0 + 1, h) * w
                        let top = src[ya + xa] + fx * (src[ya + xb] - src[ya + xa])
                        let bottom = src[yb + xa] + fx * (src[yb + xb] - src[yb + xa])
                        xRow[u] = top + fy * (bottom - top)
                        let nx = wrap(roundedHalfAway(sx), w), ny = wrap(roundedHalfAway(sy), h)
                        tRow[u] = Float(m[ny * w + nx])
                    }
                }
            }
        }
        if preset == .robust {
            unevenLight(x, rawZero: rawZero, rng: &rng)
            jitterIntensities(x, count: n * n, rng: &rng)
        }
    }

    /// The share of crops lit unevenly, and the range of the light's peak (its largest |G − 1|).
    /// Measured on sim-v1 (12 epochs of the default recipe, AMD EPYC fam 26 mod 2): 0.5 and
    /// 0.3–4 % gave test dice 0.952 evenly lit and 0.943 under a ±10 % Gaussian spot; 0.3 and
    /// 0.2–2.5 % 0.952 and 0.933; none (the same draws otherwise) 0.964 and 0.333.
    static let lightProbability = 0.5
    static let lightAmplitude = 0.003...0.04

    /// Light that is not even across the crop, as a microscope's beam and a specimen's
    /// thickness give it (half the crops): the raw image scaled by G = 1 + a · shape, where the
    /// shape is a ramp, a dome or a bowl about a point, or a Gaussian spot (σ 0.15–0.6 of the
    /// side), or a dome and a spot together, peaking at ±1 over the crop, and a is drawn
    /// log-uniformly from 0.3 % to 4 % (`lightAmplitude`). On the prepared crop that is x → G · x + (G − 1) ·
    /// `rawZero` (`InputRecipe.rawZeroOffset`), clipped to [0, 1] as the percentile scaling
    /// clips: a low-contrast image, whose percentiles span a few % of its level, swings most.
    /// `segment` divides out the quadratic surface fitted to an image; what is left over (light
    /// of other shapes, 1–2 %) took sim-v1's test dice to 0.37 with a model trained on evenly
    /// lit images only.
    public func unevenLight(_ x: UnsafeMutablePointer<Float>, rawZero: Float, rng: inout SeededRandom) {
        guard rng.nextBool(probability: CropSampler.lightProbability) else { return }
        let n = size
        let amplitude = Float(exp(rng.nextDouble(in: log(CropSampler.lightAmplitude.lowerBound)...log(CropSampler.lightAmplitude.upperBound))))
        let kind = rng.nextInt(below: 4)
        let angle = rng.nextDouble() * 2 * Double.pi, ca = cos(angle), sa = sin(angle)
        let cx = rng.nextDouble(in: -0.3...0.3), cy = rng.nextDouble(in: -0.3...0.3)
        let sigma = rng.nextDouble(in: 0.15...0.6), sign = rng.nextBool(probability: 0.5) ? 1.0 : -1.0
        var shape = [Double](repeating: 0, count: n * n)
        for v in 0..<n {
            let yy = (Double(v) + 0.5) / Double(n) - 0.5
            for u in 0..<n {
                let xx = (Double(u) + 0.5) / Double(n) - 0.5
                let r2 = (xx - cx) * (xx - cx) + (yy - cy) * (yy - cy)
                let dome = -r2, spot = exp(-r2 / (2 * sigma * sigma))
                switch kind {
                case 0: shape[v * n + u] = ca * xx + sa * yy
                case 1: shape[v * n + u] = sign * dome
                case 2: shape[v * n + u] = sign * spot
                default: shape[v * n + u] = sign * (dome + spot)
                }
            }
        }
        // Peaking at ±1 about its mean.
        let mean = shape.reduce(0, +) / Double(shape.count)
        let peak = shape.reduce(0) { max($0, abs($1 - mean)) }
        guard peak > 0 else { return }
        for k in 0..<(n * n) {
            let g = 1 + amplitude * Float((shape[k] - mean) / peak)
            x[k] = min(max(g * x[k] + (g - 1) * rawZero, 0), 1)
        }
    }

    /// Without a turn or a zoom, a centre moved down to where the window's samples fall on whole
    /// pixels (an integer for an even `size`, a half for an odd one): crops as they are, not
    /// shifted by a fraction of a pixel (a blur of the image that its nearest-pixel mask does not
    /// share). Never below the `inside` centre's lowest value, which is itself such a place.
    static func onWholePixels(_ c: Double, size: Int) -> Double {
        let half = Double(size % 2) / 2
        return (c - half).rounded(.down) + half
    }

    /// A crop centre (`inside`) along an axis of `length` pixels, from a uniform draw `u` in [0, 1): where
    /// the samples at ±`halfExtent` from it (less the half-pixel to pixel indices) and their
    /// bilinear neighbours are all inside, or the middle when no such place exists.
    static func centre(_ u: Double, length: Int, halfExtent e: Double) -> Double {
        let lo = e + 0.5, hi = Double(length) - e - 0.5
        return hi >= lo ? lo + u * (hi - lo) : Double(length) / 2
    }

    /// Contrast about the mean, gamma, blur and additive noise, each with its own probability.
    func jitterIntensities(_ x: UnsafeMutablePointer<Float>, count: Int, rng: inout SeededRandom) {
        let buffer = UnsafeMutableBufferPointer(start: x, count: count)
        if rng.nextBool(probability: 0.3) {
            let sigma = rng.nextDouble(in: 0.5...1.5)
            let blurred = gaussianBlur(FloatImage(width: size, height: size, pixels: Array(buffer)), sigma: sigma)
            for k in 0..<count { x[k] = blurred.pixels[k] }
        }
        if rng.nextBool(probability: 0.5) {
            let factor = rng.nextFloat(in: 0.6...1.4)
            var mean: Float = 0
            for k in 0..<count { mean += x[k] }
            mean /= Float(count)
            for k in 0..<count { x[k] = mean + factor * (x[k] - mean) }
        }
        if rng.nextBool(probability: 0.3) {
            let gamma = rng.nextFloat(in: 0.7...1.4)
            for k in 0..<count { x[k] = powf(min(max(x[k], 0), 1), gamma) }
        }
        if rng.nextBool(probability: 0.5) {
            let sigma = rng.nextFloat(in: 0.02...0.15)
            for k in 0..<count { x[k] += sigma * rng.nextGaussian() }
        }
    }
}

/// `i` wrapped into `0..<n` (periodic); no division while it is already inside.
@inline(__always) func wrap(_ i: Int, _ n: Int) -> Int {
    if UInt(bitPattern: i) < UInt(n) { return i }
    let m = i % n
    return m < 0 ? m + n : m
}

/// `Int(x.rounded())` (halves away from zero) without the C library call that `.rounded()`
/// makes on x86: `x` minus its truncation is exact, so comparing it with 0.5 decides exactly.
@inline(__always) public func roundedHalfAway(_ x: Double) -> Int {
    let t = x.rounded(.towardZero)
    let r = Int(t)
    let d = x - t
    return d >= 0.5 ? r + 1 : (d <= -0.5 ? r - 1 : r)
}

import Foundation
import Preprocessing
import Training
import XCTest

/// The crop sampler against its plain twin: the formula written inline, every index wrapped with
/// `%` and every nearest position from `.rounded()`, as the sampler was first written. The fast
/// one must give the same bits, so a run resumed with a newer build goes on exactly as it started.
final class CropSamplerTests: XCTestCase {
    /// The reference: the same draws in the same order, then the inline geometry.
    static func referenceSample(size n: Int, preset: AugmentationPreset, placement: CropPlacement, _ image: FloatImage, _ mask: BinaryMask,
                                rng: inout SeededRandom) -> (x: [Float], t: [Float]) {
        let angle = preset == .none ? 0 : rng.nextDouble() * 2 * Double.pi
        let flipX = preset != .none && rng.nextBool(probability: 0.5)
        let flipY = preset != .none && rng.nextBool(probability: 0.5)
        let zoom = preset == .robust ? exp(rng.nextDouble(in: log(0.7)...log(1.4))) : 1
        let c = cos(angle) / zoom, s = sin(angle) / zoom
        let w = image.width, h = image.height
        // The centre: anywhere (wrap), or where the turned window (corners at ±(n − 1)/2 ·
        // (|c| + |s|)) and its bilinear neighbours fit, else the middle (inside).
        let e = Double(n - 1) / 2 * (abs(c) + abs(s))
        let ux = rng.nextDouble(), uy = rng.nextDouble()
        let lo = e + 0.5, hx = Double(w) - e - 0.5, hy = Double(h) - e - 0.5
        var cx = placement == .wrap ? ux * Double(w) : hx >= lo ? lo + ux * (hx - lo) : Double(w) / 2
        var cy = placement == .wrap ? uy * Double(h) : hy >= lo ? lo + uy * (hy - lo) : Double(h) / 2
        // Without augmentation the window's samples fall on whole pixels: the centre is floored
        // to an integer (even n) or to a half (odd n).
        if preset == .none {
            let half = Double(n % 2) / 2
            cx = (cx - half).rounded(.down) + half; cy = (cy - half).rounded(.down) + half
        }
        func wrap(_ i: Int, _ n: Int) -> Int { let m = i % n; return m < 0 ? m + n : m }
        var x = [Float](repeating: 0, count: n * n), t = x
        let src = image.pixels, m = mask.values
        for v in 0..<n {
            let dv = (Double(v) + 0.5 - Double(n) / 2) * (flipY ? -1 : 1)
            for u in 0..<n {
                let du = (Double(u) + 0.5 - Double(n) / 2) * (flipX ? -1 : 1)
                let sx = cx + c * du - s * dv - 0.5, sy = cy + s * du + c * dv - 0.5
                let x0 = Int(sx.rounded(.down)), y0 = Int(sy.rounded(.down))
                let fx = Float(sx - Double(x0)), fy = Float(sy - Double(y0))
                let xa = wrap(x0, w), xb = wrap(x0 + 1, w), ya = wrap(y0, h) * w, yb = wrap(y0 + 1, h) * w
                let top = src[ya + xa] + fx * (src[ya + xb] - src[ya + xa])
                let bottom = src[yb + xa] + fx * (src[yb + xb] - src[yb + xa])
                x[v * n + u] = top + fy * (bottom - top)
                let nx = wrap(Int(sx.rounded()), w), ny = wrap(Int(sy.rounded()), h)
                t[v * n + u] = Float(m[ny * w + nx])
            }
        }
        return (x, t)
    }

    func testFastSamplerGivesTheReferenceBits() {
        var data = SeededRandom(seed: 7)
        // Crops smaller than, equal to and larger than the image (wrapping several times).
        for (w, h, n) in [(37, 53, 16), (37, 53, 96), (64, 64, 64), (300, 100, 48), (512, 512, 512)] {
            let image = FloatImage(width: w, height: h, pixels: (0..<(w * h)).map { _ in data.nextFloat() })
            let mask = BinaryMask(width: w, height: h, values: (0..<(w * h)).map { _ in data.nextBool(probability: 0.4) ? 1 : 0 })
            for preset in AugmentationPreset.allCases { for placement in CropPlacement.allCases {
                let sampler = CropSampler(size: n, preset: preset, placement: placement)
                for draw in 0..<(n == 512 ? 2 : 12) {
                    var fast = SeededRandom(seed: UInt64(1000 * n + draw)), slow = fast
                    var x = [Float](repeating: .nan, count: n * n), t = x
                    x.withUnsafeMutableBufferPointer { xb in
                        t.withUnsafeMutableBufferPointer { tb in
                            sampler.sample(image, mask, rng: &fast, x: xb.baseAddress!, t: tb.baseAddress!)
                        }
                    }
                    let ref = Self.referenceSample(size: n, preset: preset, placement: placement, image, mask, rng: &slow)
                    XCTAssertEqual(t, ref.t, "labels, \(w)×\(h) image, \(n)² crop, \(preset), draw \(draw)")
                    // The robust preset jitters intensities afterwards (its own draws), so the
                    // image is compared where the geometry alone makes it.
                    if preset != .robust {
                        XCTAssertEqual(x.map(\.bitPattern), ref.x.map(\.bitPattern), "image, \(w)×\(h), \(n)², \(preset), draw \(draw)")
                        XCTAssertEqual(fast.next(), slow.next(), "the same number of draws")
                    }
                }
            } }
        }
    }

    /// The robust preset's uneven light: half the crops lit by a smooth field peaking at ±0.3–4 %
    /// of the raw image about its mean, which on the prepared crop swings a value by that much of
    /// the value plus `rawZero` (a low-contrast image's large offset: a large swing).
    func testUnevenLightScalesTheRawImage() {
        let sampler = CropSampler(size: 32, preset: .robust)
        var lit = 0
        for seed in 0..<200 {
            for rawZero: Float in [0, 2] {
                var rng = SeededRandom(seed: UInt64(seed))
                var x = [Float](repeating: 0.5, count: 32 * 32)
                x.withUnsafeMutableBufferPointer { sampler.unevenLight($0.baseAddress!, rawZero: rawZero, rng: &rng) }
                let swing = x.map { abs($0 - 0.5) }.max() ?? 0
                if swing == 0 { continue }
                if rawZero == 0 { lit += 1 }
                // |G − 1| peaks at 0.3–4 %: x' − x = (G − 1)(x + rawZero).
                XCTAssertLessThanOrEqual(swing, 0.04 * (0.5 + rawZero) * 1.0001, "seed \(seed)")
                XCTAssertGreaterThanOrEqual(swing, 0.003 * (0.5 + rawZero) * 0.9999, "seed \(seed)")
                // About its mean: the crop's mean level stays.
                XCTAssertEqual(x.reduce(0, +) / Float(x.count), 0.5, accuracy: 1e-4, "seed \(seed)")
            }
        }
        XCTAssertTrue((70...130).contains(lit), "half the crops lit: \(lit) of 200")
    }

    /// With `inside` placement, crops that fit inside the image show no seam: on a ramp (value =
    /// column + row · w) every step between neighbouring crop pixels stays small, turned, while
    /// with `wrap` most crops of an image twice their size cross an edge.
    /// Without augmentation a crop is a window of the image as it is: every value a pixel's, and
    /// the mask's window the same one (a fractional centre blurred the image by a sub-pixel
    /// shift its nearest-pixel mask did not share).
    func testCropsWithoutAugmentationAreWindowsOfWholePixels() {
        let w = 40, h = 30
        var data = SeededRandom(seed: 11)
        let image = FloatImage(width: w, height: h, pixels: (0..<(w * h)).map { _ in data.nextFloat() })
        let mask = BinaryMask(width: w, height: h, values: (0..<(w * h)).map { _ in data.nextBool(probability: 0.5) ? 1 : 0 })
        for n in [16, 17] { for placement in CropPlacement.allCases {
            var rng = SeededRandom(seed: UInt64(n))
            for draw in 0..<20 {
                var x = [Float](repeating: .nan, count: n * n), t = x
                x.withUnsafeMutableBufferPointer { xb in
                    t.withUnsafeMutableBufferPointer { tb in
                        CropSampler(size: n, preset: .none, placement: placement).sample(image, mask, rng: &rng, x: xb.baseAddress!, t: tb.baseAddress!)
                    }
                }
                // The window's corner: where the crop's first value sits in the image (values are distinct).
                let first = try? XCTUnwrap(image.pixels.firstIndex(of: x[0]), "n \(n) \(placement) draw \(draw): not a pixel's value")
                guard let at = first else { continue }
                let x0 = at % w, y0 = at / w
                for v in 0..<n { for u in 0..<n {
                    let i = ((y0 + v) % h) * w + (x0 + u) % w
                    XCTAssertEqual(x[v * n + u], image.pixels[i], "n \(n) \(placement) draw \(draw) at (\(u), \(v))")
                    XCTAssertEqual(t[v * n + u], Float(mask.values[i]), "n \(n) \(placement) draw \(draw) mask at (\(u), \(v))")
                } }
            }
        } }
    }

    func testCropsPlacedInsideShowNoSeam() {
        let w = 512, h = 512, n = 256
        let image = FloatImage(width: w, height: h, pixels: (0..<(w * h)).map { Float($0 % w) + Float($0 / w) })
        let mask = BinaryMask(width: w, height: h)
        var rng = SeededRandom(seed: 5)
        var x = [Float](repeating: 0, count: n * n), t = x
        var seams: [CropPlacement: Int] = [:]
        for placement in CropPlacement.allCases { for preset in [AugmentationPreset.paper, .none] {
            for _ in 0..<150 {
                x.withUnsafeMutableBufferPointer { xb in
                    t.withUnsafeMutableBufferPointer { tb in
                        CropSampler(size: n, preset: preset, placement: placement).sample(image, mask, rng: &rng, x: xb.baseAddress!, t: tb.baseAddress!)
                    }
                }
                var largest: Float = 0
                for v in 0..<n { for u in 0..<(n - 1) { largest = max(largest, abs(x[v * n + u + 1] - x[v * n + u])) } }
                for v in 0..<(n - 1) { for u in 0..<n { largest = max(largest, abs(x[(v + 1) * n + u] - x[v * n + u])) } }
                if !(largest < 3) { seams[placement, default: 0] += 1 }
            }
        } }
        XCTAssertEqual(seams[.inside] ?? 0, 0, "crops placed inside with a seam")
        XCTAssertGreaterThan(seams[.wrap] ?? 0, 150, "crops placed anywhere with a seam (of 300)")
    }

    func testCropsCoverTheMaskAsOften() {
        // A sanity check independent of the reference: on a half-particle image, crops with
        // rotation and flips see about half particle pixels on average.
        let w = 64, h = 64
        let mask = BinaryMask(width: w, height: h, values: (0..<(w * h)).map { ($0 % w) < 32 ? 1 : 0 })
        let image = FloatImage(width: w, height: h, pixels: mask.values.map { Float($0) })
        let sampler = CropSampler(size: 32, preset: .paper)
        var rng = SeededRandom(seed: 3), total = 0.0
        var x = [Float](repeating: 0, count: 32 * 32), t = x
        for _ in 0..<200 {
            x.withUnsafeMutableBufferPointer { xb in
                t.withUnsafeMutableBufferPointer { tb in sampler.sample(image, mask, rng: &rng, x: xb.baseAddress!, t: tb.baseAddress!) }
            }
            total += Double(t.reduce(0, +)) / Double(t.count)
        }
        XCTAssertEqual(total / 200, 0.5, accuracy: 0.05)
    }
}

final class RoundedHalfAwayTests: XCTestCase {
    func testMatchesRoundedOnTiesAndNeighbours() {
        var values: [Double] = [0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999999999999994, -0.49999999999999994,
                                1e15 + 0.5, -1e15 - 0.5, 4503599627370495.5, -4503599627370495.5, 511.5, -512.5]
        var rng = SeededRandom(seed: 11)
        for _ in 0..<10_000 { values.append((rng.nextDouble() - 0.5) * 2000) }
        for _ in 0..<1_000 { values.append(Double(Int(rng.nextDouble() * 2000) - 1000) + 0.5) }
        for x in values {
            XCTAssertEqual(roundedHalfAway(x), Int(x.rounded()), "\(x)")
            XCTAssertEqual(roundedHalfAway(x.nextUp), Int(x.nextUp.rounded()), "\(x.nextUp)")
            XCTAssertEqual(roundedHalfAway(x.nextDown), Int(x.nextDown.rounded()), "\(x.nextDown)")
        }
    }
}

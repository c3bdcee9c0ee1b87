import Foundation
import Preprocessing
import XCTest

/// Flat regions (blocks of one value: an aligned sum's fill) against a plain twin that measures
/// every pixel's runs, and the fill that replaces what shows no specimen.
final class FlatRegionsTests: XCTestCase {
    /// A pixel is flat when the run of equal finite values through it is at least `run` long
    /// across and down: counted pixel by pixel.
    static func referenceFlat(_ image: FloatImage, run: Int) -> [UInt8] {
        let w = image.width, h = image.height, p = image.pixels
        return (0..<(w * h)).map { i in
            let x = i % w, y = i / w, v = p[i]
            guard v.isFinite else { return 0 }
            var l = x, r = x, u = y, d = y
            while l > 0 && p[y * w + l - 1] == v { l -= 1 }
            while r + 1 < w && p[y * w + r + 1] == v { r += 1 }
            while u > 0 && p[(u - 1) * w + x] == v { u -= 1 }
            while d + 1 < h && p[(d + 1) * w + x] == v { d += 1 }
            return r - l + 1 >= run && d - u + 1 >= run ? 1 : 0
        }
    }

    func testFlatPixelsMatchThePlainCount() {
        var rng = SeededRandom(seed: 5)
        var flatImages = 0
        for trial in 0..<40 {
            let w = 20 + Int(rng.next() % 90), h = 20 + Int(rng.next() % 70)
            // Noise (a few levels, so that short equal runs happen), with blocks of one value:
            // some touching the edges, some inside, of every size around the run, one NaN block.
            var pixels = (0..<(w * h)).map { _ in Float(rng.next() % 3) }
            for b in 0..<(1 + Int(rng.next() % 4)) {
                let bw = 5 + Int(rng.next() % 30), bh = 5 + Int(rng.next() % 30)
                let x0 = Int(rng.next() % UInt64(w)), y0 = Int(rng.next() % UInt64(h))
                let value: Float = trial % 7 == 0 && b == 0 ? .nan : (trial % 5 == 0 && b == 1 ? .infinity : Float(rng.next() % 3))
                for y in y0..<min(h, y0 + bh) { for x in x0..<min(w, x0 + bw) { pixels[y * w + x] = value } }
            }
            let image = FloatImage(width: w, height: h, pixels: pixels)
            let expected = Self.referenceFlat(image, run: FloatImage.flatRun)
            let found = image.flatPixels()
            XCTAssertEqual(found?.values ?? [UInt8](repeating: 0, count: w * h), expected, "trial \(trial): \(w)x\(h)")
            XCTAssertEqual(found == nil, !expected.contains(1), "trial \(trial): nil exactly when nothing is flat")
            // In pieces taken in another order: the same.
            let pieces = image.flatPixels { count, body in for k in (0..<count).reversed() { body(k) } }
            XCTAssertEqual(pieces?.values, found?.values, "trial \(trial)")
            if found != nil { flatImages += 1 }
        }
        XCTAssertGreaterThan(flatImages, 15, "many trials should have flat blocks")
    }

    func testNoiseAndShortRunsAreNotFlat() {
        var rng = SeededRandom(seed: 9)
        let noise = FloatImage(width: 200, height: 150, pixels: (0..<(200 * 150)).map { _ in 1000 + 30 * rng.nextGaussian() })
        XCTAssertNil(noise.flatPixels())
        // A strip 15 pixels wide along an edge is too narrow; 16 is flat.
        for (strip, flat) in [(15, false), (16, true)] {
            var image = noise
            for y in 0..<150 { for x in 0..<strip { image.pixels[y * 200 + x] = 0 } }
            XCTAssertEqual(image.flatPixels()?.foregroundCount, flat ? strip * 150 : nil, "strip \(strip)")
        }
    }

    /// Padding, counted pixel by pixel: of one value through to an edge of its row and of its
    /// column, of a value a flat pixel so placed has.
    static func referencePadding(_ image: FloatImage, run: Int) -> [UInt8] {
        let w = image.width, h = image.height, p = image.pixels
        let flat = referenceFlat(image, run: run)
        func reaches(_ x: Int, _ y: Int) -> Bool {
            let v = p[y * w + x]
            let row = (0...x).allSatisfy { p[y * w + $0] == v } || (x..<w).allSatisfy { p[y * w + $0] == v }
            let column = (0...y).allSatisfy { p[$0 * w + x] == v } || (y..<h).allSatisfy { p[$0 * w + x] == v }
            return row && column
        }
        let values = Set((0..<(w * h)).filter { flat[$0] != 0 && reaches($0 % w, $0 / w) }.map { p[$0] })
        return (0..<(w * h)).map { values.contains(p[$0]) && reaches($0 % w, $0 / w) ? 1 : 0 }
    }

    /// Rotated and shifted images (noise inside a rectangle, a fill of 0 around it: every
    /// pixel of the fill is padding, down to the wedges' tips), with flat blocks inside and a
    /// flat half-disc at an edge (not padding), against the plain count.
    func testEdgePaddingOfRotatedImages() {
        var rng = SeededRandom(seed: 11)
        var wholeFills = 0
        for trial in 0..<30 {
            let w = 40 + Int(rng.next() % 60), h = 40 + Int(rng.next() % 60)
            let angle = Double(rng.next() % 360) * .pi / 180 / (trial % 3 == 0 ? 30 : 1)
            let cx = Double(w) / 2 + Double(rng.next() % 9) - 4, cy = Double(h) / 2 + Double(rng.next() % 9) - 4
            let hw = Double(w) * 0.45, hh = Double(h) * 0.45
            var pixels = [Float](repeating: 0, count: w * h)
            var fill = [UInt8](repeating: 0, count: w * h)
            for y in 0..<h { for x in 0..<w {
                let dx = Double(x) - cx, dy = Double(y) - cy
                let u = dx * cos(angle) + dy * sin(angle), v = -dx * sin(angle) + dy * cos(angle)
                if abs(u) < hw && abs(v) < hh { pixels[y * w + x] = 1 + Float(rng.next() % 1000) } else { fill[y * w + x] = 1 }
            } }
            let expected = Self.referencePadding(FloatImage(width: w, height: h, pixels: pixels), run: FloatImage.flatRun)
            let found = FloatImage(width: w, height: h, pixels: pixels).edgePadding()
            XCTAssertEqual(found?.values ?? [UInt8](repeating: 0, count: w * h), expected, "trial \(trial)")
            if fill.contains(1) && expected.contains(1) { XCTAssertEqual(expected, fill, "trial \(trial): the whole fill is padding"); wholeFills += 1 }
            // A flat block inside and a saturated half-disc at the bottom edge are not padding.
            var more = pixels
            for y in (h / 2 - 3)..<(h / 2 + 14) { for x in (w / 2 - 3)..<(w / 2 + 14) { more[y * w + x] = 2000 } }
            for y in 0..<h { for x in 0..<w where (x - w / 2) * (x - w / 2) + (y - h) * (y - h) < 18 * 18 { more[y * w + x] = 3000 } }
            let withBlocks = FloatImage(width: w, height: h, pixels: more).edgePadding()
            XCTAssertEqual(withBlocks?.values ?? [UInt8](repeating: 0, count: w * h),
                           Self.referencePadding(FloatImage(width: w, height: h, pixels: more), run: FloatImage.flatRun), "trial \(trial)")
            XCTAssertFalse((0..<(w * h)).contains { more[$0] >= 2000 && withBlocks?.values[$0] == 1 }, "trial \(trial)")
        }
        XCTAssertGreaterThan(wholeFills, 10, "most trials should have a fill wide enough to be found")
    }

    /// The fill: pixels drawn from the others, the same every time, nothing outside the mask
    /// changed.
    func testFillLikeOthers() {
        var rng = SeededRandom(seed: 3)
        let original = FloatImage(width: 100, height: 100, pixels: (0..<10_000).map { _ in 500 + 20 * rng.nextGaussian() })
        var mask = BinaryMask(width: 100, height: 100)
        for i in 0..<3000 { mask.values[i] = 1 }
        var image = original
        for i in 0..<3000 { image.pixels[i] = i % 2 == 0 ? 0 : .nan }
        var again = image
        let median = image.fillLikeOthers(mask)
        again.fillLikeOthers(mask)
        XCTAssertEqual(image.pixels, again.pixels)
        XCTAssertEqual(Array(image.pixels[3000...]), Array(original.pixels[3000...]))
        XCTAssertEqual(median, percentiles(Array(original.pixels[3000...]), [50])[0])
        let others = Set(original.pixels[3000...])
        XCTAssertTrue(image.pixels[..<3000].allSatisfy { others.contains($0) })
        let filled = image.pixels[..<3000].map(Double.init)
        let mean = filled.reduce(0, +) / 3000, sd = (filled.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 3000).squareRoot()
        XCTAssertEqual(mean, 500, accuracy: 2)
        XCTAssertEqual(sd, 20, accuracy: 2)
    }

    func testUnion() {
        var a = BinaryMask(width: 3, height: 1), b = BinaryMask(width: 3, height: 1)
        a.values[0] = 1; b.values[2] = 1
        XCTAssertEqual(BinaryMask.union(a, b)?.values, [1, 0, 1])
        XCTAssertEqual(BinaryMask.union(nil, b)?.values, [0, 0, 1])
        XCTAssertNil(BinaryMask.union(nil, nil))
    }
}

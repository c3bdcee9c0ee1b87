import Preprocessing
import Segmentation
import XCTest

/// The automatic Bragg filter finds a lattice patch on noise and nothing on noise alone.
final class BraggFilterTests: XCTestCase {
    func noise(_ w: Int, _ h: Int, seed: UInt64) -> FloatImage {
        var rng = SeededRandom(seed: seed)
        return FloatImage(width: w, height: h, pixels: (0..<(w * h)).map { _ in 100 + 10 * rng.nextGaussian() })
    }

    func testFindsALatticePatchOnNoise() {
        var image = noise(256, 256, seed: 1)
        // A 0.2 nm lattice (two directions) in a disc of radius 2.5 nm, at 0.05 nm/px.
        let p = 0.05, period = 0.2 / p, cx = 100.0, cy = 140.0, r = 50.0
        for y in 0..<256 { for x in 0..<256 where (Double(x) - cx) * (Double(x) - cx) + (Double(y) - cy) * (Double(y) - cy) < r * r {
            let v = cos(2 * Double.pi * Double(x) / period) + cos(2 * Double.pi * (0.5 * Double(x) + 0.866 * Double(y)) / period)
            image.pixels[y * 256 + x] += Float(6 * v)
        } }
        let result = BraggFilter().segment(image, pixelSizeNm: p)
        XCTAssertGreaterThan(result.peaks, 0)
        var inside = 0, insideFound = 0, outsideFound = 0
        for y in 0..<256 { for x in 0..<256 {
            let d2 = (Double(x) - cx) * (Double(x) - cx) + (Double(y) - cy) * (Double(y) - cy)
            let found = result.mask.values[y * 256 + x] != 0
            if d2 < r * r { inside += 1; if found { insideFound += 1 } } else if found { outsideFound += 1 }
        } }
        XCTAssertGreaterThan(Double(insideFound) / Double(inside), 0.8, "recall of the patch")
        XCTAssertLessThan(Double(outsideFound) / Double(insideFound), 0.3, "false area outside the patch")
    }

    /// A lattice cut by the image's left edge keeps its size there, and reaches the edge (the
    /// taper against the transform's edge cross scaled it away: the half disc came out a quarter
    /// smaller, no longer touching the edge); an image too coarse for any lattice spacing the
    /// filter looks for is said to be, not filtered into nothing.
    func testALatticeAtTheEdgeKeepsItsSizeAndCoarseImagesAreRefused() {
        var image = noise(256, 256, seed: 4)
        let p = 0.05, period = 0.2 / p, cx = 0.0, cy = 128.0, r = 60.0
        var inside = 0
        for y in 0..<256 { for x in 0..<256 where (Double(x) - cx) * (Double(x) - cx) + (Double(y) - cy) * (Double(y) - cy) < r * r {
            let v = cos(2 * Double.pi * Double(x) / period) + cos(2 * Double.pi * (0.5 * Double(x) + 0.866 * Double(y)) / period)
            image.pixels[y * 256 + x] += Float(6 * v)
            inside += 1
        } }
        let result = BraggFilter().segment(image, pixelSizeNm: p)
        XCTAssertEqual(Double(result.mask.foregroundCount) / Double(inside), 1, accuracy: 0.15, "area of the half disc")
        XCTAssertEqual(result.mask.values[128 * 256], 1, "the half disc reaches the edge")
        XCTAssertNil(BraggFilter().problem(pixelSizeNm: 0.2))
        // Filtered, but too coarse for gold's {111} planes in every direction: said, not silent.
        XCTAssertTrue(BraggFilter().warning(pixelSizeNm: 0.2)?.contains("only lattice spacings of 0.4 nm or more") == true)
        XCTAssertTrue(BraggFilter().warning(pixelSizeNm: 0.2)?.contains("0.11 nm per pixel or finer") == true)
        XCTAssertNil(BraggFilter().warning(pixelSizeNm: 0.1))
        XCTAssertNil(BraggFilter().warning(pixelSizeNm: 0.3), "refused instead")
        XCTAssertTrue(BraggFilter().problem(pixelSizeNm: 0.3)?.contains("finest lattice spacing resolved in every direction is 0.6 nm") == true)
    }

    /// Undoing the taper does not light the carbon along the edges: a patch in the middle leaves
    /// the outer 16 px empty.
    func testALatticeInTheMiddleLeavesTheEdgesEmpty() {
        for seed in 5...7 as ClosedRange<UInt64> {
            var image = noise(256, 256, seed: seed)
            let p = 0.05, period = 0.2 / p
            for y in 0..<256 { for x in 0..<256 where (x - 128) * (x - 128) + (y - 128) * (y - 128) < 50 * 50 {
                let v = cos(2 * Double.pi * Double(x) / period) + cos(2 * Double.pi * (0.5 * Double(x) + 0.866 * Double(y)) / period)
                image.pixels[y * 256 + x] += Float(6 * v)
            } }
            let mask = BraggFilter().segment(image, pixelSizeNm: p).mask
            var edge = 0
            for y in 0..<256 { for x in 0..<256 where min(x, y, 255 - x, 255 - y) < 16 && mask.values[y * 256 + x] != 0 { edge += 1 } }
            XCTAssertEqual(edge, 0, "seed \(seed): mask pixels in the outer 16 px")
        }
    }

    /// Flat padding at the edge (an aligned sum's fill) is no crystal: its edge was taken for one
    /// (a false object of 15,000 px beside a padded strip, the true disc shrunk by a third).
    func testFlatPaddingIsNeverCrystal() {
        var image = noise(256, 256, seed: 8)
        let p = 0.05, period = 0.2 / p
        var inside = 0
        for y in 0..<256 { for x in 0..<256 where (x - 140) * (x - 140) + (y - 128) * (y - 128) < 50 * 50 {
            let v = cos(2 * Double.pi * Double(x) / period) + cos(2 * Double.pi * (0.5 * Double(x) + 0.866 * Double(y)) / period)
            image.pixels[y * 256 + x] += Float(6 * v)
            inside += 1
        } }
        for y in 0..<256 { for x in 0..<40 { image.pixels[y * 256 + x] = 0 } }  // the fill
        let result = BraggFilter().segment(image, pixelSizeNm: p), mask = result.mask
        XCTAssertEqual(result.notes, ["10240 pixels are flat padding at the image's edges (one value, reaching the edges across and down): filled with pixels drawn from the others, never crystal"])
        var inPadding = 0
        for y in 0..<256 { for x in 0..<48 where mask.values[y * 256 + x] != 0 { inPadding += 1 } }
        XCTAssertEqual(inPadding, 0, "mask pixels in or beside the padding")
        XCTAssertEqual(Double(mask.foregroundCount) / Double(inside), 1, accuracy: 0.2, "area of the disc")
    }

    func testFindsNothingOnPureNoise() {
        for seed in 1...3 as ClosedRange<UInt64> {
            let result = BraggFilter().segment(noise(256, 192, seed: seed), pixelSizeNm: 0.05)
            XCTAssertEqual(result.peaks, 0, "seed \(seed)")
            XCTAssertEqual(result.mask.foregroundCount, 0, "seed \(seed)")
            XCTAssertEqual(result.notes, [], "seed \(seed)")
        }
    }

    /// Pixels that show no specimen are told of, as segment tells them; an image with nothing to
    /// filter says so instead of reporting "0 peak pixels" as if it had been looked at.
    func testNaNsAndImagesWithNothingToFilterAreNoted() {
        var image = noise(128, 128, seed: 4)
        for y in 10..<20 { for x in 10..<30 { image.pixels[y * 128 + x] = .nan } }
        let some = BraggFilter().segment(image, pixelSizeNm: 0.05)
        XCTAssertEqual(some.notes, ["200 pixels are NaN or infinite: filled with pixels drawn from the others, never crystal"])
        XCTAssertEqual(some.mask.foregroundCount, 0)
        let cases: [([Float], String)] = [
            ([Float](repeating: .nan, count: 128 * 128), "every pixel is NaN or infinite: nothing to filter, no crystal"),
            ([Float](repeating: 3, count: 128 * 128), "every pixel is 3: nothing to filter, no crystal"),
            ((0..<(128 * 128)).map { $0 % 128 < 64 ? 1 : 2 }, "every pixel lies in flat blocks of one value (padding): nothing to filter, no crystal"),
        ]
        var framed = [Float](repeating: 5, count: 128 * 128)
        for y in 10..<20 { for x in 10..<30 { framed[y * 128 + x] = .nan } }
        let f = BraggFilter().segment(FloatImage(width: 128, height: 128, pixels: framed), pixelSizeNm: 0.05)
        XCTAssertEqual(f.notes, ["200 pixels are NaN or infinite: filled with pixels drawn from the others, never crystal",
                                 "every pixel is 5: nothing to filter, no crystal"])
        for (pixels, note) in cases {
            let r = BraggFilter().segment(FloatImage(width: 128, height: 128, pixels: pixels), pixelSizeNm: 0.05)
            XCTAssertEqual(r.notes, [note])
            XCTAssertEqual(r.peaks, 0); XCTAssertEqual(r.mask.foregroundCount, 0)
        }
    }
}

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

    func testFindsNothingOnPureNoise() {
        for seed in 1...3 as ClosedRange<UInt64> {
            let result = BraggFilter().segment(noise(256, 192, seed: seed), pixelSizeNm: 0.05)
            XCTAssertEqual(result.peaks, 0, "seed \(seed)")
            XCTAssertEqual(result.mask.foregroundCount, 0, "seed \(seed)")
        }
    }
}

import Preprocessing
import XCTest

final class FlatRegionsTests: XCTestCase {
    /// The plain twin: every window wholly inside the image checked value by value, and every
    /// pixel of each constant one marked.
    func reference(_ image: FloatImage, radius r: Int) -> [UInt8] {
        let w = image.width, h = image.height
        var out = [UInt8](repeating: 0, count: w * h)
        guard w > 2 * r, h > 2 * r else { return out }
        for cy in r..<(h - r) { for cx in r..<(w - r) {
            let v = image[x: cx, y: cy]
            var flat = true
            for y in (cy - r)...(cy + r) { for x in (cx - r)...(cx + r) where image[x: x, y: y] != v { flat = false } }
            guard flat else { continue }
            for y in (cy - r)...(cy + r) { for x in (cx - r)...(cx + r) { out[y * w + x] = 1 } }
        } }
        return out
    }

    /// Padding, a saturated blob, stripes of two values, a one-pixel gap, at the edges and inside;
    /// radii 1 to 3; bands side by side and reversed: the twin's mask exactly; a noisy image has none.
    func testMatchesThePlainTwin() {
        var rng = SeededRandom(seed: 5)
        for trial in 0..<24 {
            let w = 9 + Int(rng.next() % 60), h = 9 + Int(rng.next() % 50), r = 1 + trial % 3
            var pixels = (0..<(w * h)).map { _ in Float(rng.next() % 1000) }
            // Flat rectangles of a few values, some overlapping, some touching the edges.
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let x0 = Int(rng.next() % UInt64(w)), y0 = Int(rng.next() % UInt64(h))
                let x1 = min(w, x0 + 3 + Int(rng.next() % 30)), y1 = min(h, y0 + 3 + Int(rng.next() % 30))
                let v = Float(rng.next() % 3)
                for y in y0..<y1 { for x in x0..<x1 { pixels[y * w + x] = v } }
            }
            if trial % 4 == 0 { for y in 0..<h { pixels[y * w + w / 2] = 7 } }  // a line that splits a region
            let image = FloatImage(width: w, height: h, pixels: pixels)
            let expected = reference(image, radius: r)
            let found = flatRegions(image, radius: r)
            XCTAssertEqual(found?.values ?? [UInt8](repeating: 0, count: w * h), expected, "trial \(trial): \(w)x\(h), r \(r)")
            XCTAssertEqual(flatRegions(image, radius: r, parallel: sideBySide)?.values, found?.values)
            XCTAssertEqual(flatRegions(image, radius: r, parallel: reversedPieces)?.values, found?.values)
        }
        XCTAssertNil(flatRegions(randomImage(300, 200, seed: 2)))
        XCTAssertNil(flatRegions(FloatImage(width: 6, height: 40, repeating: 1)))  // no 7-wide window fits
        XCTAssertEqual(flatRegions(FloatImage(width: 7, height: 7, repeating: 1))?.foregroundCount, 49)
    }
}

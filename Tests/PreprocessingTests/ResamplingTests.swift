import Preprocessing
import XCTest

final class ResamplingTests: XCTestCase {
    /// The plain twin: Pillow's BICUBIC resize written out tap by tap, rows then columns, each
    /// sample summed in Double from weights normalised in Double.
    func reference(_ image: FloatImage, width m: Int, height mh: Int) -> [Double] {
        func taps(_ n: Int, _ m: Int) -> [[(Int, Double)]] {
            let scale = Double(n) / Double(m), stretch = max(1, scale)
            return (0..<m).map { j in
                let centre = (Double(j) + 0.5) * scale
                var list: [(Int, Double)] = []
                for i in Int((centre - 2 * stretch).rounded(.down))...Int((centre + 2 * stretch).rounded(.up)) {
                    let t = abs((Double(i) + 0.5 - centre) / stretch)
                    let w = t < 1 ? (1.5 * t - 2.5) * t * t + 1 : t < 2 ? (((t - 5) * t + 8) * t - 4) * -0.5 : 0
                    if w != 0 { list.append((min(max(i, 0), n - 1), w)) }
                }
                let total = list.reduce(0) { $0 + $1.1 }
                return list.map { ($0.0, $0.1 / total) }
            }
        }
        let tx = taps(image.width, m), ty = taps(image.height, mh)
        var rows = [Double](repeating: 0, count: m * image.height)
        for y in 0..<image.height {
            for x in 0..<m { rows[y * m + x] = tx[x].reduce(0) { $0 + $1.1 * Double(image[x: $1.0, y: y]) } }
        }
        var out = [Double](repeating: 0, count: m * mh)
        for y in 0..<mh { for x in 0..<m { out[y * m + x] = ty[y].reduce(0) { $0 + $1.1 * rows[$1.0 * m + x] } } }
        return out
    }

    /// Shrinking, enlarging and mixed, odd sizes: within float round-off of the twin, and the same
    /// bits in bands side by side or in reverse order as in one pass (the image is large enough
    /// for both passes to cut their rows into several bands).
    func testMatchesThePlainTwinAndDoesNotDependOnTheBands() {
        let image = randomImage(703, 521, seed: 4)
        for (w, h) in [(350, 260), (1500, 1100), (301, 1200), (703, 97), (1, 1)] {
            let one = resample(image, width: w, height: h)
            XCTAssertEqual(one.width, w); XCTAssertEqual(one.height, h)
            let expected = reference(image, width: w, height: h)
            var worst = 0.0
            for i in 0..<expected.count { worst = max(worst, abs(Double(one.pixels[i]) - expected[i])) }
            XCTAssertLessThan(worst, 1e-3, "\(w)x\(h)")  // values up to 1000: float round-off
            XCTAssertEqual(resample(image, width: w, height: h, parallel: reversedPieces).pixels, one.pixels, "\(w)x\(h) reversed")
            XCTAssertEqual(resample(image, width: w, height: h, parallel: sideBySide).pixels, one.pixels, "\(w)x\(h) side by side")
        }
    }

    /// `clamp` bounds the filter's overshoot at a step edge, also when the size is unchanged.
    func testClampBoundsTheOvershoot() {
        let step = FloatImage(width: 64, height: 32, pixels: (0..<(64 * 32)).map { $0 % 64 < 32 ? 0 : 1 })
        let free = resample(step, width: 150, height: 75)
        XCTAssertLessThan(free.pixels.min()!, -0.01, "a cubic filter overshoots a step")
        XCTAssertGreaterThan(free.pixels.max()!, 1.01)
        let clamped = resample(step, width: 150, height: 75, clamp: 0...1, parallel: sideBySide)
        XCTAssertEqual(clamped.pixels, free.pixels.map { min(max($0, 0), 1) })
        let wild = FloatImage(width: 300, height: 301, pixels: (0..<(300 * 301)).map { Float($0 % 7) - 3 })
        XCTAssertEqual(resample(wild, width: 300, height: 301, clamp: -1...2, parallel: sideBySide).pixels,
                       wild.pixels.map { min(max($0, -1), 2) })
        XCTAssertEqual(resample(wild, width: 300, height: 301).pixels, wild.pixels)
    }
}

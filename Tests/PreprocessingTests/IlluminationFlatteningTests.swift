import Foundation
import Preprocessing
import XCTest

/// The plane fitted to an image and the image with it divided out (or, where the plane comes
/// near 0, subtracted).
final class IlluminationFlatteningTests: XCTestCase {
    /// A plane is fitted exactly, whatever the image's shape; pieces of rows summed in any
    /// number give the same plane.
    func testAPlaneIsFittedExactly() {
        for (w, h) in [(64, 48), (7, 300), (1, 1), (513, 2)] {
            let pixels = (0..<(w * h)).map { i -> Float in
                let x = (Double(i % w) + 0.5) / Double(w) - 0.5, y = (Double(i / w) + 0.5) / Double(h) - 0.5
                return Float(100 + 8 * x - 5 * y)
            }
            let (a, b, c) = FloatImage(width: w, height: h, pixels: pixels).fittedPlane()
            XCTAssertEqual(a, 100, accuracy: 1e-3, "\(w)×\(h)")
            if w > 1 { XCTAssertEqual(b, 8, accuracy: 1e-3, "\(w)×\(h)") }
            if h > 1 { XCTAssertEqual(c, -5, accuracy: 1e-3, "\(w)×\(h)") }
        }
    }

    /// A texture lit by a ramp: divided by its plane, it is the texture again (within the
    /// slight tilt the texture's own plane has), with the mean kept; an evenly lit one barely
    /// changes; a zero-mean image, whose plane crosses 0, has the tilt subtracted instead.
    func testARampIsDividedOutAndAnEvenImageKept() {
        let w = 200, h = 150
        var rng = SeededRandom(seed: 9)
        let texture = (0..<(w * h)).map { _ in Float(1000 + 50 * rng.nextFloat()) }
        let ramped = (0..<(w * h)).map { i -> Float in
            let light: Double = 0.9 + 0.2 * (Double(i % w) + 0.5) / Double(w)
            return texture[i] * Float(light)
        }
        let flat = FloatImage(width: w, height: h, pixels: ramped).flattenedIllumination()
        let worst = zip(flat.pixels, texture).map { (f: Float, t: Float) -> Float in abs(f - t) / t }.max() ?? 1
        XCTAssertLessThan(worst, 0.003)
        let even = FloatImage(width: w, height: h, pixels: texture).flattenedIllumination()
        let evenWorst = zip(even.pixels, texture).map { (f: Float, t: Float) -> Float in abs(f - t) / t }.max() ?? 1
        XCTAssertLessThan(evenWorst, 0.003)
        let mean = { (v: [Float]) in v.reduce(0.0) { $0 + Double($1) } / Double(v.count) }
        XCTAssertEqual(mean(flat.pixels), mean(ramped), accuracy: 0.01 * mean(ramped))

        let centred = (0..<(w * h)).map { i -> Float in
            let tilt: Double = ((Double(i % w) + 0.5) / Double(w) - 0.5) * 40
            return 50 * rng.nextFloat() - 25 + Float(tilt)
        }
        let levelled = FloatImage(width: w, height: h, pixels: centred).flattenedIllumination()
        let (_, b, c) = levelled.fittedPlane()
        XCTAssertEqual(b, 0, accuracy: 0.05); XCTAssertEqual(c, 0, accuracy: 0.05)
        XCTAssertTrue(levelled.pixels.allSatisfy(\.isFinite))
    }
}

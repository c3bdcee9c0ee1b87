import Foundation
import Preprocessing
import XCTest

/// The plane fitted to an image and the image with it divided out (or, where the plane comes
/// near 0, subtracted).
final class IlluminationFlatteningTests: XCTestCase {
    func planeImage(_ w: Int, _ h: Int, _ value: (Double, Double) -> Double) -> FloatImage {
        FloatImage(width: w, height: h, pixels: (0..<(w * h)).map { i -> Float in
            Float(value((Double(i % w) + 0.5) / Double(w) - 0.5, (Double(i / w) + 0.5) / Double(h) - 0.5))
        })
    }

    /// A plane is fitted exactly, whatever the image's shape; too small an image (fewer than
    /// three blocks) has none.
    func testAPlaneIsFittedExactly() throws {
        for (w, h) in [(64, 48), (7, 300), (513, 2), (2000, 1000)] {
            let (a, b, c) = try XCTUnwrap(planeImage(w, h) { 100 + 8 * $0 - 5 * $1 }.fittedPlane(), "\(w)×\(h)")
            XCTAssertEqual(a, 100, accuracy: 1e-3, "\(w)×\(h)")
            XCTAssertEqual(b, 8, accuracy: 1e-3, "\(w)×\(h)")
            if h > 2 { XCTAssertEqual(c, -5, accuracy: 1e-3, "\(w)×\(h)") }
        }
        XCTAssertNil(FloatImage(width: 1, height: 1, pixels: [3]).fittedPlane())
    }

    /// A texture lit by a ramp: divided by its plane, it is the texture again, with its mean
    /// kept; an evenly lit one barely changes; a zero-mean image, whose plane crosses 0, has the
    /// tilt subtracted instead.
    func testARampIsDividedOutAndAnEvenImageKept() throws {
        let w = 200, h = 150
        var rng = SeededRandom(seed: 9)
        let texture = (0..<(w * h)).map { _ in Float(1000 + 50 * rng.nextFloat()) }
        let ramped = (0..<(w * h)).map { i -> Float in
            let light: Double = 0.9 + 0.2 * (Double(i % w) + 0.5) / Double(w)
            return texture[i] * Float(light)
        }
        let flat = FloatImage(width: w, height: h, pixels: ramped).flattenedIllumination()
        let worst = zip(flat.pixels, texture).map { (f: Float, t: Float) -> Float in abs(f - t) / t }.max() ?? 1
        XCTAssertLessThan(worst, 0.005)
        let even = FloatImage(width: w, height: h, pixels: texture).flattenedIllumination()
        let evenWorst = zip(even.pixels, texture).map { (f: Float, t: Float) -> Float in abs(f - t) / t }.max() ?? 1
        XCTAssertLessThan(evenWorst, 0.005)

        let centred = (0..<(w * h)).map { i -> Float in
            let tilt: Double = ((Double(i % w) + 0.5) / Double(w) - 0.5) * 40
            return 50 * rng.nextFloat() - 25 + Float(tilt)
        }
        let levelled = FloatImage(width: w, height: h, pixels: centred).flattenedIllumination()
        let (_, b, c) = try XCTUnwrap(levelled.fittedPlane())
        XCTAssertEqual(b, 0, accuracy: 0.5); XCTAssertEqual(c, 0, accuracy: 0.5)
        XCTAssertTrue(levelled.pixels.allSatisfy(\.isFinite))
    }

    /// What would tilt a plane fitted to every pixel is left out: a bright, featureless region
    /// over a third of the image (a hole in the carbon film), and pixels outside the specimen
    /// (padding filled with values drawn from the rest, which carry no gradient).
    func testVacuumAndOutsidePixelsDoNotTiltThePlane() throws {
        let w = 320, h = 240
        var rng = SeededRandom(seed: 4)
        var hole = planeImage(w, h) { _, _ in 1000 }
        for i in 0..<hole.pixels.count {
            hole.pixels[i] = i % w < w * 3 / 10 ? 1250 + 5 * rng.nextFloat() : 1000 + 60 * rng.nextFloat()
        }
        let (_, b, c) = try XCTUnwrap(hole.fittedPlane())
        XCTAssertLessThan(abs(b), 10, "a plane fitted to every pixel tilts by about 180 here")
        XCTAssertLessThan(abs(c), 10)

        var padded = planeImage(w, h) { x, _ in 1000 * (1 + 0.2 * x) }
        var outside = BinaryMask(width: w, height: h)
        for i in 0..<padded.pixels.count where i % w > w * 6 / 10 {
            outside.values[i] = 1
            padded.pixels[i] = 900 + 200 * rng.nextFloat()  // drawn from the rest: no gradient
        }
        let fit = try XCTUnwrap(padded.fittedPlane(excluding: outside))
        XCTAssertEqual(fit.b, 200, accuracy: 1)
        XCTAssertEqual(fit.a, 1000, accuracy: 1)
    }
}

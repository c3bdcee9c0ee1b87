import Foundation
import Preprocessing
import XCTest

/// The illumination surface fitted to an image and the image with it divided out (or, where the
/// surface comes near 0, subtracted).
final class IlluminationFlatteningTests: XCTestCase {
    func planeImage(_ w: Int, _ h: Int, _ value: (Double, Double) -> Double) -> FloatImage {
        FloatImage(width: w, height: h, pixels: (0..<(w * h)).map { i -> Float in
            Float(value((Double(i % w) + 0.5) / Double(w) - 0.5, (Double(i / w) + 0.5) / Double(h) - 0.5))
        })
    }

    /// A plane and a quadratic surface are fitted exactly, whatever the image's shape (an image
    /// too low for three rows of blocks gets the plane); too small an image (fewer than three
    /// blocks) has none.
    func testAPlaneAndAQuadraticAreFittedExactly() throws {
        for (w, h) in [(64, 48), (7, 300), (513, 2), (2000, 1000)] {
            let s = try XCTUnwrap(planeImage(w, h) { 100 + 8 * $0 - 5 * $1 }.fittedIllumination(), "\(w)×\(h)")
            XCTAssertEqual(s.a, 100, accuracy: 1e-3, "\(w)×\(h)")
            XCTAssertEqual(s.b, 8, accuracy: 1e-3, "\(w)×\(h)")
            if h > 2 { XCTAssertEqual(s.c, -5, accuracy: 1e-3, "\(w)×\(h)") }
            for k in [s.d, s.e, s.f] { XCTAssertEqual(k, 0, accuracy: 1e-3, "\(w)×\(h)") }
        }
        // A bright centre off the middle: 100 + 3x − 2y − 40x² + 6xy − 30y². Fitted to block
        // means, the squares' terms carry a block's own spread (a constant, ≤ 0.4 here), so the
        // surface's shape is compared, its mean level aside.
        func truth(_ x: Double, _ y: Double) -> Double { 100 + 3 * x - 2 * y - 40 * x * x + 6 * x * y - 30 * y * y }
        for (w, h) in [(64, 48), (2000, 1000), (300, 130)] {
            let s = try XCTUnwrap(planeImage(w, h, truth).fittedIllumination(), "\(w)×\(h)")
            XCTAssertEqual(s.a, 100, accuracy: 0.5, "\(w)×\(h): \(s)")
            for (k, e) in zip([s.b, s.c, s.d, s.e, s.f], [3.0, -2, -40, 6, -30]) { XCTAssertEqual(k, e, accuracy: 0.05, "\(w)×\(h): \(s)") }
        }
        XCTAssertNil(FloatImage(width: 1, height: 1, pixels: [3]).fittedIllumination())
    }

    /// A texture lit brightest off its centre, falling off by 10 % towards the corners (a beam
    /// not spread evenly), which a plane leaves in: divided by the fitted surface it is the
    /// texture again.
    func testABrightCentreIsDividedOut() throws {
        let w = 256, h = 192
        var rng = SeededRandom(seed: 3)
        let texture = (0..<(w * h)).map { _ in Float(1000 + 50 * rng.nextFloat()) }
        let lit = planeImage(w, h) { x, y in 1.1 - 0.4 * ((x - 0.1) * (x - 0.1) + (y + 0.05) * (y + 0.05)) }
        let image = FloatImage(width: w, height: h, pixels: zip(texture, lit.pixels).map { $0 * $1 })
        let flat = image.flattenedIllumination()
        // The mean level kept: compare each pixel with the texture scaled to the image's mean light.
        let scale = flat.pixels.reduce(0, +) / texture.reduce(0, +)
        let worst = zip(flat.pixels, texture).map { (f: Float, t: Float) -> Float in abs(f - scale * t) / (scale * t) }.max() ?? 1
        XCTAssertLessThan(worst, 0.005)
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
        let level = try XCTUnwrap(levelled.fittedIllumination())
        XCTAssertEqual(level.b, 0, accuracy: 0.5); XCTAssertEqual(level.c, 0, accuracy: 0.5)
        XCTAssertTrue(levelled.pixels.allSatisfy(\.isFinite))
    }

    /// Light that falls off over the specimen and whose fitted quadratic would dive below 0 over
    /// the padding beside it (not fitted, filled later): the image is still divided by it, the
    /// texture coming back with its relative contrast, since the surface is judged where it was
    /// fitted (judged over the whole image, its subtraction left the light in).
    func testASurfaceDivingOverPaddingStillDivides() throws {
        let w = 200, h = 150
        var rng = SeededRandom(seed: 11)
        let texture = (0..<(w * h)).map { _ in Float(1000 + 100 * rng.nextFloat()) }
        var image = planeImage(w, h) { x, _ in 1 - 4 * (x + 0.2) * (x + 0.2) }
        var outside = BinaryMask(width: w, height: h)
        for i in 0..<(w * h) {
            if i % w >= w * 6 / 10 { outside.values[i] = 1; image.pixels[i] = 600 + 100 * rng.nextFloat() }
            else { image.pixels[i] *= texture[i] }
        }
        let surface = try XCTUnwrap(image.fittedIllumination(excluding: outside))
        XCTAssertLessThan(surface.value(x: 0.5, y: 0), 0, "the surface dives over the padding: \(surface)")
        let flat = image.flattenedIllumination(excluding: outside)
        let ratios = (0..<(w * h)).filter { outside.values[$0] == 0 }.map { flat.pixels[$0] / texture[$0] }
        let lo = ratios.min() ?? 0, hi = ratios.max() ?? 0
        XCTAssertLessThan((hi - lo) / hi, 0.02, "divided: the texture up to one factor (\(lo)…\(hi))")
    }

    /// What would tilt a surface fitted to every pixel is left out: a bright, featureless region
    /// over a third of the image (a hole in the carbon film), and pixels outside the specimen
    /// (padding filled with values drawn from the rest, which carry no gradient).
    func testVacuumAndOutsidePixelsDoNotTiltThePlane() throws {
        let w = 320, h = 240
        var rng = SeededRandom(seed: 4)
        var hole = planeImage(w, h) { _, _ in 1000 }
        for i in 0..<hole.pixels.count {
            hole.pixels[i] = i % w < w * 3 / 10 ? 1250 + 5 * rng.nextFloat() : 1000 + 60 * rng.nextFloat()
        }
        let tilt = try XCTUnwrap(hole.fittedIllumination())
        XCTAssertLessThan(abs(tilt.b), 10, "a plane fitted to every pixel tilts by about 180 here")
        XCTAssertLessThan(abs(tilt.c), 10)
        for k in [tilt.d, tilt.e, tilt.f] { XCTAssertLessThan(abs(k), 20, "\(tilt)") }

        var padded = planeImage(w, h) { x, _ in 1000 * (1 + 0.2 * x) }
        var outside = BinaryMask(width: w, height: h)
        for i in 0..<padded.pixels.count where i % w > w * 6 / 10 {
            outside.values[i] = 1
            padded.pixels[i] = 900 + 200 * rng.nextFloat()  // drawn from the rest: no gradient
        }
        let fit = try XCTUnwrap(padded.fittedIllumination(excluding: outside))
        XCTAssertEqual(fit.b, 200, accuracy: 1)
        XCTAssertEqual(fit.a, 1000, accuracy: 1)
    }
}

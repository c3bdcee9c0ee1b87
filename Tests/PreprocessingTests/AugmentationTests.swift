import Preprocessing
import XCTest

final class AugmentationTests: XCTestCase {
    // Not symmetric under any rotation or flip.
    let square = FloatImage(rows: [
        [1, 2, 3, 4],
        [5, 6, 7, 8],
        [9, 10, 11, 12],
        [13, 14, 15, 16.5],
    ])
    let squareMask = BinaryMask(rows: [
        [1, 1, 0, 0],
        [1, 0, 0, 0],
        [0, 0, 0, 1],
        [0, 0, 1, 1],
    ])

    func testFlipsByHandAndInvolutive() {
        let im = FloatImage(rows: [[1, 2, 3], [4, 5, 6]])
        XCTAssertEqual(im.flippedHorizontally().rows, [[3, 2, 1], [6, 5, 4]])
        XCTAssertEqual(im.flippedVertically().rows, [[4, 5, 6], [1, 2, 3]])
        XCTAssertEqual(square.flippedHorizontally().flippedHorizontally(), square)
        XCTAssertEqual(square.flippedVertically().flippedVertically(), square)
        XCTAssertEqual(squareMask.flippedHorizontally().flippedHorizontally(), squareMask)
        XCTAssertEqual(squareMask.flippedVertically().flippedVertically(), squareMask)
        XCTAssertEqual(squareMask.flippedHorizontally().rows[0], [0, 0, 1, 1])
    }

    func testRotationByZeroAnd360IsIdentity() {
        let im = randomImage(9, 6, seed: 1), m = randomMask(9, 6, seed: 1)
        for deg in [0.0, 360, -360, 720] {
            XCTAssertEqual(rotate(im, degrees: deg), im, "\(deg)")
            XCTAssertEqual(rotate(m, degrees: deg), m, "\(deg)")
        }
    }

    /// 90° counter-clockwise as displayed = numpy.rot90: transpose, then flip top-bottom:
    /// out[y][x] = in[x][N-1-y]. Exact for image and mask with wrap fill.
    func testRotationBy90IsTransposeThenFlip() {
        func rot90<T>(_ rows: [[T]]) -> [[T]] {
            let n = rows.count
            return (0..<n).map { y in (0..<n).map { x in rows[x][n - 1 - y] } }
        }
        XCTAssertEqual(rotate(square, degrees: 90).rows, rot90(square.rows))
        XCTAssertEqual(rotate(square, degrees: 90).rows[0], [4, 8, 12, 16.5])  // by hand
        XCTAssertEqual(rotate(squareMask, degrees: 90).rows, rot90(squareMask.rows))
        XCTAssertEqual(rotate(square, degrees: 180), square.flippedHorizontally().flippedVertically())
        XCTAssertEqual(rotate(square, degrees: 270).rows, rot90(rot90(rot90(square.rows))))
        XCTAssertEqual(rotate(square, degrees: -90), rotate(square, degrees: 270))
        // Odd size too.
        let odd = randomImage(5, 5, seed: 2), oddMask = randomMask(5, 5, seed: 2)
        XCTAssertEqual(rotate(odd, degrees: 90).rows, rot90(odd.rows))
        XCTAssertEqual(rotate(oddMask, degrees: 90).rows, rot90(oddMask.rows))
    }

    /// Rotated masks stay strictly 0/1, and a centred disc keeps about its area.
    func testRotatedMaskStaysBinaryForManyAngles() {
        let disc = discMask(48, 48, cx: 23.5, cy: 23.5, r: 12)
        let area = disc.foregroundCount
        for k in 0..<72 {
            let deg = Double(k) * 5 + 0.37
            let r = rotate(disc, degrees: deg)
            XCTAssertTrue(r.isBinary, "\(deg)")
            XCTAssertEqual(Double(r.foregroundCount), Double(area), accuracy: 0.05 * Double(area), "\(deg)")
            let noisy = rotate(randomMask(17, 11, seed: UInt64(k)), degrees: deg)
            XCTAssertTrue(noisy.values.allSatisfy { $0 == 0 || $0 == 1 })
        }
    }

    /// Width 4, zoom 2 about x = 1.5: sources 0.75, 1.25, 1.75, 2.25.
    func testZoomByHand() {
        let im = FloatImage(rows: [[0, 10, 20, 30]])
        XCTAssertEqual(zoom(im, factor: 2).pixels, [7.5, 12.5, 17.5, 22.5])
        // Nearest: round(0.75) = 1, round(1.25) = 1, round(1.75) = 2, round(2.25) = 2.
        XCTAssertEqual(zoom(BinaryMask(rows: [[1, 0, 1, 1]]), factor: 2).values, [0, 0, 1, 1])
        // Zoom out by 2 with wrap: sources 1.5 + 2 (x - 1.5) = -1.5, 0.5, 2.5, 4.5, bilinear
        // across the seam: -1.5 lies between -2 -> index 2 (20) and -1 -> index 3 (30): 25;
        // 0.5: 5; 2.5: 25; 4.5 between 4 -> 0 (0) and 5 -> 1 (10): 5.
        XCTAssertEqual(zoom(im, factor: 0.5).pixels, [25, 5, 25, 5])
        // Mirror fill instead: -1.5 between -2 -> 2 (20) and -1 -> 1 (10): 15; 4.5 between
        // 4 -> 2 (20) and 5 -> 1 (10): 15.
        XCTAssertEqual(zoom(im, factor: 0.5, fill: .mirror).pixels, [15, 5, 25, 15])
    }

    /// Image and mask move together: augment (image = mask as 0/1) with the paper's geometry
    /// and the thresholded image agrees with the augmented mask almost everywhere (they differ
    /// only where bilinear and nearest sampling disagree at disc edges).
    func testImageAndMaskTransformedIdentically() {
        let mask = discMask(64, 64, cx: 20, cy: 30, r: 9)
        var rng = SeededRandom(seed: 77)
        for _ in 0..<10 {
            var cfg = AugmentationConfig.paper
            cfg.zoomProbability = 1
            let (img, msk) = AugmentationPipeline(config: cfg).apply(image: mask.floatImage, mask: mask, rng: &rng)
            let agree = zip(BinaryMask(img, threshold: 0.5).values, msk.values).filter { $0 == $1 }.count
            XCTAssertGreaterThan(Double(agree) / 4096, 0.99)
            XCTAssertTrue(msk.isBinary)
        }
    }

    func testPipelineDeterministicAndNoneIsIdentity() {
        let im = randomImage(32, 32, seed: 3, scale: 1), m = randomMask(32, 32, seed: 3)
        let p = AugmentationPipeline()
        var r1 = SeededRandom(seed: 5), r2 = SeededRandom(seed: 5)
        let a = p.apply(image: im, mask: m, rng: &r1), b = p.apply(image: im, mask: m, rng: &r2)
        XCTAssertEqual(a.image, b.image); XCTAssertEqual(a.mask, b.mask)
        var r3 = SeededRandom(seed: 6)
        XCTAssertNotEqual(p.apply(image: im, mask: m, rng: &r3).image, a.image)
        var r4 = SeededRandom(seed: 5)
        let none = AugmentationPipeline(config: .none).apply(image: im, mask: m, rng: &r4)
        XCTAssertEqual(none.image, im); XCTAssertEqual(none.mask, m)
        // Many draws of the full default pipeline: masks always binary, images finite.
        var r = SeededRandom(seed: 8)
        for _ in 0..<20 {
            let out = p.apply(image: im, mask: m, rng: &r)
            XCTAssertTrue(out.mask.isBinary)
            XCTAssertTrue(out.image.pixels.allSatisfy { $0.isFinite })
        }
    }

    /// Poisson(x * dose) / dose keeps the mean x and has variance x / dose.
    func testShotNoiseMeanAndVariance() {
        let im = FloatImage(width: 200, height: 100, repeating: 0.5)
        for dose: Float in [8, 2000] {  // exact Poisson (mean 4) and normal approximation (mean 1000)
            var rng = SeededRandom(seed: 12)
            let noisy = addShotNoise(im, dose: dose, rng: &rng).pixels.map(Double.init)
            let mean = noisy.reduce(0, +) / Double(noisy.count)
            let variance = noisy.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(noisy.count)
            let expected = 0.5 / Double(dose)
            XCTAssertEqual(mean, 0.5, accuracy: 4 * (expected / Double(noisy.count)).squareRoot(), "dose \(dose)")
            XCTAssertEqual(variance, expected, accuracy: 0.05 * expected, "dose \(dose)")
        }
        var rng = SeededRandom(seed: 1)
        XCTAssertEqual(addShotNoise(FloatImage(rows: [[0, -1]]), dose: 100, rng: &rng).pixels, [0, 0])
    }

    /// sigma 1, truncate 1 -> radius 1, weights [e^-½, 1, e^-½] / (1 + 2 e^-½).
    func testGaussianBlurOneDimensionalByHand() {
        let k = gaussianKernel(sigma: 1, truncate: 1)
        assertClose(k, [0.27406862, 0.45186276, 0.27406862], accuracy: 1e-7)
        XCTAssertEqual(gaussianKernel(sigma: 1).count, 9)  // radius Int(4 + 0.5) = 4, as scipy
        let pulse = FloatImage(rows: [[0, 0, 1, 0, 0]])
        assertClose(gaussianBlur(pulse, sigma: 1, truncate: 1).pixels,
                    [0, 0.27406862, 0.45186276, 0.27406862, 0], accuracy: 1e-7)
        let edge = FloatImage(rows: [[1, 0, 0, 0, 0]])
        // reflect: x[-1] = x[0] = 1, so out[0] = 0.274 + 0.452.
        assertClose(gaussianBlur(edge, sigma: 1, border: .reflect, truncate: 1).pixels,
                    [0.72593138, 0.27406862, 0, 0, 0], accuracy: 1e-7)
        assertClose(gaussianBlur(edge, sigma: 1, border: .wrap, truncate: 1).pixels,
                    [0.45186276, 0.27406862, 0, 0, 0.27406862], accuracy: 1e-7)
        // A column is blurred the same way as a row.
        let column = FloatImage(width: 1, height: 5, pixels: [0, 0, 1, 0, 0])
        assertClose(gaussianBlur(column, sigma: 1, truncate: 1).pixels,
                    [0, 0.27406862, 0.45186276, 0.27406862, 0], accuracy: 1e-7)
    }

    func testGaussianBlurPreservesSumWithWrapAndReflect() {
        let im = randomImage(13, 9, seed: 21, scale: 1)
        let sum = im.pixels.reduce(0.0) { $0 + Double($1) }
        for mode in [BorderMode.wrap, .reflect] {
            for sigma in [0.7, 1.3, 2.5] {
                let b = gaussianBlur(im, sigma: sigma, border: mode)
                XCTAssertEqual(b.pixels.reduce(0.0) { $0 + Double($1) }, sum, accuracy: 1e-4 * sum, "\(mode) \(sigma)")
                XCTAssertNotEqual(b, im)
            }
        }
        XCTAssertEqual(gaussianBlur(im, sigma: 0), im)
    }

    func testContrastAndGammaByHand() {
        // Mean 1.5: 1.5 + 2 (x - 1.5).
        XCTAssertEqual(adjustContrast(FloatImage(rows: [[0, 1, 2, 3]]), factor: 2).pixels, [-1.5, 0.5, 2.5, 4.5])
        XCTAssertEqual(adjustGamma(FloatImage(rows: [[0, 0.25, 1]]), gamma: 0.5).pixels, [0, 0.5, 1])
        // Range [2, 6]: t = [0, 0.25, 1] -> 2 + 4 t².
        XCTAssertEqual(adjustGamma(FloatImage(rows: [[2, 3, 6]]), gamma: 2).pixels, [2, 2.25, 6])
    }
}

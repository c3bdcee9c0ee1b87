import Preprocessing
import XCTest

final class NormalisationTests: XCTestCase {
    func testMinMaxByHand() {
        let im = FloatImage(rows: [[2, 4], [6, 10]])
        XCTAssertEqual(minMaxNormalise(im).pixels, [0, 0.25, 0.5, 1])
        XCTAssertEqual(Normalisation.minMax.apply(im).pixels, [0, 0.25, 0.5, 1])
        XCTAssertEqual(minMaxNormalise(FloatImage(width: 2, height: 1, repeating: 3)).pixels, [0, 0])
    }

    /// Values 0...10 (shuffled): NumPy-style linear percentiles — rank p/100 * 10.
    func testPercentilesByHand() {
        let v: [Float] = [7, 3, 10, 0, 5, 1, 9, 2, 8, 4, 6]
        XCTAssertEqual(percentiles(v, [50]), [5])
        XCTAssertEqual(percentiles(v, [25, 0, 100]), [2.5, 0, 10])
        XCTAssertEqual(percentiles(v, [0.5])[0], 0.05, accuracy: 1e-6)
        XCTAssertEqual(percentiles(v, [99.5])[0], 9.95, accuracy: 1e-6)
        XCTAssertEqual(percentiles([4], [0, 50, 100]), [4, 4, 4])
        XCTAssertEqual(percentiles([1, 3], [50]), [2])
    }

    func testPercentilesMatchSortingOnRandomDataWithTies() {
        for seed: UInt64 in 0..<20 {
            let n = 1 + Int(seed) * 37
            var values = randomImage(n, 1, seed: seed, scale: 50).pixels
            values = values.map { $0.rounded() }
            let sorted = values.sorted()
            let ps: [Double] = [0, 0.5, 10, 50, 73.3, 99.5, 100]
            let got = percentiles(values, ps)
            for (p, g) in zip(ps, got) {
                let r = p / 100 * Double(n - 1)
                let k = Int(r), f = Float(r - Double(k))
                let expect = k + 1 < n ? sorted[k] + f * (sorted[k + 1] - sorted[k]) : sorted[k]
                XCTAssertEqual(g, expect, accuracy: 1e-4, "n \(n) p \(p)")
            }
        }
    }

    /// Inputs large enough for the histogram path (≥ 65 536 values): Gaussian, heavily tied
    /// (int16-like, most values in a few bins), two values only, a hot pixel squeezing all the
    /// others into one bin, and ranks falling into the same and into different bins. The order
    /// statistics must be exactly those of a sort, so the interpolated percentiles are equal bit
    /// for bit to the selection over everything.
    func testHistogramPercentilesEqualSortingOnLargeInputs() {
        var rng = SystemRandomNumberGenerator()
        let n = 70_001
        var cases: [(String, [Float])] = []
        cases.append(("gaussian", randomImage(n, 1, seed: 3, scale: 100).pixels))
        cases.append(("ties", randomImage(n, 1, seed: 4, scale: 3).pixels.map { $0.rounded() }))
        cases.append(("two values", (0..<n).map { $0 % 3 == 0 ? 1 : 7 }))
        var hot = randomImage(n, 1, seed: 5, scale: 1).pixels
        hot[17] = 1e30
        cases.append(("hot pixel", hot))
        cases.append(("uniform", (0..<n).map { _ in Float.random(in: -5...5, using: &rng) }))
        var span = randomImage(n, 1, seed: 6, scale: 1).pixels  // max − min overflows Float
        span[3] = -3e38; span[9] = 3e38
        cases.append(("span beyond Float", span))
        for (name, values) in cases {
            let sorted = values.sorted()
            let ps: [Double] = [0, 0.5, 1, 25, 50, 50.0001, 99.5, 100]
            let got = percentiles(values, ps)
            for (p, g) in zip(ps, got) {
                let r = p / 100 * Double(n - 1)
                let k = Int(r), f = Float(r - Double(k))
                let expect = k + 1 < n && f > 0 ? sorted[k] + f * (sorted[k + 1] - sorted[k]) : sorted[k]
                XCTAssertEqual(g, expect, "\(name) p \(p)")
            }
        }
    }

    /// The passes split into pieces (run in reverse order, or side by side) give the same
    /// percentiles and the same normalised pixels as one pass, bit for bit.
    func testPercentilesInPiecesEqualOnePass() {
        let n = 300_001  // 4 pieces
        var hot = randomImage(n, 1, seed: 15, scale: 1).pixels
        hot[200_000] = 1e30
        let cases: [(String, [Float])] = [
            ("gaussian", randomImage(n, 1, seed: 13, scale: 100).pixels),
            ("ties", randomImage(n, 1, seed: 14, scale: 3).pixels.map { $0.rounded() }),
            ("hot pixel", hot),
        ]
        let ps: [Double] = [0, 0.5, 25, 50, 99.5, 100]
        for (name, values) in cases {
            let one = percentiles(values, ps)
            for (runner, parallel) in [("reversed", reversedPieces), ("side by side", sideBySide)] {
                XCTAssertEqual(percentiles(values, ps, parallel: parallel), one, "\(name), \(runner)")
                let image = FloatImage(width: 1001, height: n / 1001, pixels: Array(values.prefix(n / 1001 * 1001)))
                XCTAssertEqual(percentileNormalise(image, parallel: parallel).pixels, percentileNormalise(image).pixels,
                               "normalised \(name), \(runner)")
            }
        }
    }

    /// The one-pass path (a sample brackets each rank, `orderStatisticsByBrackets`) gives the
    /// order statistics of a sort, bit for bit, run in pieces or not; it takes the usual inputs
    /// (the two percentiles of the robust recipe, a median) and declines, rather than guessing,
    /// when its sample misleads it (every sampled value is the smallest), when a value is NaN, or
    /// when more than two brackets are wanted. `percentiles` is exact whichever path it took.
    func testBracketedOrderStatisticsEqualSorting() {
        var rng = SeededRandom(seed: 31)
        let n = 1_000_003
        let stride = (n >> 16) | 1
        var hot = randomImage(n, 1, seed: 25, scale: 1).pixels
        hot[17] = 1e30; hot[500_000] = -.infinity
        let cases: [(String, [Float], Bool)] = [
            ("gaussian", randomImage(n, 1, seed: 23, scale: 100).pixels, true),
            ("ties", randomImage(n, 1, seed: 24, scale: 3).pixels.map { $0.rounded() }, true),
            ("uniform", (0..<n).map { _ in Float.random(in: -5...5, using: &rng) }, true),
            ("hot pixel and −∞", hot, true),
            ("ramp", (0..<n).map { Float($0 % 4099) }, true),
            // The sample (every stride-th value) sees only the smallest values.
            ("misleading sample", (0..<n).map { $0 % stride == 0 ? -1 : Float.random(in: 0...1, using: &rng) }, false),
        ]
        for (name, values, taken) in cases {
            let sorted = values.sorted()
            for ranks in [[n / 200, n / 200 + 1, n - 1 - n / 200, n - n / 200], [n / 2], [0, n - 1]] {
                for parallel in [serially, reversedPieces] {
                    let got = orderStatisticsByBrackets(values, ranks, parallel: parallel)
                    if taken { XCTAssertNotNil(got, "\(name) \(ranks)") }
                    // The sample's median is −1, the values' about ½: no bracket holds it.
                    if !taken && ranks == [n / 2] { XCTAssertNil(got, "\(name) \(ranks)") }
                    if let got { for k in ranks { XCTAssertEqual(got[k], sorted[k], "\(name) rank \(k)") } }
                }
            }
            let ps: [Double] = [0.5, 99.5]
            XCTAssertEqual(percentiles(values, ps), ps.map { p -> Float in
                let r = p / 100 * Double(n - 1), k = Int(r), f = Float(r - Double(k))
                return sorted[k] + f * (sorted[k + 1] - sorted[k])
            }, name)
        }
        var nan = randomImage(n, 1, seed: 26, scale: 1).pixels
        nan[1234] = .nan
        XCTAssertNil(orderStatisticsByBrackets(nan, [n / 2], parallel: serially))
        XCTAssertNil(orderStatisticsByBrackets(randomImage(n, 1, seed: 27, scale: 1).pixels, [0, n / 2, n - 1], parallel: serially))
        XCTAssertEqual(orderStatisticsByBrackets(nan, [], parallel: serially), [:])
        XCTAssertEqual(percentiles(randomImage(n, 1, seed: 28, scale: 1).pixels, []), [])
    }

    /// NaN among many values (a damaged float file): the result is unspecified, but it comes back.
    func testPercentilesOfLargeInputsWithNaNComeBack() {
        var values = randomImage(70_001, 1, seed: 8, scale: 10).pixels
        values[5] = .nan; values[60_000] = .nan
        XCTAssertEqual(percentiles(values, [0.5, 50, 99.5]).count, 3)
    }

    /// q10 = 1 and q90 = 9 for 0...10, so x -> (x - 1) / 8, clipped.
    func testPercentileScalingClipsByHand() {
        let im = FloatImage(width: 11, height: 1, pixels: (0...10).map { Float($0) })
        let out = percentileNormalise(im, lower: 10, upper: 90)
        XCTAssertEqual(out.pixels, [0, 0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1, 1])
    }

    /// A single hot pixel ruins max scaling but not the default robust scaling.
    func testDefaultIsRobustToAHotPixel() {
        var im = FloatImage(width: 1000, height: 1, pixels: (0..<1000).map { Float($0) })
        im[x: 999, y: 0] = 1_000_000
        XCTAssertEqual(Normalisation.default, .percentile(lower: 0.5, upper: 99.5))
        let robust = Normalisation.default.apply(im)
        // q0.5 = 4.995, q99.5 ≈ 994.005: pixel 500 -> (500 - 4.995) / 989.01 ≈ 0.5005.
        XCTAssertEqual(robust[x: 500, y: 0], 0.5005, accuracy: 1e-3)
        XCTAssertEqual(robust[x: 999, y: 0], 1)
        XCTAssertEqual(robust[x: 0, y: 0], 0)
        XCTAssertLessThan(minMaxNormalise(im)[x: 500, y: 0], 0.001)
    }

    /// [1, 2, 3, 4, 100]: median 3, |x - 3| = [2, 1, 0, 1, 97], MAD = 1.
    func testMedianMADByHand() {
        let im = FloatImage(rows: [[1, 2, 3, 4, 100]])
        let s: Float = 1.4826
        assertClose(medianMADStandardise(im).pixels, [-2 / s, -1 / s, 0, 1 / s, 97 / s], accuracy: 1e-5)
        // MAD 0 (more than half the values equal): only the median is subtracted.
        XCTAssertEqual(medianMADStandardise(FloatImage(rows: [[5, 5, 5, 9]])).pixels, [0, 0, 0, 4])
    }

    func testDatasetMaxByHand() {
        let a = FloatImage(rows: [[1, 2]]), b = FloatImage(rows: [[4, -1]])
        let n = DatasetMaxNormaliser(images: [a, b])
        XCTAssertEqual(n.maximum, 4)
        XCTAssertEqual(n.apply(a).pixels, [0.25, 0.5])
        XCTAssertEqual(n.apply(b).pixels, [1, -0.25])
        var m = DatasetMaxNormaliser()
        m.accumulate(a)
        XCTAssertEqual(m.maximum, 2)
        XCTAssertEqual(Normalisation.divide(by: 4).apply(b).pixels, [1, -0.25])
    }

    /// An image whose whole range lies among the denormals (below 2⁻¹²⁶) normalises as the same
    /// image at a normal scale does: 1 / range overflowed to +∞ (segment's mask dice 0.45, train's
    /// loss −89, on such images).
    func testDenormalRangesNormaliseAsNormalOnes() {
        let values: [Float] = [1, 2, 3, 4, 100, 7, 5, 6]
        let tiny = FloatImage(rows: [values.map { $0 * 0x1p-136 }]), plain = FloatImage(rows: [values])
        assertClose(minMaxNormalise(tiny).pixels, minMaxNormalise(plain).pixels, accuracy: 1e-3)
        assertClose(percentileNormalise(tiny, lower: 10, upper: 90).pixels, percentileNormalise(plain, lower: 10, upper: 90).pixels, accuracy: 1e-3)
        assertClose(medianMADStandardise(tiny).pixels, medianMADStandardise(plain).pixels, accuracy: 1e-2)
        XCTAssertTrue(minMaxNormalise(tiny).pixels.allSatisfy(\.isFinite))
    }
}


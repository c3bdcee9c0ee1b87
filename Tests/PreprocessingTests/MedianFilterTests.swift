import Preprocessing
import XCTest

final class MedianFilterTests: XCTestCase {
    // A 4×4 array with an X-ray spike (100) at x = 1, y = 2.
    let a = FloatImage(rows: [
        [1, 9, 2, 8],
        [3, 7, 4, 6],
        [5, 100, 0, 2],
        [4, 3, 6, 1],
    ])

    /// Every value worked out by hand from the 3×3 windows (mirror: row -1 reads row 1, row 4
    /// reads row 2; e.g. corner (0,0): {7,3,7, 9,1,9, 7,3,7} -> 7). Also equal to
    /// scipy.ndimage.median_filter(a, 3, mode='mirror').
    func testMirrorEdgesCornersAndSpikeByHand() {
        let m = medianFilter3x3(a, border: .mirror)
        XCTAssertEqual(m.rows, [
            [7, 4, 6, 4],
            [7, 4, 6, 2],
            [5, 4, 4, 4],
            [5, 5, 2, 1],
        ])
    }

    /// Half-sample reflection (scipy.ndimage's default 'reflect'): corner (0,0) reads
    /// {1,1,9, 1,1,9, 3,3,7} -> 3.
    func testReflectEdgesCornersByHand() {
        let m = medianFilter3x3(a, border: .reflect)
        XCTAssertEqual(m.rows, [
            [3, 3, 7, 6],
            [5, 4, 6, 4],
            [4, 4, 4, 2],
            [4, 4, 3, 1],
        ])
    }

    func testDefaultIsMirrorLikePyNanoFind() {
        XCTAssertEqual(medianFilter3x3(a), medianFilter3x3(a, border: .mirror))
    }

    /// The sorted-columns algorithm against a plain sort of the nine values, for all border
    /// modes and awkward sizes (1×1, single rows and columns, odd sizes, rows wider than the
    /// filter's chunks of 1024 columns, and one ending a column past a chunk), with repeated values.
    func testMatchesBruteForceForAllModesAndSizes() {
        let sizes = [(1, 1), (1, 5), (6, 1), (2, 2), (3, 7), (8, 5), (17, 9), (1024, 3), (1025, 2), (2500, 4)]
        for (k, (w, h)) in sizes.enumerated() {
            var im = randomImage(w, h, seed: UInt64(k))
            im = im.map { ($0 / 100).rounded() }  // force ties
            for mode in BorderMode.allCases {
                var expected = [Float]()
                for y in 0..<h {
                    for x in 0..<w {
                        var window = [Float]()
                        for dy in -1...1 {
                            for dx in -1...1 {
                                window.append(im[x: mode.index(x + dx, count: w), y: mode.index(y + dy, count: h)])
                            }
                        }
                        expected.append(window.sorted()[4])
                    }
                }
                XCTAssertEqual(medianFilter3x3(im, border: mode).pixels, expected, "\(w)x\(h) \(mode)")
            }
        }
    }

    /// Bands of rows (run in reverse order, or side by side) give the one-pass filter bit for bit,
    /// band edges and image edges included.
    func testBandsOfRowsEqualOnePass() {
        let im = randomImage(301, 997, seed: 21).map { ($0 / 10).rounded() }  // 4 bands, ties
        for mode in BorderMode.allCases {
            let one = medianFilter3x3(im, border: mode)
            XCTAssertEqual(medianFilter3x3(im, border: mode, parallel: reversedPieces).pixels, one.pixels, "reversed \(mode)")
            XCTAssertEqual(medianFilter3x3(im, border: mode, parallel: sideBySide).pixels, one.pixels, "side by side \(mode)")
        }
    }

    /// 5×5 ramp v = x + 5y with a spike 1000 at the centre (where 12 was). Its 3×3 median is
    /// median{6,7,8,11,1000,13,16,17,18} = 13. Image std = 193.7 (hand: E[x²] = 1004756/25,
    /// mean = 51.52), so 5σ = 968.7 < |1000 - 13|: only the spike is replaced; the ramp's other
    /// pixels differ from their medians by at most 5 and stay as they are.
    func testRemoveSpikesReplacesOnlyTheSpike() {
        var im = FloatImage(width: 5, height: 5, pixels: (0..<25).map { Float($0) })
        im[x: 2, y: 2] = 1000
        let cleaned = removeSpikes(im)
        var expected = FloatImage(width: 5, height: 5, pixels: (0..<25).map { Float($0) })
        expected[x: 2, y: 2] = 13
        XCTAssertEqual(cleaned, expected)
        // A plain median filter would also change the ramp's corners (corner (0,0) -> 5).
        XCTAssertEqual(medianFilter3x3(im)[x: 0, y: 0], 5)
        // A threshold too high for the spike leaves everything untouched.
        XCTAssertEqual(removeSpikes(im, threshold: 6), im)
    }

    func testSpikeRemovedByPlainMedianToo() {
        var im = FloatImage(width: 5, height: 5, repeating: 2)
        im[x: 0, y: 0] = 500  // a spike in a corner
        im[x: 3, y: 2] = -400  // a dead pixel inside
        XCTAssertEqual(medianFilter3x3(im), FloatImage(width: 5, height: 5, repeating: 2))
    }
}

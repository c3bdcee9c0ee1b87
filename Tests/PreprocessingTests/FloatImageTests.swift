import MicrographIO
import Preprocessing
import XCTest

final class FloatImageTests: XCTestCase {
    func testRowMajorSubscriptsRowZeroAtTop() {
        var im = FloatImage(rows: [[1, 2, 3], [4, 5, 6]])
        XCTAssertEqual(im.width, 3); XCTAssertEqual(im.height, 2)
        XCTAssertEqual(im[x: 2, y: 0], 3)
        XCTAssertEqual(im[x: 0, y: 1], 4)
        im[x: 1, y: 1] = -1
        XCTAssertEqual(im.pixels, [1, 2, 3, 4, -1, 6])
        XCTAssertEqual(im.rows, [[1, 2, 3], [4, -1, 6]])
        XCTAssertTrue(im.minMax() == (-1, 6))
    }

    /// The word-wise count of non-zero bytes against a plain one: every length around its 8-byte
    /// steps and its 255-step blocks (a byte per lane counts at most 255), bytes of any value.
    func testNonZeroCountCountsEveryNonZeroByte() {
        var rng = SystemRandomNumberGenerator()
        for n in Array(0...40) + [2039, 2040, 2041, 2047, 2048, 4081, 100_000] {
            for fill in [0, 1, 2] {
                let bytes = (0..<n).map { _ -> UInt8 in fill == 0 ? 255 : fill == 1 ? 0 : [0, 1, 16, 128, 255][Int.random(in: 0...4, using: &rng)] }
                XCTAssertEqual(BinaryMask.nonZeroCount(bytes), bytes.filter { $0 != 0 }.count, "\(n) bytes, fill \(fill)")
            }
        }
    }

    func testMaskStaysBinaryThroughSubscriptAndThreshold() {
        var m = BinaryMask(width: 2, height: 2)
        m[x: 1, y: 0] = 255
        XCTAssertEqual(m.values, [0, 1, 0, 0])
        XCTAssertEqual(m.foregroundCount, 1)
        let t = BinaryMask(FloatImage(rows: [[0.2, 0.5], [0.51, 0.9]]), threshold: 0.5)
        XCTAssertEqual(t.values, [0, 0, 1, 1])
        XCTAssertEqual(t.floatImage.pixels, [0, 0, 1, 1])
        XCTAssertTrue(t.isBinary)
    }

    func testConvertsInt16MicrographWithoutScaling() throws {
        let values: [Int16] = [-123, 0, 7, 32767, -32768, 1]
        let bytes = values.flatMap { v -> [UInt8] in
            let u = UInt16(bitPattern: v); return [UInt8(u & 0xFF), UInt8(u >> 8)]
        }
        let m = Micrograph(width: 3, height: 2, pixelType: .int16, data: bytes, format: "mrc")
        let im = try FloatImage(m)
        XCTAssertEqual(im.rows, [[-123, 0, 7], [32767, -32768, 1]])
    }

    func testMaskFromZeroTo255LabelImageAndFrames() throws {
        let data: [UInt8] = [0, 255, 255, 0, /* frame 1 */ 0, 0, 0, 255]
        let m = Micrograph(width: 2, height: 2, frames: 2, pixelType: .uint8, data: data, format: "png")
        XCTAssertEqual(try BinaryMask(m).values, [0, 1, 1, 0])
        XCTAssertEqual(try BinaryMask(m, frame: 1).values, [0, 0, 0, 1])
        XCTAssertThrowsError(try FloatImage(m, frame: 2))
    }

    func testRGBBecomesLuminanceAndFloat32Passes() throws {
        let rgb = Micrograph(width: 1, height: 1, channels: 3, pixelType: .uint8, data: [30, 60, 90], format: "png")
        XCTAssertEqual(try FloatImage(rgb).pixels[0], 0.299 * 30 + 0.587 * 60 + 0.114 * 90, accuracy: 1e-4)
        let f: [Float] = [1.5, -2.25]
        let bytes = f.flatMap { v -> [UInt8] in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
        let fm = Micrograph(width: 2, height: 1, pixelType: .float32, data: bytes, format: "npy")
        XCTAssertEqual(try FloatImage(fm).pixels, [1.5, -2.25])
        let c = Micrograph(width: 1, height: 1, pixelType: .complex64, data: [UInt8](repeating: 0, count: 8), format: "mrc")
        XCTAssertThrowsError(try FloatImage(c))
    }
}

final class NonFinitePixelTests: XCTestCase {
    /// Odd sizes (vector tails), pieces side by side: every NaN and ±∞ is found wherever it lies
    /// and marked, with the extremes of the finite pixels when there are none; the fill then
    /// gives them values of the others.
    func testNonFinitePixelsAreFound() {
        for (w, h) in [(7, 3), (301, 997), (1024, 65)] {
            var image = randomImage(w, h, seed: UInt64(w))
            let clean = image.nonFinitePixels(parallel: sideBySide)
            XCTAssertNil(clean.mask)
            XCTAssertEqual(clean.min, image.pixels.min()); XCTAssertEqual(clean.max, image.pixels.max())
            let n = w * h
            let spots = [0, n - 1, n / 2, n / 3 + 1].filter { $0 < n }
            let bad: [Float] = [.nan, .infinity, -.infinity, .nan]
            for (k, i) in spots.enumerated() { image.pixels[i] = bad[k] }
            let found = image.nonFinitePixels(parallel: reversedPieces).mask
            XCTAssertEqual(found?.foregroundCount, Set(spots).count, "\(w)x\(h)")
            for i in 0..<n { XCTAssertEqual(found?.values[i], Set(spots).contains(i) ? 1 : 0) }
            let original = image
            image.fillLikeOthers(found!)
            let others = Set(original.pixels.enumerated().filter { !Set(spots).contains($0.offset) }.map(\.element))
            for i in 0..<n { XCTAssertTrue(Set(spots).contains(i) ? others.contains(image.pixels[i]) : image.pixels[i] == original.pixels[i]) }
        }
        var none = FloatImage(width: 5, height: 4, pixels: [Float](repeating: .nan, count: 20))
        let all = none.nonFinitePixels().mask!
        XCTAssertEqual(all.foregroundCount, 20)
        XCTAssertEqual(none.fillLikeOthers(all), 0)
        XCTAssertEqual(none.pixels, [Float](repeating: 0, count: 20))
    }

    /// The vectorised extremes equal a plain scan, NaN passed over, at odd sizes and in pieces.
    func testExtremesMatchAPlainScan() {
        for (w, h) in [(1, 1), (17, 5), (640, 333)] {
            var image = randomImage(w, h, seed: 9, scale: 200)
            for i in stride(from: 3, to: image.count, by: 97) { image.pixels[i] = .nan }
            image.pixels[image.count - 1] = -5000
            let finite = image.pixels.filter { !$0.isNaN }
            let e = image.extremes(parallel: sideBySide)
            XCTAssertEqual(e.min, finite.min()!, "\(w)x\(h)")
            XCTAssertEqual(e.max, finite.max()!, "\(w)x\(h)")
        }
        XCTAssertEqual(FloatImage(width: 3, height: 3, repeating: 7).extremes().min, 7)
    }
}

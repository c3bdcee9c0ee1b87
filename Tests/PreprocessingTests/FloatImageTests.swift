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

import Foundation
import Preprocessing
import Training
import XCTest

/// A training image brought to another pixel size keeps its mask on its particles: both at the
/// new size, the disc where the image shows it.
final class ResamplingTrainingImagesTests: XCTestCase {
    func testImageAndMaskStayTogether() {
        let w = 90, h = 60, cx = 30.0, cy = 25.0, r = 12.0
        var pixels = [Float](), values = [UInt8]()
        for y in 0..<h { for x in 0..<w {
            let inside = (Double(x) + 0.5 - cx) * (Double(x) + 0.5 - cx) + (Double(y) + 0.5 - cy) * (Double(y) + 0.5 - cy) < r * r
            pixels.append(inside ? 10 : 0); values.append(inside ? 1 : 0)
        } }
        let original = LabelledImage(name: "disc", url: URL(fileURLWithPath: "/disc.mrc"), image: FloatImage(width: w, height: h, pixels: pixels),
                                     mask: BinaryMask(width: w, height: h, values: values), pixelSizeNm: 0.1, group: "g")
        for (target, scale) in [(0.05, 2.0), (0.2, 0.5), (0.1, 1.0)] {
            let out = original.resampled(toPixelSizeNm: target)
            XCTAssertEqual(out.pixelSizeNm, target)
            XCTAssertEqual(out.image.width, Int((Double(w) * scale).rounded())); XCTAssertEqual(out.image.height, Int((Double(h) * scale).rounded()))
            XCTAssertEqual(out.mask.width, out.image.width); XCTAssertEqual(out.mask.height, out.image.height)
            XCTAssertEqual(out.sizeResampled(toPixelSizeNm: target).width, out.image.width)
            // The mask's disc: its area and centre scaled, and the image bright wherever it is.
            var n = 0.0, sx = 0.0, sy = 0.0, dim = 0
            for y in 0..<out.mask.height { for x in 0..<out.mask.width where out.mask.values[y * out.mask.width + x] != 0 {
                n += 1; sx += Double(x) + 0.5; sy += Double(y) + 0.5
                if out.image.pixels[y * out.image.width + x] < 5 { dim += 1 }
            } }
            XCTAssertEqual(n, Double.pi * r * r * scale * scale, accuracy: 0.06 * Double.pi * r * r * scale * scale, "area at \(target)")
            XCTAssertEqual(sx / n, cx * scale, accuracy: 0.5, "centre x at \(target)")
            XCTAssertEqual(sy / n, cy * scale, accuracy: 0.5, "centre y at \(target)")
            XCTAssertEqual(dim, 0, "mask pixels where the image is dark at \(target)")
        }
    }
}

import Foundation
import MicrographIO
import XCTest

/// Every MRC, TIFF, PNG and NPY entry of ../shared/reference/formats/expected.json must agree
/// with what MicrographReader reports: shape, dtype and sha256 exactly, statistics and pixel
/// size to the tolerances the corpus README gives. (DM, SER and EMD entries belong to the
/// readers of those formats and are checked by their tests.)
final class ReferenceCorpusConformanceTests: XCTestCase {
    static let formats: Set<String> = ["mrc", "tiff", "png", "npy"]

    func testExpectedJSONEntriesAgree() throws {
        let root = try SharedFixtures.shared("reference/formats")
        let json = try Data(contentsOf: root.appendingPathComponent("expected.json"))
        guard let entries = try JSONSerialization.jsonObject(with: json) as? [[String: Any]] else {
            return XCTFail("expected.json is not a list of objects")
        }
        var checked = 0, rejected = 0
        for entry in entries {
            guard let format = entry["format"] as? String, Self.formats.contains(format),
                  let relative = entry["file"] as? String else { continue }
            let url = root.appendingPathComponent(relative)
            if let error = entry["error"] as? String {
                XCTAssertThrowsError(try MicrographReader.open(url), relative) { e in
                    guard let me = e as? MicrographError else { return XCTFail("\(relative): not a MicrographError: \(e)") }
                    XCTAssertTrue(me.reason.contains(error), "\(relative): reason '\(me.reason)' lacks '\(error)'")
                    XCTAssertEqual(me.file, url.path)
                }
                rejected += 1
                continue
            }
            let images: [Micrograph]
            do { images = try MicrographReader.open(url) } catch {
                XCTFail("\(relative): \(error)"); continue
            }
            let index = entry["index"] as? Int ?? 0
            guard index < images.count else { XCTFail("\(relative): no image \(index) (have \(images.count))"); continue }
            check(images[index], against: entry, name: relative)
            checked += 1
        }
        print("expected.json: \(checked) mrc+tiff+png+npy images checked, \(rejected) expected rejections checked")
        XCTAssertGreaterThanOrEqual(checked + rejected, 40, "too few corpus entries were checked")
    }

    func check(_ m: Micrograph, against e: [String: Any], name: String) {
        XCTAssertEqual(m.format, e["format"] as? String, "\(name) format")
        XCTAssertEqual(m.width, e["width"] as? Int, "\(name) width")
        XCTAssertEqual(m.height, e["height"] as? Int, "\(name) height")
        XCTAssertEqual(m.frames, e["frames"] as? Int, "\(name) frames")
        XCTAssertEqual(m.channels, e["channels"] as? Int ?? 1, "\(name) channels")
        XCTAssertEqual(m.pixelType.rawValue, e["dtype"] as? String, "\(name) dtype")
        XCTAssertEqual(m.sha256(frame: 0), e["sha256"] as? String, "\(name) sha256")
        let s = m.statistics(frame: 0)
        if let lo = (e["min"] as? NSNumber)?.doubleValue, let hi = (e["max"] as? NSNumber)?.doubleValue,
           let mean = (e["mean"] as? NSNumber)?.doubleValue {
            assertRelativelyEqual(s.min, lo, 1e-6, "\(name) min")
            assertRelativelyEqual(s.max, hi, 1e-6, "\(name) max")
            assertRelativelyEqual(s.mean, mean, 1e-6, "\(name) mean")
        } else {
            XCTFail("\(name): expected.json entry lacks min/max/mean")
        }
        let tolerance = name.contains("Zeiss") ? 1e-4 : 1e-6
        if let expected = e["pixel_size_nm"] as? [NSNumber], expected.count == 2 {
            guard let p = m.pixelSize else { return XCTFail("\(name): no pixel size, expected \(expected)") }
            assertRelativelyEqual(p.x, expected[0].doubleValue, tolerance, "\(name) pixel size x")
            assertRelativelyEqual(p.y, expected[1].doubleValue, tolerance, "\(name) pixel size y")
        } else {
            XCTAssertNil(m.pixelSize, "\(name): pixel size reported for an uncalibrated file")
        }
        if let unit = e["unit"] as? String {
            XCTAssertEqual(m.storedCalibration?.unitX, unit, "\(name) stored unit")
        }
        let md = e["metadata"] as? [String: Any] ?? [:]
        if let kv = (md["voltage_kv"] as? NSNumber)?.doubleValue {
            assertRelativelyEqual(m.metadata.voltageKV ?? .nan, kv, 1e-9, "\(name) voltage")
        }
        if let mag = md["magnification"] as? NSNumber, m.format == "mrc" {
            assertRelativelyEqual(m.metadata.magnification ?? .nan, mag.doubleValue, 1e-9, "\(name) magnification")
        }
        for (key, value) in [("detector", m.metadata.detector), ("microscope", m.metadata.microscope),
                             ("acquisition_date", m.metadata.acquisitionDate)] {
            if let expected = md[key] as? String { XCTAssertEqual(value, expected, "\(name) \(key)") }
        }
    }
}

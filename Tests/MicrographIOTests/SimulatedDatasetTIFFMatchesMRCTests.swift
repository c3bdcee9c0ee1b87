import Foundation
import MicrographIO
import XCTest

/// sim-v1 ships five images per split both as .mrc and as ImageJ .tif. Both must give exactly
/// the same int16 pixels and the pixel size manifest.jsonl records
/// (to the 5 decimals it prints).
final class SimulatedDatasetTIFFMatchesMRCTests: XCTestCase {
    func testEveryTIFFCopyHasTheMRCPixelsAndTheManifestPixelSize() throws {
        let root = try SharedFixtures.shared("data/sim-v1")
        var pixelSize: [String: Double] = [:]
        let manifest = try String(contentsOf: root.appendingPathComponent("manifest.jsonl"), encoding: .utf8)
        for line in manifest.split(separator: "\n") where !line.isEmpty {
            guard let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let name = o["name"] as? String, let split = o["split"] as? String,
                  let p = (o["pixel_size_nm"] as? NSNumber)?.doubleValue else { continue }
            pixelSize["\(split)/\(name)"] = p
        }
        var checked = 0
        for split in ["train", "test"] {
            let dir = root.appendingPathComponent(split)
            let tifs = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".tif") }.sorted()
            for tif in tifs {
                let name = String(tif.dropLast(4))
                let key = "\(split)/\(name)"
                guard let expected = pixelSize[key] else { XCTFail("\(key) is not in manifest.jsonl"); continue }
                let t = try MicrographReader.open(dir.appendingPathComponent(tif))
                let m = try MicrographReader.open(dir.appendingPathComponent(name + ".mrc"))
                XCTAssertEqual(t.count, 1, key); XCTAssertEqual(m.count, 1, key)
                guard let ti = t.first, let mi = m.first else { continue }
                XCTAssertEqual(ti.format, "tiff"); XCTAssertEqual(mi.format, "mrc")
                XCTAssertEqual(ti.pixelType, .int16, key); XCTAssertEqual(mi.pixelType, .int16, key)
                XCTAssertEqual(ti.width, mi.width, key); XCTAssertEqual(ti.height, mi.height, key)
                XCTAssertEqual(ti.frames, 1, key); XCTAssertEqual(mi.frames, 1, key)
                XCTAssertTrue(ti.data == mi.data, "\(key): .tif and .mrc pixels differ")
                // manifest.jsonl prints pixel_size_nm with 5 decimals (0.04336 for 0.0433565 in the
                // .mrc), and some .tif copies store that rounded value (au_0006: 169/3125 px/nm),
                // so both are matched to half the manifest's last digit.
                for (what, p) in [("tif", ti.pixelSize), ("mrc", mi.pixelSize)] {
                    guard let p else { XCTFail("\(key).\(what) is uncalibrated"); continue }
                    XCTAssertEqual(p.x, expected, accuracy: 5.000_1e-6, "\(key).\(what) pixel size x")
                    XCTAssertEqual(p.y, expected, accuracy: 5.000_1e-6, "\(key).\(what) pixel size y")
                }
                checked += 1
            }
        }
        print("sim-v1: \(checked) .tif/.mrc pairs agree")
        XCTAssertEqual(checked, 10, "sim-v1 should hold 5 .tif copies per split")
    }
}

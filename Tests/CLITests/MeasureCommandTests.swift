import Foundation
import MicrographIO
import Segmentation
import XCTest

/// `nanofind measure` on the masks `segment` wrote gives segment's particle table (same
/// defaults, same columns): calibrated through the mask TIFF or --pixel-size, and in pixels for
/// an uncalibrated image.
final class MeasureCommandTests: XCTestCase {
    func testMeasureOnSegmentsMasksGivesSegmentsTable() throws {
        try XCTSkipUnless(DefaultModel.url != nil, "no default model in this checkout")
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let image = SyntheticMicrograph.discs(side: 1024, pixelSizeNm: 0.05, seed: 3)
        let calibrated = tmp.appendingPathComponent("discs.mrc"), plain = tmp.appendingPathComponent("plain.npy")
        try MRCWriter.write(image, to: calibrated)
        let values = image.data.withUnsafeBytes { $0.bindMemory(to: Int16.self).map { Float(Int16(littleEndian: $0)) } }
        try NPYFile.write(values, shape: [image.height, image.width], to: plain)
        for (input, stem, mask, flags) in [(calibrated, "discs", "discs_mask.tif", []), (calibrated, "discs", "discs_mask.png", ["--pixel-size", "0.05"]),
                                           (plain, "plain", "plain_mask.png", [])] as [(URL, String, String, [String])] {
            let out = tmp.appendingPathComponent(stem)
            let r = try CLIRunner.run(["segment", input.path, "-o", out.path])
            XCTAssertEqual(r.status, 0, r.stderr)
            let table = try String(contentsOf: out.appendingPathComponent("\(stem)_particles.csv"), encoding: .utf8)
                .split(separator: "\n").map(String.init)
            XCTAssertGreaterThan(table.count, 5, "segment found too few particles to compare: \(table)")
            let m = try CLIRunner.run(["measure", out.appendingPathComponent(mask).path] + flags)
            XCTAssertEqual(m.status, 0, m.stderr)
            let measured = m.stdout.split(separator: "\n").map(String.init)
            XCTAssertEqual(measured.first, "file," + table[0], mask)
            XCTAssertEqual(measured.count, table.count, "\(mask) \(flags): \(m.stdout)")
            // Every column but mean_probability (measure has no probability map).
            func columns(_ row: String) -> [Substring] { Array(row.split(separator: ",", omittingEmptySubsequences: false).dropLast()) }
            for (a, b) in zip(measured.dropFirst(), table.dropFirst()) {
                XCTAssertEqual(Array(columns(a).dropFirst()), columns(b), "\(mask) \(flags)")
            }
        }
    }
}

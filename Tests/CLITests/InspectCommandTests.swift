import Foundation
import MicrographIO
import XCTest

/// `nanofind inspect`: JSON lines that agree with the readers, and one-line errors.
final class InspectCommandTests: XCTestCase {
    func testJSONLineForAWrittenFile() throws {
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let url = tmp.appendingPathComponent("ramp.npy")
        try NPYFile.write((0..<(32 * 48)).map { Float($0) }, shape: [32, 48], to: url)
        let r = try CLIRunner.run(["inspect", "--json", url.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(obj?["width"] as? Int, 48)
        XCTAssertEqual(obj?["height"] as? Int, 32)
        XCTAssertEqual(obj?["dtype"] as? String, "float32")
        XCTAssertEqual(obj?["format"] as? String, "npy")
        XCTAssertEqual(obj?["max"] as? Double, Double(32 * 48 - 1))
        XCTAssertEqual((obj?["sha256"] as? String)?.count, 64)
        // Every key for every image, null where there is no value (an uncalibrated .npy).
        XCTAssertEqual(obj?["channels"] as? Int, 1)
        for key in ["pixel_size", "pixel_size_nm", "unit"] { XCTAssertTrue(obj?[key] is NSNull, "\(key): \(r.stdout)") }
    }

    /// Header values come out in their JSON types, as `expected.json` has them: numbers,
    /// arrays of numbers, and text only where the value is text.
    func testHeaderValuesAreNumbersWhereTheyAreNumbers() throws {
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let url = tmp.appendingPathComponent("ramp.mrc")
        try MRCWriter.write(Micrograph(width: 48, height: 32, pixelType: .float32, data: (0..<(32 * 48)).map { Float($0) }.withUnsafeBytes { Array($0) },
                                       pixelSize: PixelSize(isotropic: 0.125), format: "MRC"), to: url)
        let r = try CLIRunner.run(["inspect", "--json", url.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let md = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["metadata"] as? [String: Any])
        XCTAssertEqual(md["mode"] as? Int, 2, "\(md)")
        XCTAssertEqual(md["mxyz"] as? [Int], [48, 32, 1], "\(md)")
        XCTAssertEqual((md["cella_A"] as? [Double])?.first ?? 0, 48 * 1.25, accuracy: 1e-4, "\(md)")
        XCTAssertEqual(md["byteorder"] as? String, "little-endian", "\(md)")
    }

    func testCorruptFilesGiveOneLineEachAndTheRightExitCode() throws {
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let good = tmp.appendingPathComponent("good.npy")
        try NPYFile.write([Float](repeating: 1, count: 64), shape: [8, 8], to: good)
        var bytes = try Data(contentsOf: good)
        bytes.removeLast(40)
        let truncated = tmp.appendingPathComponent("truncated.npy")
        try bytes.write(to: truncated)
        let garbage = tmp.appendingPathComponent("garbage.tif")
        try Data([0x49, 0x49, 0x2A, 0x00, 0xff, 0xff, 0xff, 0x7f] + [UInt8](repeating: 7, count: 100)).write(to: garbage)
        let before = try Data(contentsOf: truncated)

        let one = try CLIRunner.run(["inspect", truncated.path])
        XCTAssertEqual(one.status, 2)
        XCTAssertEqual(one.stderr.split(separator: "\n").count, 1, one.stderr)
        XCTAssertTrue(one.stderr.contains(truncated.path))

        let batch = try CLIRunner.run(["inspect", "--json", good.path, truncated.path, garbage.path])
        XCTAssertEqual(batch.status, 1, "a batch with failures exits 1")
        XCTAssertEqual(batch.stderr.split(separator: "\n").count, 2, batch.stderr)
        XCTAssertTrue(batch.stderr.contains(garbage.path))
        XCTAssertEqual(batch.stdout.split(separator: "\n").count, 1)
        XCTAssertEqual(try Data(contentsOf: truncated), before, "inputs are never touched")
    }
}

/// HDF5 files are read in a child process, so a crash or hang inside libhdf5 becomes one line.
final class IsolatedReaderTests: XCTestCase {
    func testCrashingAndHangingReadersAreReportedNotFatal() throws {
        let emd = CLIRunner.shared.appendingPathComponent("reference/formats/emd/Velox_tem_stack.emd")
        guard FileManager.default.fileExists(atPath: emd.path) else { throw XCTSkip("../shared is not present") }
        let ok = try CLIRunner.run(["inspect", "--json", emd.path])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdout.contains("\"emd-velox\""))

        setenv("NANOFIND_TEST_READER_FAULT", "signal", 1)
        defer { unsetenv("NANOFIND_TEST_READER_FAULT"); unsetenv("NANOFIND_READ_TIMEOUT") }
        let crashed = try CLIRunner.run(["inspect", emd.path])
        XCTAssertEqual(crashed.status, 2)
        XCTAssertEqual(crashed.stderr.split(separator: "\n").count, 1, crashed.stderr)
        XCTAssertTrue(crashed.stderr.contains(emd.path) && crashed.stderr.contains("crashed"), crashed.stderr)

        setenv("NANOFIND_TEST_READER_FAULT", "hang", 1)
        setenv("NANOFIND_READ_TIMEOUT", "1", 1)
        let hung = try CLIRunner.run(["inspect", emd.path])
        XCTAssertEqual(hung.status, 2)
        XCTAssertTrue(hung.stderr.contains("longer than"), hung.stderr)
    }
}

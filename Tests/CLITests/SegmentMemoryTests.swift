import Foundation
import MicrographIO
import Segmentation
import XCTest

/// `segment --memory` bounds a whole file's memory, not only the network's tiles: a 16384²
/// micrograph is segmented within 6 GB and refused, naming what it needs, at 4.5 GB. Long (about
/// a minute and 5 GB): runs with NANOFIND_LONG_TESTS=1 (`make test-long`).
final class SegmentMemoryTests: XCTestCase {
    func testSixteenThousandSquaredStaysWithinMemory() throws {
        guard ProcessInfo.processInfo.environment["NANOFIND_LONG_TESTS"] == "1" else {
            throw XCTSkip("a 16384² segmentation takes a minute and 5 GB: set NANOFIND_LONG_TESTS=1 (make test-long)")
        }
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let input = tmp.appendingPathComponent("big.mrc")
        try MRCWriter.write(SyntheticMicrograph.discs(side: 16384, pixelSizeNm: 0.05), to: input)
        let refused = try CLIRunner.run(["segment", input.path, "-o", tmp.appendingPathComponent("small").path, "--memory", "4.5"])
        XCTAssertEqual(refused.status, 2, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("needs at least"), refused.stderr)
        let limit = 6e9
        let r = try CLIRunner.run(["segment", input.path, "-o", tmp.appendingPathComponent("out").path, "--memory", "6"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // The largest resident set of any child this process has waited for: at least this
        // run's, so a run over the limit cannot pass.
        var usage = rusage()
        #if os(Linux)
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        let peak = Double(usage.ru_maxrss) * 1024  // kilobytes
        #else
        getrusage(RUSAGE_CHILDREN, &usage)
        let peak = Double(usage.ru_maxrss)  // bytes
        #endif
        print("segment 16384² with --memory 6: peak resident \(String(format: "%.2f", peak / 1e9)) GB")
        XCTAssertLessThanOrEqual(peak, limit)
    }
}

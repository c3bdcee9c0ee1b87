import Foundation
import XCTest

/// Locates `../shared` (beside the package root) and makes scratch directories for tests.
enum SharedFixtures {
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// `../shared/<relative>`, or an XCTSkip when the shared folder is not there.
    static func shared(_ relative: String) throws -> URL {
        let url = packageRoot.deletingLastPathComponent().appendingPathComponent("shared").appendingPathComponent(relative)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw XCTSkip("\(url.path) is absent (the ../shared corpus is not checked out); skipping")
        }
        return url
    }

    static func temporaryDirectory(_ name: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("nanofind-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    static var longTests: Bool { ProcessInfo.processInfo.environment["NANOFIND_LONG_TESTS"] == "1" }
}

func assertRelativelyEqual(_ a: Double, _ b: Double, _ tolerance: Double, _ message: String,
                           file: StaticString = #filePath, line: UInt = #line) {
    let scale = max(abs(a), abs(b))
    if scale == 0 { return }
    XCTAssertLessThanOrEqual(abs(a - b) / scale, tolerance, "\(message): \(a) vs \(b)", file: file, line: line)
}

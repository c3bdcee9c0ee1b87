import Foundation
import XCTest
import TestSupport

/// Runs the built `nanofind` executable and captures its output.
struct CLIRunner {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let shared = packageRoot.deletingLastPathComponent().appendingPathComponent("shared")

    /// The executable next to the test bundle (SwiftPM puts products in one folder).
    static var binary: URL { BuiltProducts.nanofind }

    struct Result { var status: Int32; var stdout: String; var stderr: String }

    static func run(_ args: [String], environment: [String: String]? = nil) throws -> Result {
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            XCTFail("nanofind is not built at \(binary.path); `make test` builds it before the tests")
            throw CocoaError(.fileNoSuchFile)
        }
        let p = Process()
        p.executableURL = binary
        p.arguments = args
        if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    static func temporaryDirectory() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("nanofind-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }
}

extension CLIRunner {
    /// Patches a little-endian TIFF written by `TIFFWriter` to say Photometric 0 (WhiteIsZero),
    /// its samples unchanged: how Fiji saves a binary mask made with an inverting LUT.
    /// `page`: which page (0 the first), following the directories' chain.
    static func markWhiteIsZero(_ url: URL, page: Int = 0) throws {
        var b = [UInt8](try Data(contentsOf: url))
        XCTAssertEqual(b[0], 0x49, "a little-endian TIFF")
        func u32(_ at: Int) -> Int { Int(b[at]) | Int(b[at + 1]) << 8 | Int(b[at + 2]) << 16 | Int(b[at + 3]) << 24 }
        var ifd = u32(4)
        for _ in 0..<page { ifd = u32(ifd + 2 + 12 * (Int(b[ifd]) | Int(b[ifd + 1]) << 8)) }
        let n = Int(b[ifd]) | Int(b[ifd + 1]) << 8
        var patched = false
        for e in 0..<n where Int(b[ifd + 2 + 12 * e]) | Int(b[ifd + 3 + 12 * e]) << 8 == 262 {
            b[ifd + 10 + 12 * e] = 0; b[ifd + 11 + 12 * e] = 0; patched = true
        }
        XCTAssertTrue(patched, "no Photometric tag to patch in \(url.path)")
        try Data(b).write(to: url)
    }
}

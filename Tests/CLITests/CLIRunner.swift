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

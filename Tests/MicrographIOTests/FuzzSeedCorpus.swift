import Foundation
import XCTest

/// Seed files for `make fuzz`, written by the tests that already build them: each reader's test
/// class has a `testWriteFuzzSeeds` that runs only when NANOFIND_FUZZ_SEEDS names a folder (the
/// Makefile sets it), and writes its seeds to FOLDER/<target>/. Nothing here is committed: the
/// corpus is made anew from the writers and test helpers each time.
enum FuzzSeedCorpus {
    /// The folder for `target`'s seeds, or a skip when no corpus is being written.
    static func folder(_ target: String) throws -> URL {
        guard let root = ProcessInfo.processInfo.environment["NANOFIND_FUZZ_SEEDS"], !root.isEmpty else {
            throw XCTSkip("writes the fuzzing seed corpus only under `make fuzz` (NANOFIND_FUZZ_SEEDS unset)")
        }
        let dir = URL(fileURLWithPath: root).appendingPathComponent(target)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    static func write(_ seeds: [[UInt8]], target: String, ext: String) throws {
        let dir = try folder(target)
        for (k, s) in seeds.enumerated() { try Data(s).write(to: dir.appendingPathComponent("seed-\(k).\(ext)")) }
    }
}

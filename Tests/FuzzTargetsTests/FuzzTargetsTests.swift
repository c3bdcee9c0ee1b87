import Foundation
import FuzzTargets
import MicrographIO
import NanoNet
import NanoTensor
import TestSupport
import XCTest

/// The fuzzing targets: each accepts a valid file of its format and rejects damaged ones with an
/// error (so a harness exercises the reader, not an early exit), and every input a fuzzer ever
/// found, saved under Tests/FuzzFindings/<target>/, is replayed: it must come back, accepted or
/// rejected, never crash.
final class FuzzTargetsTests: XCTestCase {
    static let findings = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("FuzzFindings")

    func testEachTargetAcceptsItsFormatAndRejectsDamage() throws {
        let image = Micrograph(width: 6, height: 5, pixelType: .uint16, data: (0..<60).map { UInt8($0) },
                               pixelSize: PixelSize(isotropic: 0.1), format: "test")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-targets-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let npy = dir.appendingPathComponent("a.npy")
        try NPYFile.write([1, 2, 3, 4, 5, 6], shape: [2, 3], to: npy)
        let valid: [FuzzTarget: [UInt8]] = [
            .mrc: try MRCWriter.encode(image), .tiff: try TIFFWriter.encode(image), .png: try PNGWriter.encode(image),
            .npy: try readFileBytes(npy), .safetensors: try safetensorsSeeds()[0],
        ]
        for (target, bytes) in valid {
            XCTAssertTrue(target.run(bytes), "\(target) accepts a valid file")
            XCTAssertFalse(target.run(Array(bytes.prefix(bytes.count / 3))), "\(target) rejects a truncated file")
        }
        for target in FuzzTarget.allCases where target != .emi {
            XCTAssertFalse(target.run(Array("not a micrograph".utf8)), "\(target) rejects text")
            XCTAssertFalse(target.run([]), "\(target) rejects an empty input")
        }
    }

    /// The targets without a writer here accept real files of their format (../shared's
    /// reference corpus and the published Keras weights), so a harness that rejected everything
    /// would fail; and reject those files cut to a third.
    func testTheOtherTargetsAcceptRealFiles() throws {
        let shared = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared")
        let files: [(FuzzTarget, String)] = [
            (.dm, "reference/formats/dm/dtype-uint16.dm4"), (.dm, "reference/formats/dm/test_STEM_image.dm3"),
            (.ser, "reference/formats/ser/128x128_TEM_acquire-sum1_1.ser"), (.emi, "reference/formats/ser/128x128_TEM_acquire-sum1.emi"),
            (.emd, "reference/formats/emd/Berkeley_example_image.emd"), (.emd, "reference/formats/emd/Velox_tem_stack.emd"),
            (.h5model, "reference/pynanofind/models/unet481632_AuDots_07b_final.h5"),
        ]
        try XCTSkipUnless(FileManager.default.fileExists(atPath: shared.appendingPathComponent(files[0].1).path),
                          "../shared (the reference corpus) is not present: dm, ser, emi, emd and h5model seeds not checked")
        for (target, path) in files {
            let bytes = try readFileBytes(shared.appendingPathComponent(path))
            XCTAssertTrue(target.run(bytes), "\(target) accepts \(path)")
            if target != .emi {  // the companion's metadata is read as far as it goes
                XCTAssertFalse(target.run(Array(bytes.prefix(bytes.count / 3))), "\(target) rejects \(path) cut to a third")
            }
        }
    }

    /// Every saved finding comes back (accepted or rejected), under each target it was found for.
    /// The HDF5 targets' findings are faults inside libhdf5 itself (out-of-bounds reads, huge
    /// allocations on corrupt B-trees and object headers) that no Swift code can catch: `nanofind`
    /// reads those formats in a child process, so they are replayed through the CLI, which must
    /// answer with one error line and exit 2.
    func testSavedFuzzFindingsComeBackWithoutCrashing() throws {
        var replayed = 0
        for target in FuzzTarget.allCases {
            let dir = Self.findings.appendingPathComponent(target.rawValue)
            let files = (try? FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)) ?? []
            for file in files where !file.lastPathComponent.hasPrefix(".") && file.pathExtension != "md" {
                switch target {
                case .emd, .h5model: try replayThroughTheCLI(file, target)
                default: target.run(try readFileBytes(file))
                }
                replayed += 1
            }
        }
        print("replayed \(replayed) saved fuzzing findings")
        // The folder is in the repository: an empty replay means it was not found, not that all passed.
        XCTAssertGreaterThan(replayed, 0, "no saved findings under \(Self.findings.path)")
    }

    func replayThroughTheCLI(_ file: URL, _ target: FuzzTarget) throws {
        let nanofind = BuiltProducts.nanofind
        guard FileManager.default.isExecutableFile(atPath: nanofind.path) else {
            throw XCTSkip("nanofind is not built beside the tests; `make test` builds it first")
        }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("replay-\(getpid()).safetensors")
        defer { try? FileManager.default.removeItem(at: out) }
        let p = Process()
        p.executableURL = nanofind
        p.arguments = target == .emd ? ["inspect", file.path] : ["convert-model", file.path, "-o", out.path]
        let err = Pipe()
        p.standardError = err; p.standardOutput = FileHandle.nullDevice
        let started = Date()
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let what = "\(target.rawValue)/\(file.lastPathComponent)"
        XCTAssertEqual(p.terminationReason, .exit, "\(what): killed: \(text)")
        // Read (some of libhdf5's faults do no visible harm outside AddressSanitizer) or refused on one line.
        XCTAssert(p.terminationStatus == 0 && text.isEmpty || p.terminationStatus == 2 && text.split(separator: "\n").count == 1,
                  "\(what): exit \(p.terminationStatus): \(text)")
        XCTAssertLessThan(Date().timeIntervalSince(started), 10, "\(what) took too long")
    }

    /// Small native models (depths 1–3, odd widths) as the safetensors corpus.
    func safetensorsSeeds() throws -> [[UInt8]] {
        try [UNetConfig(widths: [2], centreWidth: 3), UNetConfig(widths: [2, 3], centreWidth: 4),
             UNetConfig(widths: [1, 2, 3], centreWidth: 2)].enumerated().map { k, config in
            let net = UNet(config: config, seed: UInt64(k))
            return [UInt8](try SafeTensorsModel.encode(Model(network: net, metadata: ModelMetadata(config: config, provenance: "fuzz seed"))))
        }
    }

    /// The model-file seeds for `make fuzz` (runs only when NANOFIND_FUZZ_SEEDS is set): native
    /// models, and the published Keras weight files when ../shared is beside the checkout.
    func testWriteFuzzSeeds() throws {
        guard let root = ProcessInfo.processInfo.environment["NANOFIND_FUZZ_SEEDS"], !root.isEmpty else {
            throw XCTSkip("writes the fuzzing seed corpus only under `make fuzz` (NANOFIND_FUZZ_SEEDS unset)")
        }
        func write(_ seeds: [[UInt8]], _ target: FuzzTarget) throws {
            let dir = URL(fileURLWithPath: root).appendingPathComponent(target.rawValue)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for (k, s) in seeds.enumerated() { try Data(s).write(to: dir.appendingPathComponent("seed-\(k).\(target.fileExtension)")) }
        }
        try write(try safetensorsSeeds(), .safetensors)
        let keras = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared/reference/pynanofind/models")
        let files = (try? FileManager.default.contentsOfDirectory(at: keras, includingPropertiesForKeys: nil)) ?? []
        try write(try files.filter { $0.pathExtension == "h5" }.map { try readFileBytes($0) }, .h5model)
    }
}

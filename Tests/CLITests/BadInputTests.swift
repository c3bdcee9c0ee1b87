import Foundation
import MicrographIO
import NanoNet
import XCTest

/// Bad inputs that need no reference data: a model NanoFind writes itself, broken copies of it,
/// and images that cannot be segmented. Each gives one line naming the file, exit 2, no output.
final class BadInputTests: XCTestCase {
    var tmp: URL!
    var out: URL!
    var model: URL!
    var image: URL!

    override func setUpWithError() throws {
        tmp = try CLIRunner.temporaryDirectory()
        out = tmp.appendingPathComponent("out")
        model = tmp.appendingPathComponent("small.safetensors")
        let net = UNet(config: UNetConfig(widths: [2, 4], centreWidth: 4), seed: 1)
        try SafeTensorsModel.save(Model(network: net, metadata: ModelMetadata(config: net.config, preprocessing: .none, provenance: "test")), to: model)
        image = tmp.appendingPathComponent("image.npy")
        try NPYFile.write((0..<(64 * 96)).map { Float($0 % 7) }, shape: [64, 96], to: image)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func assertOneLineExit2(_ args: [String], mentions: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try CLIRunner.run(args)
        XCTAssertEqual(r.status, 2, "stdout: \(r.stdout) stderr: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one line: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(mentions), "\(r.stderr) should name \(mentions)", file: file, line: line)
        let left = FileManager.default.fileExists(atPath: out.path) ? try FileManager.default.contentsOfDirectory(atPath: out.path) : []
        XCTAssertEqual(left, [], "outputs left behind", file: file, line: line)
    }

    func testTheGoodModelWorks() throws {
        let r = try CLIRunner.run(["segment", image.path, "-o", out.path, "--model", model.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted(),
                       ["image.summary.json", "image_labels.tif", "image_mask.png", "image_mask.tif", "image_overlay.png",
                        "image_particles.csv", "image_prob.tif", "particles.csv", "report.html", "size_histogram.png", "summary.json"])
    }

    func testBrokenModelFiles() throws {
        let good = try Data(contentsOf: model)
        let truncated = tmp.appendingPathComponent("truncated.safetensors")
        try good.prefix(good.count - 100).write(to: truncated)
        try assertOneLineExit2(["segment", image.path, "-o", out.path, "--model", truncated.path], mentions: truncated.path)

        // A tiny file whose metadata asks for an enormous network: refused before allocating.
        let header = #"{"__metadata__":{"nanofind":"{\"config\":{\"widths\":[4096,4096,4096,4096,4096,4096,4096,4096],\"centreWidth\":4096,\"inputChannels\":64,\"classes\":2,\"dropout\":0.2,\"bnEpsilon\":0.0001,\"bnMomentum\":0.99},\"architecture\":\"unet\",\"threshold\":0.5,\"preprocessing\":\"none\",\"provenance\":\"x\"}"}}"#
        var huge = Data()
        var n = UInt64(header.utf8.count).littleEndian
        withUnsafeBytes(of: &n) { huge.append(contentsOf: $0) }
        huge.append(Data(header.utf8))
        let hugeURL = tmp.appendingPathComponent("huge.safetensors")
        try huge.write(to: hugeURL)
        try assertOneLineExit2(["segment", image.path, "-o", out.path, "--model", hugeURL.path], mentions: "impossible network")

        // Byte ranges that overflow
        let text = String(decoding: good.dropFirst(8).prefix(Int(good.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })), as: UTF8.self)
        let evil = text.replacingOccurrences(of: #""data_offsets":[0,"#, with: #""data_offsets":[9223372036854775800,"#)
        XCTAssertNotEqual(evil, text)
        var evilData = Data()
        var m = UInt64(evil.utf8.count).littleEndian
        withUnsafeBytes(of: &m) { evilData.append(contentsOf: $0) }
        evilData.append(Data(evil.utf8)); evilData.append(good.suffix(from: 8 + text.utf8.count))
        let evilURL = tmp.appendingPathComponent("evil.safetensors")
        try evilData.write(to: evilURL)
        try assertOneLineExit2(["segment", image.path, "-o", out.path, "--model", evilURL.path], mentions: evilURL.path)

        let notAModel = tmp.appendingPathComponent("image-as-model.h5")
        try Data([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a] + [UInt8](repeating: 0, count: 64)).write(to: notAModel)
        try assertOneLineExit2(["segment", image.path, "-o", out.path, "--model", notAModel.path], mentions: notAModel.path)
    }

    func testImagesThatCannotBeSegmented() throws {
        let odd = tmp.appendingPathComponent("odd.npy")
        try NPYFile.write([Float](repeating: 1, count: 30 * 20), shape: [30, 20], to: odd)
        try assertOneLineExit2(["segment", odd.path, "-o", out.path, "--model", model.path], mentions: "at least 64")

        let short = tmp.appendingPathComponent("short.npy")
        try (try Data(contentsOf: image)).dropLast(64).write(to: short)
        try assertOneLineExit2(["segment", short.path, "-o", out.path, "--model", model.path], mentions: short.path)

        // A small PNG of a huge, blank image: refused for its size (its full-size arrays alone,
        // 17 bytes a pixel, exceed the default --memory, a quarter of this machine's), not by
        // running out of memory.
        let sideForTheDefaultMemory = Int((Double(ProcessInfo.processInfo.physicalMemory / 4) / 17).squareRoot()) + 64
        let side = (sideForTheDefaultMemory + 3) / 4 * 4
        let big = tmp.appendingPathComponent("big.png")
        try PNGWriter.writeGrey8([UInt8](repeating: 0, count: side * side), width: side, height: side, to: big)
        try assertOneLineExit2(["segment", big.path, "-o", out.path, "--model", model.path], mentions: "memory")

        let missing = tmp.appendingPathComponent("missing.tif")
        try assertOneLineExit2(["segment", missing.path, "-o", out.path, "--model", model.path], mentions: "no such file")
        // A model named that is not there, whichever kind its name says.
        for name in ["gone.safetensors", "gone.safetensors.checkpoint"] {
            let gone = tmp.appendingPathComponent(name).path
            try assertOneLineExit2(["segment", big.path, "-o", out.path, "--model", gone], mentions: "\(gone): no such file")
        }
    }

    func testTwoInputsWithTheSameNameDoNotOverwriteEachOther() throws {
        let other = tmp.appendingPathComponent("sub")
        try FileManager.default.createDirectory(at: other, withIntermediateDirectories: true)
        let twin = other.appendingPathComponent("image.npy")
        try FileManager.default.copyItem(at: image, to: twin)
        let r = try CLIRunner.run(["segment", image.path, twin.path, "-o", out.path, "--model", model.path])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains(twin.path) && r.stderr.contains("overwrite"), r.stderr)
    }
}

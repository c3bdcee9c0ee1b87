import Foundation
import NanoNet
import NanoTensor
import XCTest

/// Native model files: save → load is bit-exact; malformed files are refused with the file named.
final class ModelFileTests: XCTestCase {
    func tmp(_ name: String) -> URL { FileManager.default.temporaryDirectory.appendingPathComponent("nanofind-\(UUID().uuidString)-\(name)") }

    func testSafetensorsRoundTripIsBitExact() throws {
        let net = UNet(config: UNetConfig(widths: [4, 8, 16], centreWidth: 24, classes: 2), seed: 3)
        for (_, t) in net.namedTensors { for k in 0..<t.count { t.data[k] += Float(k % 7) * 0.001 } }
        let meta = ModelMetadata(config: net.config, threshold: 0.73, trainingPixelSizeNm: 0.05, preprocessing: .none, provenance: "test")
        let url = tmp("m.safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensorsModel.save(Model(network: net, metadata: meta), to: url)
        let back = try Model.load(url)
        XCTAssertEqual(back.metadata, meta)
        let a = net.namedTensors, b = back.network.namedTensors
        XCTAssertEqual(a.map(\.0), b.map(\.0))
        for (x, y) in zip(a, b) {
            XCTAssertEqual(x.1.array.map(\.bitPattern), y.1.array.map(\.bitPattern), x.0)
        }
    }

    func testMalformedFilesAreRefused() throws {
        let net = UNet(config: UNetConfig(widths: [2, 4], centreWidth: 4), seed: 1)
        let url = tmp("m.safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensorsModel.save(Model(network: net, metadata: ModelMetadata(config: net.config, provenance: "t")), to: url)
        let good = try Data(contentsOf: url)
        var cases: [(String, Data)] = [
            ("empty", Data()),
            ("truncated header", good.prefix(20)),
            ("truncated data", good.prefix(good.count - 8)),
            ("garbage", Data((0..<300).map { UInt8($0 % 251) })),
        ]
        var hugeHeader = good
        hugeHeader.replaceSubrange(0..<8, with: [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])
        cases.append(("huge header length", hugeHeader))
        for (label, bytes) in cases {
            let bad = tmp("bad.safetensors")
            try bytes.write(to: bad)
            defer { try? FileManager.default.removeItem(at: bad) }
            XCTAssertThrowsError(try Model.load(bad), label) { e in
                XCTAssertTrue(String(describing: e).contains(bad.path), "\(label): \(e)")
            }
        }
        XCTAssertThrowsError(try Model.load(tmp("missing.h5"))) { e in XCTAssertTrue(String(describing: e).contains("no such file")) }
    }
}

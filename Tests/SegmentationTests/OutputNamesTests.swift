import Foundation
import MicrographIO
import NanoNet
import Segmentation
import XCTest

/// Output names on volumes that fold letter case (macOS' default, FAT and exFAT drives), and
/// outputs that would land on an input however its path is spelled.
final class OutputNamesTests: XCTestCase {
    var tmp: URL!
    let model: Model = {
        let net = UNet(config: UNetConfig(widths: [2, 3], centreWidth: 4), seed: 1)
        return Model(network: net, metadata: ModelMetadata(config: net.config, preprocessing: .robust, provenance: "test"))
    }()

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("names-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func write(_ name: String) throws -> URL {
        let url = tmp.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try NPYFile.write((0..<(64 * 64)).map { Float(($0 * 7919) % 61) }, shape: [64, 64], to: url)
        return url
    }

    /// Runs a batch over `inputs` into `out`; each input's path with the error it failed with, or nil.
    func run(_ inputs: [URL], into out: URL, foldsNameCase: Bool?, probability: ImageOutputs.ProbabilityFormat = .tif) throws
        -> [String: String?] {
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        var settings = BatchSettings(outputDir: out)
        settings.foldsNameCase = foldsNameCase
        settings.probabilityFormat = probability
        let batch = BatchSegmentation(segmenter: Segmenter(model: model), settings: settings, modelName: "test")
        final class Outcomes: @unchecked Sendable { var byPath: [String: String?] = [:] }
        let outcomes = Outcomes()
        batch.run(batch.expand(inputs.map(\.path)).files, jobs: 1) { url, outcome, _ in
            if case .failed(let error) = outcome { outcomes.byPath[url.path] = "\(error)" } else { outcomes.byPath[url.path] = .some(nil) }
        }
        return outcomes.byPath
    }

    /// This machine's temporary folder tells cases apart (Linux), the probe says so and leaves
    /// nothing behind; a folder that cannot be looked into counts as telling them apart.
    func testTheProbeLeavesNothingBehind() throws {
        #if os(Linux)
        XCTAssertFalse(namesFoldCase(in: tmp))
        #endif
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp.path), [])
        XCTAssertFalse(namesFoldCase(in: tmp.appendingPathComponent("missing")))
    }

    /// `a/Sample.npy` and `b/sample.npy`: where the output folder folds case their outputs are
    /// one set of files, so the later is refused as two inputs of one stem are; where it does
    /// not, both are segmented.
    func testStemsDifferingOnlyInCaseClashWhereTheOutputFolderFoldsCase() throws {
        let first = try write("a/Sample.npy"), second = try write("b/sample.npy")
        let folded = try run([first, second], into: tmp.appendingPathComponent("folded"), foldsNameCase: true)
        XCTAssertEqual(folded[first.path], .some(nil))
        let refusal = try XCTUnwrap(folded[second.path] ?? nil)
        XCTAssertTrue(refusal.contains("its outputs would overwrite those of an earlier input named sample"), refusal)
        let apart = try run([first, second], into: tmp.appendingPathComponent("apart"), foldsNameCase: false)
        XCTAssertEqual(apart[first.path], .some(nil))
        XCTAssertEqual(apart[second.path], .some(nil))
        for name in ["Sample_mask.png", "sample_mask.png"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("apart/\(name)").path), name)
        }
    }

    /// An output that is an input under another name (here a hard link, as another case is on a
    /// case-insensitive volume) is refused before anything is written over it.
    func testAnOutputThatIsAnInputUnderAnotherNameIsRefused() throws {
        let input = try write("in/x.npy"), other = try write("in/y.npy")
        let out = tmp.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        XCTAssertEqual(link(other.path, out.appendingPathComponent("x_prob.npy").path), 0)
        let before = try Data(contentsOf: other)
        let outcomes = try run([input, other], into: out, foldsNameCase: nil, probability: .npy)
        let refusal = try XCTUnwrap(outcomes[input.path] ?? nil)
        XCTAssertTrue(refusal.contains("its output x_prob.npy would replace an input of this run"), refusal)
        XCTAssertEqual(outcomes[other.path], .some(nil))
        XCTAssertEqual(try Data(contentsOf: other), before)
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("x_prob.npy")), before)
    }
}

import Foundation
import MicrographIO
import NanoNet
import Preprocessing
import Segmentation
import XCTest

/// `segment` never writes over its inputs or the user's folders, follows --pixel-size on re-runs
/// in both directions, and exits as a cluster job expects: each case a defect a review found.
final class SegmentInputSafetyTests: XCTestCase {
    var tmp: URL!
    var model: URL!

    override func setUpWithError() throws {
        tmp = try CLIRunner.temporaryDirectory()
        model = tmp.appendingPathComponent("model.safetensors")
        let net = UNet(config: .pyNanoFind, seed: 4)
        try SafeTensorsModel.save(Model(network: net, metadata: ModelMetadata(config: net.config, threshold: 0.5, trainingPixelSizeNm: 0.05,
                                                                              preprocessing: .robust, provenance: "test")), to: model)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func image(_ url: URL, pixelSizeNm: Double? = nil) throws {
        let values = (0..<(96 * 80)).map { Float(($0 * 7) % 23) }
        if let pixelSizeNm {
            try MRCWriter.write(Micrograph(width: 96, height: 80, pixelType: .float32, data: values.withUnsafeBytes { Array($0) },
                                           pixelSize: PixelSize(isotropic: pixelSizeNm), format: "MRC"), to: url)
        } else {
            try NPYFile.write(values, shape: [80, 96], to: url)
        }
    }

    /// A folder holding STEM.npy and its truth mask STEM_mask.png (0/255), as train reads them:
    /// the folder, the mask and the mask's bytes.
    func labelledFolder(_ name: String, stem: String) throws -> (URL, URL, Data) {
        let d = tmp.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        try image(d.appendingPathComponent("\(stem).npy"))
        let mask = d.appendingPathComponent("\(stem)_mask.png")
        try PNGWriter.writeGrey8((0..<(96 * 80)).map { $0 % 96 < 40 ? 255 : 0 }, width: 96, height: 80, to: mask)
        return (d, mask, try Data(contentsOf: mask))
    }

    func segment(_ args: [String]) throws -> CLIRunner.Result {
        try CLIRunner.run(["segment"] + args + ["--model", model.path, "--threads", "2"])
    }

    /// `b.npy` segmented into its own folder would write `b_mask.png`, which is also an input.
    /// A file whose name is not UTF-8 (a Latin-1 "µ" from a Windows share) cannot be opened
    /// through Foundation, which lists it with U+FFFD: the error says so and what to do, not
    /// "no such file"; the batch goes on with the others and exits 1.
    func testANameThatIsNotUTF8IsExplained() throws {
        let folder = tmp.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try image(folder.appendingPathComponent("good.npy"))
        let good = try Data(contentsOf: folder.appendingPathComponent("good.npy"))
        let latin1 = Array(folder.path.utf8) + Array("/probe_".utf8) + [0xB5] + Array("m.npy".utf8) + [0]
        let fd = latin1.withUnsafeBufferPointer { p in p.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_CREAT | O_WRONLY, 0o644) } }
        // Some file systems (macOS's APFS) refuse such a name: nothing to test there.
        guard fd >= 0 else { throw XCTSkip("this file system refuses a name that is not UTF-8 (errno \(errno))") }
        _ = good.withUnsafeBytes { write(fd, $0.baseAddress, good.count) }
        close(fd)
        let r = try CLIRunner.run(["segment", folder.path, "-o", tmp.appendingPathComponent("out").path, "--model", model.path])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("probe_\\u{fffd}m.npy: its name is not valid UTF-8, so it cannot be opened by that name: rename it in UTF-8"), r.stderr)
        XCTAssertTrue(r.stdout.contains("1 processed"), r.stdout)
        XCTAssertEqual(MicrographError.missing("/data/a.mrc"), "no such file")
    }

    func testOutputsNeverReplaceAnInput() throws {
        let (d, mask, before) = try labelledFolder("d", stem: "b")
        let r = try segment([d.appendingPathComponent("b.npy").path, mask.path, "-o", d.path])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("b.npy: its output b_mask.png would replace an input of this run"), r.stderr)
        XCTAssertEqual(try Data(contentsOf: mask), before, "an input was modified")
        XCTAssertTrue(r.stdout.contains("1 processed, 0 already done, 1 failed"), r.stdout)  // b_mask.png itself
    }

    /// A folder `name` holding x.npy, segmented into itself once.
    func folderSegmentedIntoItself(_ name: String) throws -> URL {
        let d = tmp.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        try image(d.appendingPathComponent("x.npy"))
        let first = try segment([d.path, "-o", d.path])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout.contains("1 processed, 0 already done, 0 failed"), first.stdout)
        return d
    }

    /// A folder segmented into itself: its images are inputs, its outputs are not.
    func testAnOutputFolderAmongTheInputsIsSearchedForInputsOnly() throws {
        let d = try folderSegmentedIntoItself("same")
        let again = try segment([d.path, "-o", d.path])
        XCTAssertTrue(again.stdout.contains("0 processed, 1 already done, 0 failed"), again.stdout)
    }

    /// A run into the input's own folder killed while it wrote an image's outputs (some written,
    /// no summary yet) leaves its mark; the next run knows the outputs are segment's, replaces
    /// them and removes the mark. Without the mark such a file could be a truth mask: refused.
    func testAKilledRunIntoItsOwnFolderIsFinishedByTheNext() throws {
        let d = try folderSegmentedIntoItself("own")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: d.path).filter { $0.hasPrefix(".") }, [],
                       "a finished image must leave no mark")
        // What a kill between the mask's rename and the summary's leaves.
        let summary = d.appendingPathComponent("x.summary.json"), marker = d.appendingPathComponent(BatchSegmentation.inProgressMarker("x"))
        try FileManager.default.removeItem(at: summary)
        try Data().write(to: marker)
        let again = try segment([d.path, "-o", d.path])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("1 processed, 0 already done, 0 failed"), again.stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: summary.path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: d.path).filter { $0.hasPrefix(".") }, [],
                       "the mark outlived the image's summary")
        // The same outputs with neither summary nor mark are not known to be segment's.
        try FileManager.default.removeItem(at: summary)
        let refused = try segment([d.path, "-o", d.path])
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("x_mask.png beside it was not written by segment (no x.summary.json)"), refused.stderr)
    }

    /// A stack killed part-way (its first image finished, the second marked as being written)
    /// is redone by the next run, not reported done; so is an image killed between its summary
    /// and the removal of its mark.
    func testAStackKilledPartWayIsRedone() throws {
        let input = tmp.appendingPathComponent("stack.mrc"), out = tmp.appendingPathComponent("stack-out")
        let values = (0..<(2 * 96 * 80)).map { Float(($0 * 7) % 23) }
        try MRCWriter.write(Micrograph(width: 96, height: 80, frames: 2, pixelType: .float32, data: values.withUnsafeBytes { Array($0) },
                                       pixelSize: PixelSize(isotropic: 0.05), format: "MRC"), to: input)
        let first = try segment([input.path, "-o", out.path])
        XCTAssertEqual(first.status, 0, first.stderr)
        let again = try segment([input.path, "-o", out.path])
        XCTAssertTrue(again.stdout.contains("0 processed, 1 already done"), again.stdout)
        for leftover in [["stack_1.summary.json"], []] {  // killed in the second image; after the last summary
            for f in leftover { try FileManager.default.removeItem(at: out.appendingPathComponent(f)) }
            try Data(input.path.utf8).write(to: out.appendingPathComponent(BatchSegmentation.inProgressMarker("stack_1")))
            let r = try segment([input.path, "-o", out.path])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("1 processed, 0 already done"), "\(leftover): \(r.stdout)")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasPrefix(".") }, [])
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("stack_1.summary.json").path))
        }
        // Another input's mark (its stem starts the same) does not make this file's results stale.
        try Data("/elsewhere/stack_b.mrc".utf8).write(to: out.appendingPathComponent(BatchSegmentation.inProgressMarker("stack_b")))
        let other = try segment([input.path, "-o", out.path])
        XCTAssertTrue(other.stdout.contains("0 processed, 1 already done"), other.stdout)
    }

    /// A labelled folder (image beside its truth mask) segmented into itself keeps its masks; a
    /// run's histogram (a merge's, beside its summary.json) is not taken for an input.
    func testALabelledFolderSegmentedIntoItselfKeepsItsMasks() throws {
        let (d, mask, before) = try labelledFolder("labelled", stem: "x")
        let r = try segment([d.path, "-o", d.path])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("x.npy: x_mask.png beside it was not written by segment (no x.summary.json)"), r.stderr)
        XCTAssertTrue(r.stderr.contains("if a killed run of an earlier version left it, remove it"), r.stderr)
        XCTAssertEqual(try Data(contentsOf: mask), before, "a truth mask was replaced")
        // Into another folder it is segmented; a merged run's histogram there is not an input.
        let merged = d.appendingPathComponent("runs/all")
        try FileManager.default.createDirectory(at: merged, withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: merged.appendingPathComponent("summary.json"))
        try PNGWriter.writeGrey8([UInt8](repeating: 9, count: 64 * 64), width: 64, height: 64, to: merged.appendingPathComponent("size_histogram.png"))
        let other = try segment([d.path, "-o", d.appendingPathComponent("runs/new").path])
        XCTAssertEqual(other.status, 0, other.stderr)
        XCTAssertTrue(other.stdout.contains("1 processed, 0 already done, 0 failed"), other.stdout)
    }

    /// A folder where an output goes is named and left alone (a failed image's cleanup removed it).
    func testAFolderAtAnOutputPathIsNamedAndKept() throws {
        try image(tmp.appendingPathComponent("x.npy"))
        let out = tmp.appendingPathComponent("out")
        let mine = out.appendingPathComponent("x_overlay.png/notes.txt")
        try FileManager.default.createDirectory(at: mine.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: mine)
        let r = try segment([tmp.appendingPathComponent("x.npy").path, "-o", out.path])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("x_overlay.png is a folder"), r.stderr)
        XCTAssertEqual(try Data(contentsOf: mine), Data("mine".utf8))
    }

    /// --pixel-size that replaces a file's own calibration is warned about; a re-run without it
    /// redoes the file at the file's calibration (it was reused), one with it again redoes it too.
    func testPixelSizeReplacingACalibrationIsWarnedAndReRunsFollowIt() throws {
        let f = tmp.appendingPathComponent("cal.mrc")
        try image(f, pixelSizeNm: 0.05)
        let out = tmp.appendingPathComponent("cal")
        let forced = try segment([f.path, "-o", out.path, "--pixel-size", "0.1"])
        XCTAssertEqual(forced.status, 0, forced.stderr)
        XCTAssertTrue(forced.stderr.contains("cal.mrc says 0.05 nm/px; --pixel-size 0.1 replaced it\n"), forced.stderr)
        XCTAssertTrue(forced.stdout.contains("0.1 nm/px"), forced.stdout)
        let own = try segment([f.path, "-o", out.path])
        XCTAssertTrue(own.stdout.contains("1 processed, 0 already done"), own.stdout)
        XCTAssertTrue(own.stdout.contains("0.05 nm/px"), own.stdout)
        XCTAssertFalse(own.stderr.contains("warning"), own.stderr)
        XCTAssertTrue(try segment([f.path, "-o", out.path]).stdout.contains("0 processed, 1 already done"))
        XCTAssertTrue(try segment([f.path, "-o", out.path, "--pixel-size", "0.1"]).stdout.contains("1 processed, 0 already done"))
        // Several calibrated files: one line, the first by path, and a count.
        try image(tmp.appendingPathComponent("cal2.mrc"), pixelSizeNm: 0.06)
        try image(tmp.appendingPathComponent("cal3.mrc"), pixelSizeNm: 0.0999)
        let three = try segment([f.path, tmp.appendingPathComponent("cal2.mrc").path, tmp.appendingPathComponent("cal3.mrc").path,
                                 "-o", tmp.appendingPathComponent("cal-all").path, "--pixel-size", "0.1", "--jobs", "2"])
        XCTAssertEqual(three.stderr.split(separator: "\n").filter { $0.hasPrefix("warning:") },
                       ["warning: \(f.path) says 0.05 nm/px; --pixel-size 0.1 replaced it, and the calibration of 1 more input that differs from it by over 2 %"],
                       three.stderr)
        // The same value as the file's: no warning.
        XCTAssertFalse(try segment([f.path, "-o", out.path, "--pixel-size", "0.0501"]).stderr.contains("warning"))
    }

    /// Exit 2 only when the one file named failed; a folder, or a shard whose one input failed, is
    /// a batch with failures (exit 1), which the SLURM script counts as success.
    func testExitStatusOfABatchWithOneFailedInput() throws {
        let d = tmp.appendingPathComponent("bad")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        let bad = d.appendingPathComponent("broken.mrc")
        try Data(repeating: 0x41, count: 3000).write(to: bad)
        XCTAssertEqual(try segment([bad.path, "-o", tmp.appendingPathComponent("o1").path]).status, 2)
        XCTAssertEqual(try segment([bad.path, "-o", tmp.appendingPathComponent("o2").path, "--shard", "1/1"]).status, 1)
        XCTAssertEqual(try segment([d.path, "-o", tmp.appendingPathComponent("o3").path]).status, 1)
    }

    /// An image that resampling to the model's scale makes too large is refused with the pixel
    /// sizes that make it so, not only the memory.
    func testAMemoryRefusalNamesTheResampling() throws {
        let f = tmp.appendingPathComponent("coarse.mrc")
        try image(f, pixelSizeNm: 3.0)  // 60× the model's 0.05 nm: 5760×4800 at its scale
        let r = try segment([f.path, "-o", tmp.appendingPathComponent("o").path, "--memory", "0.3"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("image is 96×80 pixels of 3 nm, 5760×4800 at the model's 0.05 nm (check the calibration, or give --pixel-size)"),
                      r.stderr)
    }
}

/// Images `segment` cannot read as they are: NaN and infinite pixels, and images of one value.
final class SegmentUnusualPixelsTests: XCTestCase {
    /// NaN rows (an aligned sum's unexposed border) are filled with pixels drawn from the
    /// others and are never particle, with a warning; the rest of the image is segmented as it
    /// would be with those rows so filled. A blank image has no particles, with a warning.
    func testNonFinitePixelsAndBlankImages() throws {
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let model = tmp.appendingPathComponent("model.safetensors")
        let net = UNet(config: .pyNanoFind, seed: 4)
        try SafeTensorsModel.save(Model(network: net, metadata: ModelMetadata(config: net.config, threshold: 0.5,
                                                                              preprocessing: .robust, provenance: "test")), to: model)
        var values = (0..<(96 * 80)).map { Float(($0 * 7) % 23) }
        for i in 0..<(10 * 96) { values[i] = i % 3 == 0 ? .nan : (i % 3 == 1 ? .infinity : -.infinity) }
        var unset = BinaryMask(width: 96, height: 80)
        for i in 0..<(10 * 96) { unset.values[i] = 1 }
        var image = FloatImage(width: 96, height: 80, pixels: values)
        image.fillLikeOthers(unset)
        let filled = image.pixels
        try NPYFile.write(values, shape: [80, 96], to: tmp.appendingPathComponent("holes.npy"))
        try NPYFile.write(filled, shape: [80, 96], to: tmp.appendingPathComponent("filled.npy"))
        try NPYFile.write([Float](repeating: 7, count: 96 * 80), shape: [80, 96], to: tmp.appendingPathComponent("blank.npy"))
        let out = tmp.appendingPathComponent("out")
        let r = try CLIRunner.run(["segment", tmp.appendingPathComponent("holes.npy").path, tmp.appendingPathComponent("filled.npy").path,
                                   tmp.appendingPathComponent("blank.npy").path, "-o", out.path, "--model", model.path,
                                   // (the fill as such: flattened, the NaN image's plane leaves its holes out, the filled one's not)
                                   "--no-flatten"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("holes.npy (holes): 960 pixels are NaN or infinite: filled with pixels drawn from the others, never particle"), r.stderr)
        XCTAssertTrue(r.stderr.contains("blank.npy (blank): every pixel is 7: nothing to segment, no particles"), r.stderr)
        XCTAssertTrue(r.stdout.contains("blank.npy: 96×80, uncalibrated, 0 particles, 0.0 % area"), r.stdout)
        // The notes stay with the results: in each image's summary and under its overlay in the report.
        func notes(_ name: String) throws -> [String]? {
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("\(name).summary.json"))) as? [String: Any]
            return json?["notes"] as? [String]
        }
        XCTAssertEqual(try notes("holes"), ["960 pixels are NaN or infinite: filled with pixels drawn from the others, never particle"])
        XCTAssertEqual(try notes("blank"), ["every pixel is 7: nothing to segment, no particles"])
        XCTAssertEqual(try notes("filled"), [])
        let report = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertTrue(report.contains("<i class=\"note\">every pixel is 7: nothing to segment, no particles</i>"))
        let holes = try MicrographReader.open(out.appendingPathComponent("holes_prob.tif"))[0].floatFrame(0)
        let plain = try MicrographReader.open(out.appendingPathComponent("filled_prob.tif"))[0].floatFrame(0)
        XCTAssertEqual(Array(holes[0..<(10 * 96)]), [Float](repeating: 0, count: 10 * 96))
        XCTAssertEqual(Array(holes[(10 * 96)...]), Array(plain[(10 * 96)...]))
        XCTAssertTrue(holes.allSatisfy(\.isFinite))
    }
}

import Foundation
import MicrographIO
import NanoNet
import ParticleAnalysis
import Segmentation
import XCTest

/// `segment` over a folder: bad files are named and skipped, re-runs skip finished inputs, a run
/// killed with kill -9 is finished by the next one and leaves no partial files, shards merge
/// into the single run's table.
final class BatchSegmentTests: XCTestCase {
    var tmp: URL!
    var model: URL!
    var data: URL!
    let good = 47

    override func setUpWithError() throws {
        tmp = try CLIRunner.temporaryDirectory()
        model = tmp.appendingPathComponent("model.safetensors")
        data = tmp.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        for i in 0..<good {
            try NPYFile.write((0..<(192 * 160)).map { Float(($0 * (i + 3)) % 17) }, shape: [160, 192],
                              to: data.appendingPathComponent(String(format: "img%02d.npy", i)))
        }
        // An untrained network, thresholded at the upper quartile of its output on the first
        // image, so that the masks hold particles and the tables compared below have rows.
        let net = UNet(config: .pyNanoFind, seed: 4)
        let untrained = Model(network: net, metadata: ModelMetadata(config: net.config, preprocessing: .robust, provenance: "test"))
        let first = try MicrographReader.open(data.appendingPathComponent("img00.npy"))[0]
        let probabilities = try Segmenter(model: untrained).segment(first).probability.pixels.sorted()
        try SafeTensorsModel.save(Model(network: net, metadata: ModelMetadata(config: net.config, threshold: probabilities[probabilities.count * 3 / 4],
                                                                              preprocessing: .robust, provenance: "test")), to: model)
        let npy = try Data(contentsOf: data.appendingPathComponent("img00.npy"))
        try npy.prefix(npy.count - 100).write(to: data.appendingPathComponent("bad_truncated.npy"))
        try Data(repeating: 0x41, count: 3000).write(to: data.appendingPathComponent("bad_garbage.mrc"))
        try Data().write(to: data.appendingPathComponent("bad_empty.tif"))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func outputs(_ dir: URL) throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() }

    /// What a re-run takes as done, found wrong by a review (each reproduced on the binary):
    /// a stack whose one frame's outputs were deleted was skipped, the frame lost; a file replaced
    /// by an older-dated one kept its old results; a stack with fewer frames was redone on every
    /// run, the old frame's outputs left behind. And a file named twice failed against itself,
    /// two same-named files in different shards both went through (merge then refused them), and
    /// merge joined shards made with different thresholds.
    func testReRunsRedoWhatChangedAndShardsAndMergesStayOneRun() throws {
        let frames = { (n: Int, seed: Int) in
            Micrograph(width: 96, height: 80, frames: n, pixelType: .float32,
                       data: (0..<(96 * 80 * n)).map { Float(($0 * (seed + 3)) % 19) }.withUnsafeBytes { Array($0) }, format: "MRC")
        }
        let input = tmp.appendingPathComponent("stacks")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        let stack = input.appendingPathComponent("stack.mrc")
        try MRCWriter.write(frames(3, 1), to: stack)
        let out = tmp.appendingPathComponent("rerun")
        func segment(_ extra: [String] = []) throws -> CLIRunner.Result {
            try CLIRunner.run(["segment", stack.path, "-o", out.path, "--model", model.path, "--threads", "1"] + extra)
        }
        XCTAssertTrue(try segment().stdout.contains("1 processed, 0 already done"))
        // The stack is uncalibrated: its report gives sizes in px, not "– nm".
        let report = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertTrue(report.contains(" px, median ⌀ "), report.prefix(2000).description)
        XCTAssertFalse(report.contains("– nm"))
        XCTAssertTrue(try segment().stdout.contains("0 processed, 1 already done"))
        // One frame's outputs deleted: the file is redone.
        for f in try outputs(out) where f.hasPrefix("stack_1") { try FileManager.default.removeItem(at: out.appendingPathComponent(f)) }
        XCTAssertTrue(try segment().stdout.contains("1 processed, 0 already done"))
        // Replaced by another file dated earlier (cp -p, rsync -a): redone.
        let other = tmp.appendingPathComponent("other.mrc")
        try MRCWriter.write(frames(3, 2), to: other)
        try FileManager.default.removeItem(at: stack)
        try FileManager.default.copyItem(at: other, to: stack)
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: 1_577_836_800)], ofItemAtPath: stack.path)
        XCTAssertTrue(try segment().stdout.contains("1 processed, 0 already done"))
        // Two frames now: the third's outputs go, and the next run finds the file done.
        try MRCWriter.write(frames(2, 3), to: stack)
        XCTAssertTrue(try segment().stdout.contains("1 processed, 0 already done"))
        XCTAssertEqual(try outputs(out).filter { $0.hasPrefix("stack_2") }, [])
        XCTAssertTrue(try segment().stdout.contains("0 processed, 1 already done"))
        // A killed run's mark on a frame the file no longer holds: redone once, the mark gone.
        try Data(stack.path.utf8).write(to: out.appendingPathComponent(".stack_5.writing"))
        XCTAssertTrue(try segment().stdout.contains("1 processed, 0 already done"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent(".stack_5.writing").path))
        XCTAssertTrue(try segment().stdout.contains("0 processed, 1 already done"))
        // An input whose name starts with a dot is found done too.
        let hidden = input.appendingPathComponent(".hid.mrc")
        try MRCWriter.write(frames(1, 6), to: hidden)
        let hiddenOut = tmp.appendingPathComponent("hidden")
        for expected in ["1 processed, 0 already done", "0 processed, 1 already done"] {
            let r = try CLIRunner.run(["segment", hidden.path, "-o", hiddenOut.path, "--model", model.path, "--threads", "1"])
            XCTAssertTrue(r.stdout.contains(expected), r.stdout + r.stderr)
        }
        // The same file twice (directly and through its folder) is one input.
        let twice = try CLIRunner.run(["segment", stack.path, input.path, "-o", tmp.appendingPathComponent("twice").path,
                                       "--model", model.path, "--threads", "1"])
        XCTAssertEqual(twice.status, 0, twice.stderr)
        XCTAssertTrue(twice.stdout.contains("1 processed, 0 already done"), twice.stdout)

        // x.mrc in two folders: whichever shard gets the later one refuses it, as one run would.
        let a = tmp.appendingPathComponent("same/A"), b = tmp.appendingPathComponent("same/B")
        for d in [a, b] {
            try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
            try MRCWriter.write(frames(1, 4), to: d.appendingPathComponent("x.mrc"))
        }
        var refused = 0
        var shards: [String] = []
        for k in 1...2 {
            let dir = tmp.appendingPathComponent("sameshard\(k)")
            let r = try CLIRunner.run(["segment", a.path, b.path, "-o", dir.path, "--model", model.path, "--threads", "1", "--shard", "\(k)/2"])
            if r.stderr.contains("\(b.path)/x.mrc: its outputs would overwrite those of an earlier input named x") { refused += 1 }
            shards.append(dir.path)
        }
        XCTAssertEqual(refused, 1)
        XCTAssertEqual(try CLIRunner.run(["merge"] + shards + ["-o", tmp.appendingPathComponent("samemerged").path]).status, 0)
        // A stack x (frames x_0, x_1) and a file x_1 go to one shard, which refuses x_1 as one run does.
        let framesDir = tmp.appendingPathComponent("frames")
        try FileManager.default.createDirectory(at: framesDir, withIntermediateDirectories: true)
        try MRCWriter.write(frames(2, 7), to: framesDir.appendingPathComponent("x.mrc"))
        try MRCWriter.write(frames(1, 8), to: framesDir.appendingPathComponent("x_1.mrc"))
        var frameShards: [String] = [], frameRefusals = 0
        for k in 1...5 {
            let dir = tmp.appendingPathComponent("frameshard\(k)")
            let r = try CLIRunner.run(["segment", framesDir.path, "-o", dir.path, "--model", model.path, "--threads", "1", "--shard", "\(k)/5"])
            if r.stderr.contains("x_1.mrc: its outputs would overwrite those of an earlier input named x_1") { frameRefusals += 1 }
            frameShards.append(dir.path)
        }
        XCTAssertEqual(frameRefusals, 1)
        let framesMerged = try CLIRunner.run(["merge"] + frameShards + ["-o", tmp.appendingPathComponent("framesmerged").path])
        XCTAssertEqual(framesMerged.status, 0, framesMerged.stderr)
        // Shards made with other thresholds are not merged under one.
        let t1 = tmp.appendingPathComponent("t1"), t2 = tmp.appendingPathComponent("t2")
        _ = try CLIRunner.run(["segment", data.path, "-o", t1.path, "--model", model.path, "--threads", "1", "--shard", "1/8", "--threshold", "0.9"])
        _ = try CLIRunner.run(["segment", data.path, "-o", t2.path, "--model", model.path, "--threads", "1", "--shard", "2/8"])
        let mixed = try CLIRunner.run(["merge", t1.path, t2.path, "-o", tmp.appendingPathComponent("mixed").path])
        XCTAssertEqual(mixed.status, 2, mixed.stderr)
        XCTAssertTrue(mixed.stderr.contains("was made with other settings than \(t1.path) (threshold"), mixed.stderr)
        // --pixel-size over non-square pixels is said, whichever axis differs.
        let aniso = tmp.appendingPathComponent("aniso.mrc")
        var m = frames(1, 5)
        m.pixelSize = PixelSize(x: 0.05, y: 0.0625)
        try MRCWriter.write(m, to: aniso)
        let warned = try CLIRunner.run(["segment", aniso.path, "-o", tmp.appendingPathComponent("aniso").path, "--model", model.path,
                                        "--threads", "1", "--pixel-size", "0.05"])
        XCTAssertEqual(warned.status, 0, warned.stderr)
        XCTAssertTrue(warned.stderr.contains("warning: \(aniso.path) says 0.0625 nm/px; --pixel-size 0.05 replaced it"), warned.stderr)
        // The default model named by its path is the default model: the digest decides, not the name.
        if let defaultModel = DefaultModel.url {
            let named = tmp.appendingPathComponent("named")
            _ = try CLIRunner.run(["segment", aniso.path, "-o", named.path, "--threads", "1", "--pixel-size", "0.05"])
            let again = try CLIRunner.run(["segment", aniso.path, "-o", named.path, "--threads", "1", "--pixel-size", "0.05", "--model", defaultModel.path])
            XCTAssertTrue(again.stdout.contains("0 processed, 1 already done"), again.stdout + again.stderr)
        }
    }

    func testBadFilesAreNamedTheBatchGoesOnAndReRunsSkipFinishedInputs() throws {
        let out = tmp.appendingPathComponent("out")
        let r = try CLIRunner.run(["segment", data.path, "-o", out.path, "--model", model.path, "--threads", "2"])
        XCTAssertEqual(r.status, 1, r.stderr)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        XCTAssertEqual(errors.count, 3, r.stderr)
        for bad in ["bad_truncated.npy", "bad_garbage.mrc", "bad_empty.tif"] {
            XCTAssertEqual(errors.filter { $0.contains(bad) }.count, 1, "\(bad) named once: \(r.stderr)")
        }
        XCTAssertTrue(r.stdout.contains("\(good) processed, 0 already done, 3 failed"), r.stdout)
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [String: Any]
        XCTAssertEqual((summary?["images"] as? [Any])?.count, good)
        XCTAssertEqual(try outputs(out).filter { $0.hasSuffix("_particles.csv") }.count, good)
        // The run's report lists the inputs that failed, with the line that said why.
        let failed = try XCTUnwrap(summary?["failed"] as? [[String: String]])
        XCTAssertEqual(failed.map { URL(fileURLWithPath: $0["input"] ?? "").lastPathComponent }.sorted(),
                       ["bad_empty.tif", "bad_garbage.mrc", "bad_truncated.npy"])
        for f in failed {
            let line = try XCTUnwrap(f["error"])
            XCTAssertTrue(errors.contains { $0 == "error: " + line }, "\(line) is what stderr said: \(r.stderr)")
        }
        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("<p id=\"failed\"><b>3 inputs could not be segmented</b>"), html.prefix(3000).description)
        for bad in ["bad_truncated.npy", "bad_garbage.mrc", "bad_empty.tif"] { XCTAssertTrue(html.contains(bad), bad) }
        let again = try CLIRunner.run(["segment", data.path, "-o", out.path, "--model", model.path])
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.stdout.contains("0 processed, \(good) already done, 3 failed"), again.stdout)
        // A run whose every input fails, into this folder: its report says so (the earlier one
        // would otherwise stand, listing no failure).
        let allBad = try CLIRunner.run(["segment", data.appendingPathComponent("bad_empty.tif").path, data.appendingPathComponent("bad_garbage.mrc").path,
                                        "-o", out.path, "--model", model.path])
        XCTAssertEqual(allBad.status, 1)
        let rewritten = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [String: Any]
        XCTAssertEqual((rewritten?["failed"] as? [[String: String]])?.count, 2)
        XCTAssertEqual((rewritten?["images"] as? [Any])?.count, 0)
        // Other settings are not "already done": a new threshold redoes every file.
        let other = try CLIRunner.run(["segment", data.path, "-o", out.path, "--model", model.path, "--threshold", "0.9"])
        XCTAssertTrue(other.stdout.contains("\(good) processed, 0 already done, 3 failed"), other.stdout)
        // and so do other splitting or preparation settings.
        let unsplit = try CLIRunner.run(["segment", data.path, "-o", out.path, "--model", model.path, "--threshold", "0.9", "--no-split-touching"])
        XCTAssertTrue(unsplit.stdout.contains("\(good) processed, 0 already done, 3 failed"), unsplit.stdout)
        let same = try CLIRunner.run(["segment", data.path, "-o", out.path, "--model", model.path, "--threshold", "0.9", "--no-split-touching"])
        XCTAssertTrue(same.stdout.contains("0 processed, \(good) already done, 3 failed"), same.stdout)
        // A different model saved under the same name (retrained, say) redoes every file.
        let net = UNet(config: .pyNanoFind, seed: 5)
        try SafeTensorsModel.save(Model(network: net, metadata: ModelMetadata(config: net.config, preprocessing: .robust, provenance: "test")), to: model)
        let retrained = try CLIRunner.run(["segment", data.path, "-o", out.path, "--model", model.path, "--threshold", "0.9", "--no-split-touching"])
        XCTAssertTrue(retrained.stdout.contains("\(good) processed, 0 already done, 3 failed"), retrained.stdout)
        let digest = try Model.load(model).contentDigest
        let image = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("img00.summary.json"))) as? [String: Any]
        XCTAssertTrue((image?["segmentation"] as? String)?.hasSuffix("model_digest=\(digest.prefix(16))") == true, "\(image?["segmentation"] ?? "none")")
        // The same weights saved again with other provenance are the same model: nothing is redone.
        var relabelled = try Model.load(model)
        relabelled.metadata.provenance = "copied"; relabelled.metadata.metrics = ["dice": 0.5]
        try SafeTensorsModel.save(relabelled, to: model)
        let resaved = try CLIRunner.run(["segment", data.path, "-o", out.path, "--model", model.path, "--threshold", "0.9", "--no-split-touching"])
        XCTAssertTrue(resaved.stdout.contains("0 processed, \(good) already done, 3 failed"), resaved.stdout)
    }

    func testAKilledRunIsFinishedByTheNextAndLeavesNoPartialFiles() throws {
        let out = tmp.appendingPathComponent("killed")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = CLIRunner.binary
        p.arguments = ["segment", data.path, "-o", out.path, "--model", model.path, "--threads", "1"]
        p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(120)
        while try p.isRunning && Date() < deadline && outputs(out).filter({ $0.hasSuffix(".summary.json") }).count < 5 { usleep(1000) }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal, "the batch finished before it could be killed")
        // Done: a summary without the mark of an image still being written (killed between the
        // two, the image is rightly redone).
        let left = try outputs(out)
        let done = left.filter { $0.hasSuffix(".summary.json") && !left.contains(".\($0.dropLast(".summary.json".count)).writing") }.count
        XCTAssertLessThan(done, good)
        let r = try CLIRunner.run(["segment", data.path, "-o", out.path, "--model", model.path])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stdout.contains("\(good - done) processed, \(done) already done"), r.stdout)
        let files = try outputs(out)
        XCTAssertEqual(files.filter { $0.hasPrefix(".") }, [], "partial files left")
        for i in 0..<good {
            let name = String(format: "img%02d", i)
            for suffix in ["_mask.png", "_mask.tif", "_labels.tif", "_prob.tif", "_overlay.png", "_particles.csv", ".summary.json"] {
                XCTAssertTrue(files.contains(name + suffix), "\(name + suffix) missing")
            }
        }
    }

    func testShardsMergeIntoTheSingleRunsTable() throws {
        let single = tmp.appendingPathComponent("single")
        _ = try CLIRunner.run(["segment", data.path, "-o", single.path, "--model", model.path])
        var shards: [String] = []
        for k in 1...3 {
            let dir = tmp.appendingPathComponent("shard\(k)")
            _ = try CLIRunner.run(["segment", data.path, "-o", dir.path, "--model", model.path, "--shard", "\(k)/3"])
            shards.append(dir.path)
        }
        // The comparisons below mean something only if the table has particles from many images.
        let singleTable = try String(contentsOf: single.appendingPathComponent("particles.csv"), encoding: .utf8)
        let images = Set(singleTable.split(separator: "\n").dropFirst().map { $0.prefix { $0 != "," } })
        XCTAssertGreaterThan(images.count, good / 2, "the untrained test network finds particles in too few images to compare tables")
        // An earlier run's leftovers in the first folder (a table and overlay of an image the
        // second folder's summary lists) are not what is merged: each image's own folder is.
        let second = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: shards[1])
            .filter { $0.hasSuffix("_particles.csv") }.sorted()
            .first { (try? String(contentsOfFile: shards[1] + "/" + $0, encoding: .utf8))?.split(separator: "\n").count ?? 0 > 1 })
        let stem = String(second.dropLast("_particles.csv".count))
        let header = try XCTUnwrap(try String(contentsOfFile: shards[1] + "/" + second, encoding: .utf8).split(separator: "\n").first)
        try (header + "\n").write(toFile: shards[0] + "/" + second, atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: shards[1] + "/\(stem)_overlay.png", toPath: shards[0] + "/\(stem)_overlay.png")
        let merged = tmp.appendingPathComponent("merged")
        // Each shard again with an input that is not there: every shard lists it, the merge once.
        for (k, dir) in shards.enumerated() {
            _ = try CLIRunner.run(["segment", data.path, tmp.appendingPathComponent("gone.tif").path, "-o", dir, "--model", model.path,
                                   "--shard", "\(k + 1)/3"])
        }
        let m = try CLIRunner.run(["merge"] + shards + ["-o", merged.path])
        XCTAssertEqual(m.status, 0, m.stderr)
        // The shards' failed inputs are the merged run's: each listed once.
        let shardFailures = try shards.flatMap { dir in
            try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir).appendingPathComponent("summary.json")))
                as? [String: Any])?["failed"] as? [[String: String]]).compactMap { $0["input"] }
        }
        XCTAssertEqual(shardFailures.filter { !$0.hasSuffix("gone.tif") }.count, 3, "the three bad files fail in their shards")
        XCTAssertEqual(shardFailures.filter { $0.hasSuffix("gone.tif") }.count, 3, "the missing input in every shard")
        let mergedSummary = try JSONSerialization.jsonObject(with: Data(contentsOf: merged.appendingPathComponent("summary.json"))) as? [String: Any]
        XCTAssertEqual(((mergedSummary?["failed"] as? [[String: String]]) ?? []).compactMap { $0["input"] }.sorted(), Set(shardFailures).sorted())
        XCTAssertTrue(m.stdout.contains("; 4 inputs failed in the runs merged (listed in the report)"), m.stdout)
        // A merge's folder is no input of another merge: said, naming what to merge instead.
        let again = try CLIRunner.run(["merge", merged.path, shards[2], "-o", tmp.appendingPathComponent("again").path])
        XCTAssertEqual(again.status, 2, again.stderr)
        XCTAssertTrue(again.stderr.contains("\(merged.path)/summary.json: is a merge's summary (of \(shards.joined(separator: ", ")))"), again.stderr)
        let mergedHTML = try String(contentsOf: merged.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertTrue(mergedHTML.contains("../shard2/\(stem)_overlay.png"), "the overlay linked from the image's own folder")
        XCTAssertEqual(try String(contentsOf: merged.appendingPathComponent("particles.csv"), encoding: .utf8),
                       try String(contentsOf: single.appendingPathComponent("particles.csv"), encoding: .utf8))
        // Each report links every image's full overlay where it lies: beside it, or in a shard.
        for (dir, count) in [(single, good), (merged, good)] {
            let html = try String(contentsOf: dir.appendingPathComponent("report.html"), encoding: .utf8)
            let links = html.components(separatedBy: "<a href=\"").dropFirst().map { String($0.prefix { $0 != "\"" }) }
            XCTAssertEqual(links.count, count, dir.lastPathComponent)
            for link in links {
                let target = URL(fileURLWithPath: dir.path + "/" + (link.removingPercentEncoding ?? link)).standardizedFileURL
                XCTAssertTrue(FileManager.default.fileExists(atPath: target.path), "\(dir.lastPathComponent): \(link)")
            }
        }
        // Files in parallel give the same table.
        let parallel = tmp.appendingPathComponent("parallel")
        _ = try CLIRunner.run(["segment", data.path, "-o", parallel.path, "--model", model.path, "--jobs", "2"])
        XCTAssertEqual(try String(contentsOf: parallel.appendingPathComponent("particles.csv"), encoding: .utf8),
                       try String(contentsOf: single.appendingPathComponent("particles.csv"), encoding: .utf8))
        // A table its folder's summary lists but that is gone: refused, naming it, nothing written.
        let gone = tmp.appendingPathComponent("gone")
        try FileManager.default.copyItem(atPath: shards[1], toPath: gone.path)
        try FileManager.default.removeItem(at: gone.appendingPathComponent(second))
        let noTable = try CLIRunner.run(["merge", shards[0], gone.path, shards[2], "-o", tmp.appendingPathComponent("notable").path])
        XCTAssertEqual(noTable.status, 2, noTable.stderr)
        XCTAssertEqual(noTable.stderr, "error: \(gone.path)/\(second): cannot be read, and its folder's summary.json lists image \(stem)\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("notable/particles.csv").path))
        // Folders that share an image (the same shard twice) are refused, not merged twice over.
        let twice = try CLIRunner.run(["merge", shards[0], shards[0], "-o", tmp.appendingPathComponent("twice").path])
        XCTAssertEqual(twice.status, 2, twice.stderr)
        XCTAssertEqual(twice.stderr.split(separator: "\n").count, 1, twice.stderr)
        XCTAssertTrue(twice.stderr.contains("merged folders must not share image names"), twice.stderr)
        // A table edited by hand to hold a diameter of "nan" is merged, its particle left out of
        // the histogram (a NaN has no bin: it stopped merge after its first files were written).
        let table = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: shards[0])
            .filter { $0.hasSuffix("_particles.csv") }.sorted()
            .first { (try? String(contentsOfFile: shards[0] + "/" + $0, encoding: .utf8))?.split(separator: "\n").count ?? 0 > 1 })
        let tableURL = URL(fileURLWithPath: shards[0] + "/" + table)
        var lines = try String(contentsOf: tableURL, encoding: .utf8).split(separator: "\n").map(String.init)
        let columns = lines[0].split(separator: ",").map(String.init)
        var fields = lines[1].split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        for name in ["eq_diameter_nm", "eq_diameter_px"] { fields[try XCTUnwrap(columns.firstIndex(of: name))] = "nan" }
        lines[1] = fields.joined(separator: ",")
        try (lines.joined(separator: "\n") + "\n").write(to: tableURL, atomically: true, encoding: .utf8)
        let edited = tmp.appendingPathComponent("edited")
        let e = try CLIRunner.run(["merge"] + shards + ["-o", edited.path])
        XCTAssertEqual(e.status, 0, e.stderr)
        for name in ["particles.csv", "summary.json", "size_histogram.png", "report.html"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: edited.appendingPathComponent(name).path), name)
        }
        let bad = try CLIRunner.run(["segment", data.path, "-o", merged.path, "--model", model.path, "--shard", "5/4"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertEqual(bad.stderr.split(separator: "\n").count, 1, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("--shard 5/4"), bad.stderr)
    }

    /// Files run side by side, each with its share of --memory; an image that needs more than its
    /// share waits and is segmented alone with all of --memory (the same outputs as one file at a
    /// time), and one that needs more than all of it is refused on one line naming --memory.
    func testAnImageLargerThanItsShareIsSegmentedAloneAfterTheOthers() throws {
        let mixed = tmp.appendingPathComponent("mixed")
        try FileManager.default.createDirectory(at: mixed, withIntermediateDirectories: true)
        for i in 0..<3 {
            let name = String(format: "img%02d.npy", i)
            try FileManager.default.copyItem(at: data.appendingPathComponent(name), to: mixed.appendingPathComponent(name))
        }
        // 3072²: refused by 0.3 GB (a job's share of 0.6), fits 0.6.
        try NPYFile.write((0..<(3072 * 3072)).map { Float($0 % 17) }, shape: [3072, 3072], to: mixed.appendingPathComponent("large.npy"))
        var tables: [String] = []
        for jobs in ["2", "1"] {
            let out = tmp.appendingPathComponent("mixed-\(jobs)")
            let r = try CLIRunner.run(["segment", mixed.path, "-o", out.path, "--model", model.path, "--memory", "0.6", "--jobs", jobs])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stdout.contains("4 processed, 0 already done, 0 failed"), r.stdout)
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("large_particles.csv").path))
            tables.append(try String(contentsOf: out.appendingPathComponent("particles.csv"), encoding: .utf8))
        }
        XCTAssertEqual(tables[0], tables[1], "two at a time (the large one alone) and one at a time give the same table")
        let refused = try CLIRunner.run(["segment", mixed.path, "-o", tmp.appendingPathComponent("mixed-small").path, "--model", model.path,
                                         "--memory", "0.3", "--jobs", "2"])
        XCTAssertEqual(refused.status, 1, refused.stderr)
        let errors = refused.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        XCTAssertEqual(errors.count, 1, refused.stderr)
        XCTAssertTrue(errors.first?.contains("large.npy") == true && errors.first?.contains("--memory gives 0.3 GB") == true, refused.stderr)
        XCTAssertTrue(refused.stdout.contains("3 processed, 0 already done, 1 failed"), refused.stdout)
    }

    /// Two inputs with one stem: the earlier one in the list gets the names, the later one is
    /// named with the problem, however the jobs side by side happen to run.
    func testTheEarlierOfTwoInputsWithOneStemGetsTheNames() throws {
        let root = tmp.appendingPathComponent("stems")
        for folder in ["a", "b"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        try FileManager.default.copyItem(at: data.appendingPathComponent("img00.npy"), to: root.appendingPathComponent("a/x.npy"))
        // The earlier input is the larger one: read side by side, the later one would claim first.
        try NPYFile.write((0..<(2048 * 2048)).map { Float($0 % 13) }, shape: [2048, 2048], to: root.appendingPathComponent("b/x.npy"))
        for run in 0..<3 {
            let out = tmp.appendingPathComponent("stems-out-\(run)")
            let r = try CLIRunner.run(["segment", root.appendingPathComponent("b/x.npy").path, root.appendingPathComponent("a/x.npy").path,
                                       "-o", out.path, "--model", model.path, "--jobs", "2"])
            XCTAssertEqual(r.status, 1, r.stderr)
            let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
            XCTAssertEqual(errors.count, 1, r.stderr)
            XCTAssertTrue(errors.first?.contains("a/x.npy: its outputs would overwrite those of an earlier input named x") == true, r.stderr)
            let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("x.summary.json"))) as? [String: Any]
            let input = summary?["input"] as? String ?? ""
            XCTAssertTrue(input.hasSuffix("b/x.npy"), "the first input given (b/x.npy) owns x_*, not \(input)")
        }
    }

    /// A stack `s` (frames `s_0`, `s_1`) and a file `s_1`: whichever comes first in the list gets
    /// the name `s_1`, and the other is named with the problem, however the jobs happen to run
    /// (the stack is the larger file: read side by side, the later input would claim first).
    func testAStacksFrameAndAFileOfThatNameGoToTheEarlierInput() throws {
        let root = tmp.appendingPathComponent("frames")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let stack = root.appendingPathComponent("s.npy"), single = root.appendingPathComponent("s_1.npy")
        try NPYFile.write((0..<(2 * 2048 * 2048)).map { Float($0 % 13) }, shape: [2, 2048, 2048], to: stack)
        try FileManager.default.copyItem(at: data.appendingPathComponent("img00.npy"), to: single)
        for (run, (first, second)) in [(stack, single), (single, stack), (stack, single), (single, stack)].enumerated() {
            let out = tmp.appendingPathComponent("frames-out-\(run)")
            let r = try CLIRunner.run(["segment", first.path, second.path, "-o", out.path, "--model", model.path, "--jobs", "2"])
            XCTAssertEqual(r.status, 1, r.stderr)
            let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
            XCTAssertEqual(errors.count, 1, r.stderr)
            XCTAssertTrue(errors.first?.contains("\(second.lastPathComponent): its outputs would overwrite those of an earlier input") == true,
                          "run \(run): \(r.stderr)")
            let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("s_1.summary.json"))) as? [String: Any]
            XCTAssertEqual(summary?["input"] as? String, first.path, "run \(run)")
        }
    }

    /// Which inputs wait for the others (the rule behind the test above, which timing alone may
    /// pass): a stem `x_<digits>` beside a stem `x`, both of them; nothing else.
    func testInputsThatMayShareNamesWithAStacksFrames() {
        let names = ["a/s.mrc", "b/s_1.tif", "t_x.npy", "t.npy", "u_2.png", "v.png", "v_01.npy", "w_.npy", "w.npy", "y_3_4.npy", "y_3.tif"]
        XCTAssertEqual(BatchSegmentation.mayShareNames(names.map { URL(fileURLWithPath: $0) }), [0, 1, 5, 6, 9, 10])
    }

    /// `--prob-format none`: every output but the probability map, and a re-run finds the file done.
    /// A name the browser could take for a URL scheme ("grid:A1") is linked percent-encoded.
    func testReportLinksOverlaysWhateverTheirNames() throws {
        let dir = tmp.appendingPathComponent("colon"), out = tmp.appendingPathComponent("colon-out")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: data.appendingPathComponent("img03.npy"), to: dir.appendingPathComponent("grid:A1.npy"))
        let r = try CLIRunner.run(["segment", dir.path, "-o", out.path, "--model", model.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("<a href=\"grid%3AA1_overlay.png\">"), String(html.prefix(2000)))
    }

    func testWithoutTheProbabilityMap() throws {
        let out = tmp.appendingPathComponent("noprob")
        let image = data.appendingPathComponent("img03.npy").path
        let r = try CLIRunner.run(["segment", image, "-o", out.path, "--model", model.path, "--prob-format", "none"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let files = try outputs(out).filter { $0.hasPrefix("img03") }
        XCTAssertEqual(files, ["img03.summary.json", "img03_labels.tif", "img03_mask.png", "img03_mask.tif", "img03_overlay.png",
                               "img03_particles.csv"])
        let again = try CLIRunner.run(["segment", image, "-o", out.path, "--model", model.path, "--prob-format", "none"])
        XCTAssertTrue(again.stdout.contains("0 processed, 1 already done, 0 failed"), again.stdout)
        // Redone with a map, then without (another threshold): no map of the earlier run stays
        // beside the new mask. (Without a map and nothing else changed, the image is done.)
        for (format, flags, maps) in [("npy", [], ["img03_prob.npy"]), ("tif", [], ["img03_prob.tif"]), ("none", [], ["img03_prob.tif"]),
                                      ("none", ["--threshold", "0.3"], [])] {
            let r = try CLIRunner.run(["segment", image, "-o", out.path, "--model", model.path, "--prob-format", format] + flags)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(try outputs(out).filter { $0.hasPrefix("img03_prob") }, maps, format)
        }
        // A run's files that cannot be written (a folder in the way) are said on one line, the
        // run's earlier files left as they were, and a folder's batch exits 1; the images' own
        // outputs are written.
        let summary = try String(contentsOf: out.appendingPathComponent("summary.json"), encoding: .utf8)
        try FileManager.default.removeItem(at: out.appendingPathComponent("report.html"))
        try FileManager.default.createDirectory(at: out.appendingPathComponent("report.html"), withIntermediateDirectories: true)
        let folder = tmp.appendingPathComponent("one")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: data.appendingPathComponent("img04.npy"), to: folder.appendingPathComponent("img04.npy"))
        let blocked = try CLIRunner.run(["segment", folder.path, "-o", out.path, "--model", model.path, "--prob-format", "none"])
        XCTAssertEqual(blocked.status, 1, blocked.stderr)
        XCTAssertEqual(blocked.stderr.split(separator: "\n").filter { $0.hasPrefix("error") },
                       ["error: \(out.path)/report.html: is a folder; it will not be replaced by a file"], blocked.stderr)
        XCTAssertTrue(blocked.stdout.contains("1 processed, 0 already done, 0 failed") && blocked.stdout.contains("could not be written"), blocked.stdout)
        XCTAssertEqual(try String(contentsOf: out.appendingPathComponent("summary.json"), encoding: .utf8), summary)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("img04_mask.png").path))
    }

    func testBadFlagsAndOutputs() throws {
        let image = data.appendingPathComponent("img00.npy").path
        // A folder holding no micrograph is said, not passed over in silence.
        let emptyFolder = tmp.appendingPathComponent("nothing")
        try FileManager.default.createDirectory(at: emptyFolder, withIntermediateDirectories: true)
        try Data("notes".utf8).write(to: emptyFolder.appendingPathComponent("notes.txt"))
        let none = try CLIRunner.run(["segment", emptyFolder.path, "-o", tmp.appendingPathComponent("none").path, "--model", model.path])
        XCTAssertEqual(none.status, 0, none.stderr)
        XCTAssertTrue(none.stderr.hasPrefix("warning: \(emptyFolder.path) holds no micrographs (files ending .ali .dm3"), none.stderr)
        for (args, mention) in [(["--pixel-size", "0"], "--pixel-size"), (["--shard", "0/2"], "--shard"), (["--threshold", "2"], "--threshold"),
                                (["--pixel-size", "-1"], "--pixel-size must be between"), (["--threshold", "-0.5"], "--threshold")] {
            let r = try CLIRunner.run(["segment", image, "-o", tmp.appendingPathComponent("o").path, "--model", model.path] + args)
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(mention), r.stderr)
        }
        // An image that cannot fit --memory (its full-size arrays and the smallest tile) is
        // refused before anything is written, naming what it needs; a smaller one fits.
        let large = tmp.appendingPathComponent("large.npy")
        try NPYFile.write([Float](repeating: 0, count: 3072 * 3072), shape: [3072, 3072], to: large)
        let refused = try CLIRunner.run(["segment", large.path, "-o", tmp.appendingPathComponent("m").path, "--model", model.path,
                                         "--memory", "0.3"])
        XCTAssertEqual(refused.status, 2, refused.stderr)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("needs at least") && refused.stderr.contains("--memory gives 0.3 GB"), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("m/large_mask.png").path))
        let fits = try CLIRunner.run(["segment", image, "-o", tmp.appendingPathComponent("m").path, "--model", model.path,
                                      "--memory", "0.3"])
        XCTAssertEqual(fits.status, 0, fits.stderr)
        let tooLittle = try CLIRunner.run(["segment", image, "-o", tmp.appendingPathComponent("m").path, "--memory", "0.1"])
        XCTAssertEqual(tooLittle.status, 2)
        XCTAssertTrue(tooLittle.stderr.contains("--memory must be between 0.3"), tooLittle.stderr)
        let file = tmp.appendingPathComponent("a-file")
        try Data("x".utf8).write(to: file)
        let r = try CLIRunner.run(["segment", image, "-o", file.path, "--model", model.path])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("is a file, not a folder"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
    }
    /// An image and its export in one folder (x.mrc beside x.tif and x.npy): one of them is
    /// segmented, the microscope's own format first, and the others are named on warning lines,
    /// not failed as name clashes; the run's summary carries its size statistics, which the
    /// report states.
    func testOneFilePerNameInAFolderAndTheRunsSizeStatistics() throws {
        let folder = tmp.appendingPathComponent("exports")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let values = (0..<(192 * 160)).map { Float(($0 * 5) % 17) }
        let bytes = values.withUnsafeBytes { Array($0) }
        try MRCWriter.write(Micrograph(width: 192, height: 160, pixelType: .float32, data: bytes, pixelSize: PixelSize(isotropic: 0.1), format: "MRC"),
                            to: folder.appendingPathComponent("x.mrc"))
        try NPYFile.write(values, shape: [160, 192], to: folder.appendingPathComponent("x.npy"))
        try TIFFWriter.writeFloat32(values, width: 192, height: 160, pixelSizeNM: 0.1, to: folder.appendingPathComponent("x.tif"))
        for i in 0..<3 { try FileManager.default.copyItem(at: data.appendingPathComponent(String(format: "img%02d.npy", i)),
                                                          to: folder.appendingPathComponent("y\(i).npy")) }
        let out = tmp.appendingPathComponent("exports-out")
        let r = try CLIRunner.run(["segment", folder.path, "-o", out.path, "--model", model.path, "--pixel-size", "0.1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("4 processed, 0 already done, 0 failed"), r.stdout)
        let warnings = r.stderr.split(separator: "\n").filter { $0.contains("skipped:") }
        XCTAssertEqual(warnings, ["x.npy", "x.tif"].map {
            "warning: \(folder.path)/\($0): skipped: x.mrc beside it has the same name and is segmented instead (one file per name in a folder: one named on the command line, else the microscope's own format)"
        })
        let summary = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("x.summary.json"))) as? [String: Any])
        XCTAssertEqual(summary["input"] as? String, folder.appendingPathComponent("x.mrc").path)
        // A file named on the command line beside its folder: that one is segmented.
        let chosen = try CLIRunner.run(["segment", folder.appendingPathComponent("x.tif").path, folder.path, "-o", tmp.appendingPathComponent("chosen").path,
                                        "--model", model.path, "--pixel-size", "0.1"])
        XCTAssertEqual(chosen.status, 0, chosen.stderr)
        XCTAssertTrue(chosen.stdout.contains("4 processed, 0 already done, 0 failed"), chosen.stdout)
        XCTAssertEqual(chosen.stderr.split(separator: "\n").filter { $0.contains("skipped: x.tif beside it") }.count, 2, chosen.stderr)
        // An original the readers refuse beside its export: the export is segmented in its place, said.
        let broken = tmp.appendingPathComponent("broken")
        try FileManager.default.createDirectory(at: broken, withIntermediateDirectories: true)
        try Data(repeating: 0x41, count: 3000).write(to: broken.appendingPathComponent("z.mrc"))
        try FileManager.default.copyItem(at: folder.appendingPathComponent("x.tif"), to: broken.appendingPathComponent("z.tif"))
        try FileManager.default.copyItem(at: folder.appendingPathComponent("x.npy"), to: broken.appendingPathComponent("z.npy"))
        let brokenOut = tmp.appendingPathComponent("broken-out")
        let fellBack = try CLIRunner.run(["segment", broken.path, "-o", brokenOut.path, "--model", model.path, "--pixel-size", "0.1"])
        XCTAssertEqual(fellBack.status, 0, fellBack.stderr)
        XCTAssertTrue(fellBack.stdout.contains("1 processed, 0 already done, 0 failed"), fellBack.stdout)
        let instead = fellBack.stderr.split(separator: "\n").filter { $0.contains("is segmented instead") && !$0.contains("skipped:") }
        XCTAssertEqual(instead.count, 1, fellBack.stderr)
        XCTAssertTrue(instead.first?.hasPrefix("warning: \(broken.path)/z.mrc: ") == true, fellBack.stderr)
        XCTAssertTrue(instead.first?.hasSuffix("; z.tif beside it, of the same name, is segmented instead") == true, fellBack.stderr)
        let zSummary = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: brokenOut.appendingPathComponent("z.summary.json"))) as? [String: Any])
        XCTAssertEqual(zSummary["input"] as? String, broken.appendingPathComponent("z.tif").path)
        // A re-run finds the export's outputs done.
        let again = try CLIRunner.run(["segment", broken.path, "-o", brokenOut.path, "--model", model.path, "--pixel-size", "0.1"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("0 processed, 1 already done, 0 failed"), again.stdout)
        // A file that reads but is refused (too small) is refused as itself, not replaced by another.
        let small = tmp.appendingPathComponent("small")
        try FileManager.default.createDirectory(at: small, withIntermediateDirectories: true)
        try NPYFile.write([Float](repeating: 1, count: 32 * 32), shape: [32, 32], to: small.appendingPathComponent("w.npy"))
        try FileManager.default.copyItem(at: folder.appendingPathComponent("x.tif"), to: small.appendingPathComponent("w.tif"))
        let refused = try CLIRunner.run(["segment", small.appendingPathComponent("w.npy").path, small.path, "-o", tmp.appendingPathComponent("small-out").path,
                                         "--model", model.path, "--pixel-size", "0.1"])
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("w.npy: image is 32×32 pixels"), refused.stderr)
        XCTAssertFalse(refused.stderr.contains("of the same name, is segmented instead"), refused.stderr)

        // The statistics against the table: the uncut particles' diameters in nm.
        let run = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("summary.json"))) as? [String: Any])
        let sizes = try XCTUnwrap(run["sizes"] as? [String: Any])
        let lines = try String(contentsOf: out.appendingPathComponent("particles.csv"), encoding: .utf8).split(separator: "\n")
        let header = lines[0].split(separator: ",").map(String.init)
        let d = try XCTUnwrap(header.firstIndex(of: "eq_diameter_nm")), cut = try XCTUnwrap(header.firstIndex(of: "touches_border"))
        let rows = lines.dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let whole = rows.filter { $0[cut] == "0" }.compactMap { Double($0[d]) }.sorted()
        XCTAssertGreaterThan(whole.count, 3, "the test needs particles")
        XCTAssertEqual(sizes["unit"] as? String, "nm")
        XCTAssertEqual(sizes["particles"] as? Int, rows.count)
        XCTAssertEqual(sizes["measured"] as? Int, whole.count)
        XCTAssertEqual(sizes["cut_by_border"] as? Int, rows.count - whole.count)
        let mean = whole.reduce(0, +) / Double(whole.count)
        let sd = (whole.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(whole.count - 1)).squareRoot()
        func q(_ f: Double) -> Double {  // numpy.percentile's default (linear)
            let x = f * Double(whole.count - 1), i = Int(x), t = x - Double(i)
            return i + 1 < whole.count ? whole[i] + t * (whole[i + 1] - whole[i]) : whole[i]
        }
        for (key, value) in [("mean", mean), ("sd", sd), ("median", q(0.5)), ("p10", q(0.1)), ("p90", q(0.9)), ("min", whole[0]), ("max", whole.last!)] {
            XCTAssertEqual(try XCTUnwrap(sizes[key] as? Double, key), value, accuracy: 1e-9 * max(1, abs(value)), key)
        }
        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        let sentence = String(format: "Equivalent diameter of the %d particles%@: mean ± SD %@ ± %@ nm, median %@ nm",
                              whole.count, rows.count > whole.count ? " not cut by the border" : "",
                              Particle.fixed(mean, digits: 2), Particle.fixed(sd, digits: 2), Particle.fixed(q(0.5), digits: 2))
        XCTAssertTrue(html.contains(sentence), "report should say: \(sentence)")
    }
    /// A result that cannot be separate particles on carbon (here everything above a threshold
    /// of 0) and an image resampled far to the model's scale are told of, on stderr and in the
    /// image's summary and the report; an ordinary one gets no such note.
    func testImplausibleResultsAndFarRescalingAreToldOf() throws {
        let net = UNet(config: .pyNanoFind, seed: 4)
        let everything = tmp.appendingPathComponent("everything.safetensors")
        try SafeTensorsModel.save(Model(network: net, metadata: ModelMetadata(config: net.config, threshold: 0, trainingPixelSizeNm: 0.05,
                                                                              preprocessing: .robust, provenance: "test")), to: everything)
        let image = data.appendingPathComponent("img01.npy")
        let out = tmp.appendingPathComponent("implausible")
        let r = try CLIRunner.run(["segment", image.path, "-o", out.path, "--model", everything.path, "--pixel-size", "0.3"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let coverage = "100.0 % of the image is particle, far more than separate particles on carbon show: an illumination or thickness gradient, inverted contrast or a wrong pixel size can do this; check the overlay"
        let rescale = "resampled 6× to the model's 0.05 nm/px from 0.3 nm/px (--pixel-size): if the particles look wrong, check the pixel size"
        let warnings = r.stderr.split(separator: "\n").filter { $0.hasPrefix("warning:") }.map(String.init)
        XCTAssertEqual(Set(warnings), Set([rescale, coverage].map { "warning: \(image.path) (img01): \($0)" }), r.stderr)
        let summary = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("img01.summary.json"))) as? [String: Any])
        XCTAssertEqual(summary["notes"] as? [String], [rescale, coverage])
        XCTAssertTrue(try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8).contains(coverage))
        // The upper quartile at the model's own scale: neither note.
        let plain = try CLIRunner.run(["segment", image.path, "-o", tmp.appendingPathComponent("plausible").path, "--model", model.path])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertFalse(plain.stderr.contains("of the image is particle") || plain.stderr.contains("resampled"), plain.stderr)
    }
    /// --default-pixel-size: the uncalibrated inputs get it, the others keep their own; a re-run
    /// with the same value finds both done, another value redoes the uncalibrated one only; it
    /// cannot go with --pixel-size.
    func testADefaultPixelSizeOnlyWhereTheFileHasNone() throws {
        let folder = tmp.appendingPathComponent("mixed")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let values = (0..<(192 * 160)).map { Float(($0 * 7) % 17) }
        try MRCWriter.write(Micrograph(width: 192, height: 160, pixelType: .float32, data: values.withUnsafeBytes { Array($0) },
                                       pixelSize: PixelSize(isotropic: 0.1), format: "MRC"), to: folder.appendingPathComponent("own.mrc"))
        try FileManager.default.copyItem(at: data.appendingPathComponent("img02.npy"), to: folder.appendingPathComponent("export.npy"))
        let out = tmp.appendingPathComponent("mixed-out")
        func run(_ extra: [String]) throws -> CLIRunner.Result {
            try CLIRunner.run(["segment", folder.path, "-o", out.path, "--model", model.path] + extra)
        }
        let first = try run(["--default-pixel-size", "0.2"])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertFalse(first.stderr.contains("no pixel size"), first.stderr)
        func summary(_ name: String) throws -> [String: Any] {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("\(name).summary.json"))) as? [String: Any])
        }
        XCTAssertEqual(try summary("own")["pixel_size_nm"] as? Double ?? 0, 0.1, accuracy: 1e-6)
        XCTAssertEqual(try summary("own")["pixel_size_source"] as? String, "file")
        XCTAssertEqual(try summary("export")["pixel_size_nm"] as? Double, 0.2)
        XCTAssertEqual(try summary("export")["pixel_size_source"] as? String, "--default-pixel-size")
        XCTAssertTrue(try run(["--default-pixel-size", "0.2"]).stdout.contains("0 processed, 2 already done"))
        XCTAssertTrue(try run(["--default-pixel-size", "0.3"]).stdout.contains("1 processed, 1 already done"))
        XCTAssertTrue(try run([]).stdout.contains("1 processed, 1 already done"))
        let both = try run(["--default-pixel-size", "0.2", "--pixel-size", "0.1"])
        XCTAssertEqual(both.status, 2)
        XCTAssertTrue(both.stderr.contains("--default-pixel-size applies to inputs without a calibration"), both.stderr)
    }
}

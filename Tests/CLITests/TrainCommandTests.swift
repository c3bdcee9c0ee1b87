import Foundation
import MicrographIO
import NanoNet
import Training
import XCTest

/// `nanofind train` end to end on a tiny dataset made here: resume after kill -9, bad data.
final class TrainCommandTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws { tmp = try CLIRunner.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    /// `count` 64×64 images of fringed discs on noise, NAME.npy + NAME_mask.png (NAME.mrc at
    /// `pixelSizeNm` when given).
    func makeData(_ folder: URL, count: Int = 4, pixelSizeNm: Double? = nil) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var state: UInt64 = 7
        func random() -> Double { state = state &* 6364136223846793005 &+ 1442695040888963407; return Double(state >> 11) / Double(1 << 53) }
        for i in 0..<count {
            var pixels = [Float](), mask = [UInt8]()
            let cx = 16 + 32 * random(), cy = 16 + 32 * random(), r = 8 + 8 * random()
            for y in 0..<64 { for x in 0..<64 {
                let inside = (Double(x) - cx) * (Double(x) - cx) + (Double(y) - cy) * (Double(y) - cy) < r * r
                pixels.append(Float(100 + 10 * random() + (inside ? 30 * cos(Double(x) * 1.7) : 0)))
                mask.append(inside ? 255 : 0)
            } }
            if let pixelSizeNm {
                let bytes = pixels.withUnsafeBytes { Array($0) }
                try MRCWriter.write(Micrograph(width: 64, height: 64, pixelType: .float32, data: bytes,
                                               pixelSize: PixelSize(isotropic: pixelSizeNm), format: "MRC"),
                                    to: folder.appendingPathComponent("img\(i).mrc"))
            } else {
                try NPYFile.write(pixels, shape: [64, 64], to: folder.appendingPathComponent("img\(i).npy"))
            }
            try PNGWriter.writeGrey8(mask, width: 64, height: 64, to: folder.appendingPathComponent("img\(i)_mask.png"))
        }
    }

    let tiny = ["--epochs", "3", "--steps-per-epoch", "400", "--batch-size", "2", "--tile", "32", "--widths", "2,4",
                "--lr", "1e-3", "--seed", "3", "--threads", "1"]

    func weights(_ url: URL) throws -> [Float] { try Model.load(url).network.namedTensors.flatMap { $0.1.array } }

    func testResumeAfterKillGivesTheSameWeightsAsAnUninterruptedRun() throws {
        let data = tmp.appendingPathComponent("data")
        try makeData(data, pixelSizeNm: 0.06)
        let whole = tmp.appendingPathComponent("whole.safetensors")
        let r = try CLIRunner.run(["train", data.path, "-o", whole.path] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        // Named after the model, so another model trained into the folder keeps its own.
        for name in ["whole_train_log.csv", "whole_loss_curve.png"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: tmp.appendingPathComponent(name).path), name)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("train_log.csv").path))
        // One row per epoch; the wall time covers the training steps and the validation after them.
        let log = try String(contentsOf: tmp.appendingPathComponent("whole_train_log.csv"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(log.first, "epoch,step,train_loss,train_dice,val_loss,val_dice,samples_per_s,lr,train_s,wall_s")
        XCTAssertEqual(log.count, 4, log.joined(separator: "\n"))
        for row in log.dropFirst() {
            let fields = row.split(separator: ",", omittingEmptySubsequences: false)
            let train = try XCTUnwrap(Double(fields[8])), wall = try XCTUnwrap(Double(fields[9]), String(row))
            XCTAssertGreaterThan(train, 0, String(row))
            XCTAssertGreaterThanOrEqual(wall, train, String(row))
        }
        let meta = try Model.load(whole).metadata
        XCTAssertEqual(meta.trainingRecipe?["tile"], "32")
        XCTAssertEqual(meta.preprocessing, .pyNanoFind)
        XCTAssertNotNil(meta.metrics?["train_pixel_accuracy"])
        XCTAssertEqual(meta.trainingPixelSizeNm ?? 0, 0.06, accuracy: 1e-6)  // MRC keeps float32

        let second = tmp.appendingPathComponent("second")
        try FileManager.default.createDirectory(at: second, withIntermediateDirectories: true)
        let killed = second.appendingPathComponent("killed.safetensors")
        let checkpoint = second.appendingPathComponent("killed.safetensors.checkpoint")
        let p = Process()
        p.executableURL = CLIRunner.binary
        p.arguments = ["train", data.path, "-o", killed.path] + tiny
        p.standardError = FileHandle.nullDevice; p.standardOutput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: checkpoint.path) && p.isRunning && Date() < deadline { usleep(2000) }
        // The first checkpoint (step 100 of the first epoch's 400) has no finished epoch: its best
        // weights are the untrained ones, and using it as a model is refused, naming it.
        let early = second.appendingPathComponent("early.checkpoint")
        try FileManager.default.copyItem(at: checkpoint, to: early)
        let earlyState = try XCTUnwrap(SafeTensorsFile.decode(try Data(contentsOf: early), file: early.path).metadata["trainer"])
        let earlySteps = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(earlyState.utf8)) as? [String: Any])?["stepsDone"] as? Int)
        XCTAssertLessThan(earlySteps, 400, "the first epoch ended before its first checkpoint was copied; make the epoch longer")
        let refused = try CLIRunner.run(["evaluate", data.path, "--model", early.path, "-o", second.appendingPathComponent("early-eval").path])
        XCTAssertEqual(refused.status, 2, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("\(early.path): has no finished epoch yet"), refused.stderr)
        // Killed once its first epoch has ended, part way through the second.
        while (try? Trainer.bestModel(fromCheckpoint: checkpoint)) == nil && p.isRunning && Date() < deadline { usleep(2000) }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal, "the run ended before it could be killed; make it longer")
        XCTAssertFalse(FileManager.default.fileExists(atPath: killed.path), "a killed run must not leave a model")
        // The run so far can be evaluated from its checkpoint (its best epoch, threshold 0.5).
        let partial = try CLIRunner.run(["evaluate", data.path, "--model", checkpoint.path, "-o", second.appendingPathComponent("eval").path])
        XCTAssertEqual(partial.status, 0, partial.stderr)
        XCTAssertTrue(partial.stdout.contains("threshold 0.5000"), partial.stdout)
        // and the checkpoint's model knows the training pixel size, so segment resamples to it.
        XCTAssertEqual(try Trainer.bestModel(fromCheckpoint: checkpoint).metadata.trainingPixelSizeNm ?? 0, 0.06, accuracy: 1e-6)  // MRC keeps float32
        // Resuming on other data (an image added) is refused: the split and the crops would change.
        let extra = tmp.appendingPathComponent("extra")
        try makeData(extra, count: 5, pixelSizeNm: 0.06)
        for name in ["img4.mrc", "img4_mask.png"] {
            try FileManager.default.copyItem(at: extra.appendingPathComponent(name), to: data.appendingPathComponent(name))
        }
        let other = try CLIRunner.run(["train", data.path, "-o", killed.path, "--resume"] + tiny)
        XCTAssertEqual(other.status, 2, other.stderr)
        XCTAssertTrue(other.stderr.contains("was made on other training or validation images"), other.stderr)
        for name in ["img4.mrc", "img4_mask.png"] { try FileManager.default.removeItem(at: data.appendingPathComponent(name)) }
        let resumed = try CLIRunner.run(["train", data.path, "-o", killed.path, "--resume"] + tiny)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resumed at step"), resumed.stderr)
        XCTAssertEqual(try weights(killed), try weights(whole), "resumed and uninterrupted runs differ")
        XCTAssertEqual(try Model.load(killed).metadata.threshold, meta.threshold)
    }

    func assertRefused(_ args: [String], mentions: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let out = tmp.appendingPathComponent("out")
        try? FileManager.default.removeItem(at: out)
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let r = try CLIRunner.run(args + ["-o", out.appendingPathComponent("m.safetensors").path])
        XCTAssertEqual(r.status, 2, r.stderr, file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one line: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(mentions), "\(r.stderr) should name \(mentions)", file: file, line: line)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path), [], "left behind", file: file, line: line)
    }

    func testBadDataIsRefusedWithOneLine() throws {
        let good = tmp.appendingPathComponent("good")
        try makeData(good, count: 2)
        let noMask = tmp.appendingPathComponent("nomask")
        try makeData(noMask, count: 2)
        try FileManager.default.removeItem(at: noMask.appendingPathComponent("img1_mask.png"))
        try assertRefused(["train", noMask.path], mentions: "img1.npy: has no mask")

        let wrongSize = tmp.appendingPathComponent("wrongsize")
        try makeData(wrongSize, count: 2)
        try PNGWriter.writeGrey8([UInt8](repeating: 0, count: 32 * 32), width: 32, height: 32,
                                 to: wrongSize.appendingPathComponent("img0_mask.png"))
        try assertRefused(["train", wrongSize.path], mentions: "img0_mask.png: is 32×32 pixels")

        let grey = tmp.appendingPathComponent("grey")
        try makeData(grey, count: 2)
        try PNGWriter.writeGrey8((0..<(64 * 64)).map { UInt8($0 % 200) }, width: 64, height: 64,
                                 to: grey.appendingPathComponent("img1_mask.png"))
        try assertRefused(["train", grey.path], mentions: "is not a binary mask")

        let empty = tmp.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        try assertRefused(["train", empty.path], mentions: "holds no micrographs")
        try assertRefused(["train", tmp.appendingPathComponent("missing").path], mentions: "no such folder")
        try assertRefused(["train", good.path, "--widths", "4,x"], mentions: "--widths")
        try assertRefused(["train", good.path, "--widths", "0,4"], mentions: "--widths 0,4 make no network")
        try assertRefused(["train", good.path, "--tile", "30", "--widths", "2,4"], mentions: "--tile 30")
        try assertRefused(["train", good.path, "--resume", "--tile", "32", "--widths", "2,4"], mentions: "no checkpoint")
        // A folder where a file beside the model goes is refused before training, naming it
        // (it was found at the first checkpoint, and named as if it were the model).
        for name in ["m.safetensors.checkpoint", "m_train_log.csv", "m_loss_curve.png"] {
            let out = tmp.appendingPathComponent("blocked-\(name)")
            try FileManager.default.createDirectory(at: out.appendingPathComponent(name), withIntermediateDirectories: true)
            let r = try CLIRunner.run(["train", good.path, "-o", out.appendingPathComponent("m.safetensors").path] + tiny)
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertEqual(r.stderr, "error: \(out.path)/\(name): is a folder; train writes a file there\n")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path), [name])
        }
    }
}

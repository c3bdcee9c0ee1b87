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
        // evaluation.json says how its masks were made, as segment's run settings do.
        func evaluationSettings(_ folder: String) throws -> [String: String] {
            let url = second.appendingPathComponent(folder).appendingPathComponent("evaluation.json")
            return try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])?["settings"] as? [String: String])
        }
        let made = try evaluationSettings("eval")
        XCTAssertEqual(made["flatten"], "quadratic"); XCTAssertEqual(made["tta"], "no"); XCTAssertEqual(made["split_touching"], "yes")
        XCTAssertEqual(made["preprocessing"], try Trainer.bestModel(fromCheckpoint: checkpoint).metadata.preprocessing.description)
        let variant = try CLIRunner.run(["evaluate", data.path, "--model", checkpoint.path, "-o", second.appendingPathComponent("eval2").path,
                                       "--no-flatten", "--tta", "--no-split-touching", "--pixel-size", "0.06"])
        XCTAssertEqual(variant.status, 0, variant.stderr)
        let otherSettings = try evaluationSettings("eval2")
        XCTAssertEqual(otherSettings["flatten"], "no"); XCTAssertEqual(otherSettings["tta"], "yes")
        XCTAssertEqual(otherSettings["split_touching"], "no"); XCTAssertEqual(otherSettings["pixel_size_nm (--pixel-size)"], "0.06")
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
        // Resuming with another flag is refused, naming the flag and both values.
        let changed = try CLIRunner.run(["train", data.path, "-o", killed.path, "--resume"] + tiny.map { $0 == "32" ? "64" : $0 })
        XCTAssertEqual(changed.status, 2, changed.stderr)
        XCTAssertTrue(changed.stderr.contains("was made with other settings (--tile 32 there, 64 now)"), changed.stderr)
        XCTAssertEqual(changed.stderr.split(separator: "\n").count, 1, changed.stderr)
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
    /// What a user who drew masks in ImageJ/Fiji has: TIFF masks (Fiji's default), a `.PNG`
    /// extension in capitals, a micrograph exported as JPEG, a mask without an image, a mask
    /// named `NAME-mask.png`. The readable ones train; each unused file is named on a warning
    /// line; an image whose only mask is misnamed is refused, naming the file found.
    /// Fine-tuning: `--from MODEL` starts from its weights (one step at a vanishing learning rate
    /// leaves them as they were), keeps its widths and preparation, records where it started,
    /// and refuses another shape or preparation, or a file that is no model, on one line.
    func testFineTuningStartsFromAModel() throws {
        let data = tmp.appendingPathComponent("ft")
        try makeData(data, count: 4)
        let first = tmp.appendingPathComponent("ft-out/a.safetensors"), second = tmp.appendingPathComponent("ft-out/b.safetensors")
        let a = try CLIRunner.run(["train", data.path, "-o", first.path] + tiny.map { $0 == "400" ? "20" : $0 })
        XCTAssertEqual(a.status, 0, a.stderr)
        let b = try CLIRunner.run(["train", data.path, "-o", second.path, "--from", first.path, "--epochs", "1", "--steps-per-epoch", "1",
                                   "--batch-size", "1", "--tile", "32", "--lr", "1e-12", "--threads", "1"])
        XCTAssertEqual(b.status, 0, b.stderr)
        let before = try Model.load(first), after = try Model.load(second)
        XCTAssertEqual(after.network.config, before.network.config, "its widths kept")
        XCTAssertEqual(after.metadata.preprocessing, before.metadata.preprocessing)
        XCTAssertEqual(after.metadata.trainingRecipe?["from"], first.path)
        var compared = 0
        for ((name, t), (_, u)) in zip(before.network.namedTensors, after.network.namedTensors) where name.hasSuffix(".weight") {
            let x = t.array, y = u.array
            XCTAssertEqual(x.count, y.count, name)
            for k in x.indices { XCTAssertEqual(x[k], y[k], accuracy: 1e-5 * max(1, abs(x[k])), name) }
            compared += 1
        }
        XCTAssertGreaterThan(compared, 5)
        // Random weights differ from those by far more (the same short run without --from).
        let fresh = tmp.appendingPathComponent("ft-out/c.safetensors")
        _ = try CLIRunner.run(["train", data.path, "-o", fresh.path, "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "1",
                               "--tile", "32", "--lr", "1e-12", "--threads", "1", "--widths", "2,4"])
        let random = try Model.load(fresh).network.namedTensors.first { $0.0.hasSuffix(".weight") }?.1.array ?? []
        XCTAssertNotEqual(random, before.network.namedTensors.first { $0.0.hasSuffix(".weight") }?.1.array ?? [])
        try assertRefused(["train", data.path, "--from", first.path, "--widths", "4,8"] + ["--epochs", "1", "--steps-per-epoch", "1"],
                          mentions: "\(first.path): is a network of widths 2,4")
        try assertRefused(["train", data.path, "--from", first.path, "--normalise", "none", "--epochs", "1", "--steps-per-epoch", "1"],
                          mentions: "\(first.path): was trained on inputs prepared as")
        try assertRefused(["train", data.path, "--from", data.appendingPathComponent("img0.npy").path, "--epochs", "1"], mentions: "img0.npy")
    }

    /// Crops larger than the training images wrap each image round itself: said, with the tile that fits.
    func testATileLargerThanTheImagesIsToldOf() throws {
        let data = tmp.appendingPathComponent("small")
        try makeData(data, count: 4)
        let out = tmp.appendingPathComponent("small-out/m.safetensors")
        let r = try CLIRunner.run(["train", data.path, "-o", out.path, "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "1",
                                   "--tile", "96", "--widths", "2,4", "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let warnings = r.stderr.split(separator: "\n").filter { $0.hasPrefix("warning: ") }
        XCTAssertEqual(warnings.count, 2, r.stderr)
        XCTAssertTrue(warnings.first?.contains("training images are smaller than --tile 96 (this one 64×64): each crop of them wraps the image round itself, seams and all; --tile 64 fits them") == true, r.stderr)
        // Two steps learn nothing: the epoch kept finds no particle, which is said (runs that
        // learn, as the other tests' 60-step ones, do not say it).
        XCTAssertTrue(warnings.last?.contains("\(out.path): the epoch kept (1, the least validation loss) finds almost no particle in the validation images") == true, r.stderr)
    }

    func testMasksAsImageJSavesThemAndFilesNotUsed() throws {
        let data = tmp.appendingPathComponent("fiji")
        try makeData(data, count: 4)
        let grey = try PNGReader.read(data.appendingPathComponent("img0_mask.png"))
        try FileManager.default.removeItem(at: data.appendingPathComponent("img0_mask.png"))
        try TIFFWriter.write(grey, to: data.appendingPathComponent("img0_mask.tif"))
        // Saved as Fiji saves a mask made with an inverting LUT: 255 the particle, stored WhiteIsZero.
        try CLIRunner.markWhiteIsZero(data.appendingPathComponent("img0_mask.tif"))
        try FileManager.default.moveItem(at: data.appendingPathComponent("img1_mask.png"), to: data.appendingPathComponent("img1_mask.PNG"))
        try Data([0xFF, 0xD8, 0xFF, 0xE0]).write(to: data.appendingPathComponent("shot.jpg"))
        try FileManager.default.copyItem(at: data.appendingPathComponent("img2_mask.png"), to: data.appendingPathComponent("shot_mask.png"))
        try FileManager.default.copyItem(at: data.appendingPathComponent("img2_mask.png"), to: data.appendingPathComponent("gone_mask.png"))
        let out = tmp.appendingPathComponent("fiji-out/m.safetensors")
        let r = try CLIRunner.run(["train", data.path, "-o", out.path] + tiny.map { $0 == "400" ? "20" : $0 })
        XCTAssertEqual(r.status, 0, r.stderr)
        let warnings = r.stderr.split(separator: "\n").filter { $0.hasPrefix("warning: ") }
        XCTAssertTrue(warnings.contains { $0.contains("shot.jpg: is a .jpg file, which nanofind does not read") && $0.contains("shot_mask.png are not used") }, r.stderr)
        XCTAssertTrue(warnings.contains { $0.contains("gone_mask.png: is a mask without an image") }, r.stderr)
        XCTAssertEqual(warnings.count, 2, r.stderr)
        XCTAssertTrue(r.stdout.contains("3 training and 1 validation images") || r.stderr.contains("3 training and 1 validation images"), r.stdout + r.stderr)

        // The only mask of an image misnamed: refused on one line, naming what was found.
        try FileManager.default.moveItem(at: data.appendingPathComponent("img3_mask.png"), to: data.appendingPathComponent("img3-mask.png"))
        try assertRefused(["train", data.path] + tiny, mentions: "img3.npy: has no mask (expected img3_mask.png or img3_mask.tif beside it; img3-mask.png is not read as one)")
    }

    /// Masks that cannot be what the user meant: refused (colour drawings, a background that is
    /// not 0, no particle in any mask) or told of (a mask that is mostly particle, as an
    /// inverted one is), each naming the file.
    func testMasksThatCannotBeMeantAreRefusedOrToldOf() throws {
        let red = tmp.appendingPathComponent("red")
        try makeData(red, count: 2)
        let m = try PNGReader.read(red.appendingPathComponent("img1_mask.png"))
        try PNGWriter.writeRGB8(m.data.flatMap { [$0, 0, 0] }, width: 64, height: 64, to: red.appendingPathComponent("img1_mask.png"))
        try assertRefused(["train", red.path] + tiny, mentions: "img1_mask.png: is a colour image that is not black and white")

        let noZero = tmp.appendingPathComponent("nozero")
        try makeData(noZero, count: 2)
        try PNGWriter.writeGrey8(m.data.map { $0 == 0 ? 1 : 255 }, width: 64, height: 64, to: noZero.appendingPathComponent("img1_mask.png"))
        try assertRefused(["train", noZero.path] + tiny, mentions: "img1_mask.png: has no 0 background (values [1, 255])")

        let blank = tmp.appendingPathComponent("blank")
        try makeData(blank, count: 2)
        for i in 0..<2 { try PNGWriter.writeGrey8([UInt8](repeating: 0, count: 64 * 64), width: 64, height: 64, to: blank.appendingPathComponent("img\(i)_mask.png")) }
        try assertRefused(["train", blank.path] + tiny, mentions: "no mask marks any particle (every mask is all 0)")

        let inverted = tmp.appendingPathComponent("inverted")
        try makeData(inverted, count: 4)
        try PNGWriter.writeGrey8(m.data.map { 255 - $0 }, width: 64, height: 64, to: inverted.appendingPathComponent("img2_mask.png"))
        let r = try CLIRunner.run(["train", inverted.path, "-o", tmp.appendingPathComponent("inv/m.safetensors").path] + tiny.map { $0 == "400" ? "20" : $0 })
        XCTAssertEqual(r.status, 0, r.stderr)
        let particle = 100 * Double(m.data.filter { $0 == 0 }.count) / Double(64 * 64)
        XCTAssertTrue(r.stderr.contains("warning: \(inverted.path)/img2_mask.png: \(String(format: "%.0f", particle)) % of its pixels are particle; a mask marks particles (255 or 1) on a 0 background: is it inverted (ImageJ's inverting LUT)?"), r.stderr)
    }

    /// Training images at different pixel sizes are brought to one, the median, which the model
    /// records (segment resamples its inputs to it); images without one are said to be taken at
    /// it; a folder named twice counts once; a refused run leaves no folder it made.
    func testOneScaleOneCountNoTrace() throws {
        let fine = tmp.appendingPathComponent("fine"), coarse = tmp.appendingPathComponent("coarse"), plain = tmp.appendingPathComponent("plain")
        try makeData(fine, count: 3, pixelSizeNm: 0.05)
        try makeData(coarse, count: 2, pixelSizeNm: 0.1)
        try makeData(plain, count: 1)
        let out = tmp.appendingPathComponent("scales/m.safetensors")
        let r = try CLIRunner.run(["train", fine.path, coarse.path, plain.path, "-o", out.path]
                                  + tiny.map { $0 == "400" ? "20" : $0 })
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("2 of the 6 images have pixel sizes more than 1.5x from the training images' median, 0.05 nm (they span 0.05 to 0.1 nm): each is resampled to it"), r.stderr)
        XCTAssertTrue(r.stderr.contains("1 of the 6 images have no pixel size: taken to be at the others' median, 0.05 nm"), r.stderr)
        XCTAssertEqual(try Model.load(out).metadata.trainingPixelSizeNm, 0.05)

        // An image too small at the training scale is refused with both its sizes (it is 64×64
        // as it is); one so far off the median that its calibration must be wrong, as such.
        let odd = tmp.appendingPathComponent("odd"), wrong = tmp.appendingPathComponent("wrong")
        try makeData(odd, count: 1, pixelSizeNm: 0.02)
        try makeData(wrong, count: 1, pixelSizeNm: 1)
        try assertRefused(["train", fine.path, odd.path] + tiny.map { $0 == "32" ? "128" : $0 },
                          mentions: "\(odd.path)/img0.mrc: is 64×64 pixels at 0.02 nm, 26×26 at the training images' median 0.05 nm, too small for --tile 128")
        try assertRefused(["train", fine.path, wrong.path] + tiny,
                          mentions: "\(wrong.path)/img0.mrc: has a pixel size of 1 nm, 20x the training images' median 0.05 nm: check its calibration")

        let twice = try CLIRunner.run(["train", fine.path, fine.path + "/", "-o", tmp.appendingPathComponent("twice/m.safetensors").path]
                                      + tiny.map { $0 == "400" ? "20" : $0 })
        XCTAssertEqual(twice.status, 0, twice.stderr)
        XCTAssertTrue((twice.stdout + twice.stderr).contains("2 training and 1 validation images"), twice.stdout + twice.stderr)

        // Refused after its -o folders were made: none is left.
        let noMask = tmp.appendingPathComponent("nomask")
        try makeData(noMask, count: 2)
        try FileManager.default.removeItem(at: noMask.appendingPathComponent("img1_mask.png"))
        let refused = try CLIRunner.run(["train", noMask.path, "-o", tmp.appendingPathComponent("made/deeper/m.safetensors").path] + tiny)
        XCTAssertEqual(refused.status, 2, refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("made").path))
        let evaluated = try CLIRunner.run(["evaluate", noMask.path, "--model", out.path, "-o", tmp.appendingPathComponent("made2/deeper").path])
        XCTAssertEqual(evaluated.status, 2, evaluated.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("made2").path))
        for (command, extra) in [("segment", [String]()), ("bragg", ["--pixel-size", "0.05"])] {
            let made = tmp.appendingPathComponent("made-\(command)")
            let r = try CLIRunner.run([command, tmp.appendingPathComponent("nothere.tif").path, "-o", made.appendingPathComponent("deeper").path] + extra)
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: made.path), command)
        }
    }
}

import Foundation
import MicrographIO
import NanoNet
import Preprocessing
import Segmentation
import XCTest

/// The error contract for the commands besides segment (one line, exit 2, no crash, nothing of
/// the user's replaced): each case a breach a review found.
final class CommandContractTests: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws { tmp = try CLIRunner.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    /// Runs the command and checks one `error:` line, exit 2, naming `mentions`.
    @discardableResult
    func assertRefused(_ args: [String], mentions: String, file: StaticString = #filePath, line: UInt = #line) throws -> CLIRunner.Result {
        let r = try CLIRunner.run(args)
        XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)", file: file, line: line)
        let lines = r.stderr.split(separator: "\n").filter { !$0.hasPrefix("simulating") }
        XCTAssertEqual(lines.count, 1, "\(args): \(r.stderr)", file: file, line: line)
        XCTAssertTrue(lines.first?.hasPrefix("error: ") == true && r.stderr.contains(mentions), "\(args): \(r.stderr)", file: file, line: line)
        return r
    }

    /// A 96² image with a disc and its mask, as train and evaluate read them.
    func labelledFolder(_ name: String, pixelSizeNm: Double? = 0.05) throws -> URL {
        let dir = tmp.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var pixels = [Float](), mask = [UInt8]()
        for y in 0..<96 { for x in 0..<96 {
            let inside = (x - 40) * (x - 40) + (y - 50) * (y - 50) < 400
            pixels.append(Float(100 + (x * 7 + y * 13) % 11) + (inside ? 30 * Float(cos(Double(x) * 1.7)) : 0)); mask.append(inside ? 255 : 0)
        } }
        let bytes = pixels.withUnsafeBytes { Array($0) }
        try MRCWriter.write(Micrograph(width: 96, height: 96, pixelType: .float32, data: bytes,
                                       pixelSize: pixelSizeNm.map { PixelSize(isotropic: $0) }, format: "MRC"),
                            to: dir.appendingPathComponent("img.mrc"))
        try PNGWriter.writeGrey8(mask, width: 96, height: 96, to: dir.appendingPathComponent("img_mask.png"))
        return dir
    }

    /// Every command's help shows defaults as a user types them: no Swift type names, optionals
    /// or enum paths (`NameList<Material>(values: [Simulation.Material.Au])` was shown for
    /// simulate's --material).
    func testHelpShowsDefaultsAsTheyAreTyped() throws {
        let top = try CLIRunner.run(["--help"])
        XCTAssertEqual(top.status, 0)
        let commands = ["segment", "measure", "merge", "train", "evaluate", "bragg", "simulate", "demo", "inspect", "bench",
                        "convert-model", "activations"]
        for c in commands { XCTAssertTrue(top.stdout.contains(c), "\(c) missing from the command list") }
        for c in commands {
            let r = try CLIRunner.run([c, "--help"])
            XCTAssertEqual(r.status, 0, "\(c): \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("USAGE: nanofind \(c)"), "\(c): \(r.stdout)")
            for leak in ["NameList<", "Optional(", "Simulation.", "NanoNet.", "Segmentation.", "Preprocessing.", "Span("] {
                XCTAssertFalse(r.stdout.contains(leak), "\(c) --help shows \(leak): \(r.stdout)")
            }
        }
        XCTAssertTrue(try CLIRunner.run(["simulate", "--help"]).stdout.contains("default: Au)"))
    }

    let tinyTraining = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "1", "--tile", "32", "--widths", "2,4", "--threads", "1"]

    func testDemoDoesNotDeleteFilesItDidNotWrite() throws {
        let mine = tmp.appendingPathComponent("demo/micrographs/my_data.dm4")
        try FileManager.default.createDirectory(at: mine.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data("precious".utf8).write(to: mine)
        try assertRefused(["demo", "-o", tmp.appendingPathComponent("demo").path], mentions: "my_data.dm4: was not written by nanofind demo")
        XCTAssertEqual(try Data(contentsOf: mine), Data("precious".utf8))
        // A folder whose name starts like a demo image's is not demo's either.
        try FileManager.default.removeItem(at: mine)
        let folder = mine.deletingLastPathComponent().appendingPathComponent("au_demo_2019")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try assertRefused(["demo", "-o", tmp.appendingPathComponent("demo").path], mentions: "au_demo_2019: was not written by nanofind demo")
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder.path))
    }

    /// Early stopping in a run, not only its rule: validated on the training image with its mask
    /// inverted, the validation loss can only worsen once the first epoch has learnt something, so
    /// training stops `--patience` epochs after the first, long before `--epochs`, and the model
    /// keeps the first epoch's weights.
    func testEarlyStoppingEndsARunWhoseValidationLossStopsImproving() throws {
        let fit = try labelledFolder("fit")
        let contrary = tmp.appendingPathComponent("contrary")
        try FileManager.default.createDirectory(at: contrary, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fit.appendingPathComponent("img.mrc"), to: contrary.appendingPathComponent("img.mrc"))
        let mask = try XCTUnwrap(MicrographReader.open(fit.appendingPathComponent("img_mask.png")).first)
        try PNGWriter.writeGrey8(mask.data.map { $0 == 0 ? 255 : 0 }, width: 96, height: 96, to: contrary.appendingPathComponent("img_mask.png"))
        let model = tmp.appendingPathComponent("early.safetensors")
        let r = try CLIRunner.run(["train", fit.path, "--validation", contrary.path, "-o", model.path, "--epochs", "12",
                                   "--steps-per-epoch", "15", "--batch-size", "2", "--tile", "32", "--widths", "2,4", "--lr", "0.01",
                                   "--patience", "2", "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let said = r.stdout + r.stderr
        XCTAssertTrue(said.contains("early stopping after epoch 3: the validation loss stopped improving"), said)
        let saved = try Model.load(model)
        XCTAssertEqual(saved.metadata.metrics?["best_epoch"], 1, "\(saved.metadata.metrics ?? [:])")
    }

    /// Training data with a NaN pixel is refused, naming the file; a model's missing folder is made.
    func testTrainRefusesNonFiniteDataAndMakesTheModelsFolder() throws {
        let data = try labelledFolder("nan")
        let image = data.appendingPathComponent("img.mrc")
        var m = try XCTUnwrap(try MicrographReader.open(image).first)
        var values = m.floatFrame(0)
        values[100] = .nan
        m = Micrograph(width: 96, height: 96, pixelType: .float32, data: values.withUnsafeBytes { Array($0) },
                       pixelSize: PixelSize(isotropic: 0.05), format: "MRC")
        try MRCWriter.write(m, to: image)
        try assertRefused(["train", data.path, "-o", tmp.appendingPathComponent("m.safetensors").path] + tinyTraining,
                          mentions: "img.mrc: has 1 pixels that are NaN or infinite")
        let clean = try labelledFolder("clean")
        let model = tmp.appendingPathComponent("new/deeper/m.safetensors")
        let r = try CLIRunner.run(["train", clean.path, "-o", model.path] + tinyTraining)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: model.path))
        // A model named as another format is refused before anything is read or written.
        try assertRefused(["train", clean.path, "-o", tmp.appendingPathComponent("keras.h5").path] + tinyTraining,
                          mentions: "name it e.g. keras.safetensors")
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("keras.h5").path))
        // Validating on the training folder itself would make early stopping mean nothing.
        try assertRefused(["train", clean.path, "--validation", clean.path + "/", "-o", tmp.appendingPathComponent("v.safetensors").path] + tinyTraining,
                          mentions: "is also a training folder")
    }

    func testTrainNeverWritesIntoItsDataAndSavesWithoutValidationImages() throws {
        let data = try labelledFolder("data")
        let mask = data.appendingPathComponent("img_mask.png"), before = try Data(contentsOf: mask)
        try assertRefused(["train", data.path, "-o", mask.path] + tinyTraining, mentions: "is inside the training data")
        XCTAssertEqual(try Data(contentsOf: mask), before)
        // Also through a symbolic link to the data, for a model file that does not exist yet.
        let link = tmp.appendingPathComponent("link")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: data)
        try assertRefused(["train", link.path, "-o", link.appendingPathComponent("new.safetensors").path] + tinyTraining,
                          mentions: "is inside the training data")
        let other = tmp.appendingPathComponent("notes.txt")
        try Data("notes".utf8).write(to: other)
        try assertRefused(["train", data.path, "-o", other.path] + tinyTraining, mentions: "exists and is not a NanoFind model")
        try assertRefused(["train", data.path, "-o", tmp.appendingPathComponent("m.safetensors").path, "--patience=0"] + tinyTraining,
                          mentions: "--patience")
        // The robust preset's jitter assumes data in [0, 1].
        try assertRefused(["train", data.path, "-o", tmp.appendingPathComponent("m.safetensors").path, "--augment", "robust",
                           "--normalise", "none"] + tinyTraining, mentions: "--augment robust")
        // One image: the 25 % split leaves no validation image. Training still ends with a model
        // (its metadata without the validation loss, which is not a number).
        let model = tmp.appendingPathComponent("m.safetensors")
        let r = try CLIRunner.run(["train", data.path, "-o", model.path] + tinyTraining)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("no validation images") || r.stdout.contains("no validation images"), r.stdout + r.stderr)
        XCTAssertNil(try Model.load(model).metadata.metrics?["val_loss"])
    }

    func testMeasureEvaluateAndActivationsRefuseWhatTheyCannotDo() throws {
        let data = try labelledFolder("data")
        let mask = data.appendingPathComponent("img_mask.png")
        // A minimum area beyond any image: no particle, no trap.
        let huge = try CLIRunner.run(["measure", mask.path, "--pixel-size", "0.05", "--min-area", "1e300"])
        XCTAssertEqual(huge.status, 0, huge.stderr)
        XCTAssertEqual(huge.stdout.split(separator: "\n").count, 1, huge.stdout)
        try assertRefused(["measure", mask.path, "--pixel-size", "1e-300"], mentions: "--pixel-size")
        // The Bragg filter has no model: options only a model uses are refused, not dropped unseen.
        for option in [["--tta"], ["--threshold", "0.4"], ["--model", mask.path], ["--preprocess", "none"]] {
            try assertRefused(["evaluate", data.path, "--method", "bragg", "-o", tmp.appendingPathComponent("bragg").path] + option,
                              mentions: "\(option[0]) applies to the U-Net only")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("bragg").path))
        if DefaultModel.url != nil {
            // At 50 nm/px the image would be resampled to about 86,000 px a side: more than any memory.
            try assertRefused(["evaluate", data.path, "-o", tmp.appendingPathComponent("ev").path, "--pixel-size", "50"],
                              mentions: "needs at least")
            // Too small for the network at the model's scale: refused as segment refuses it (it was scored).
            try assertRefused(["evaluate", data.path, "-o", tmp.appendingPathComponent("ev").path, "--pixel-size", "0.001"],
                              mentions: "both sides must be at least 64 there")
            try assertRefused(["activations", data.appendingPathComponent("img.mrc").path, "-o", tmp.appendingPathComponent("act").path,
                               "--pixel-size", "0.001"], mentions: "smaller than the network's")
        }
    }

    func testBraggKeepsMasksAndRefusesTwoInputsOfOneName() throws {
        let data = try labelledFolder("data")
        let mask = data.appendingPathComponent("img_mask.png"), before = try Data(contentsOf: mask)
        try assertRefused(["bragg", data.appendingPathComponent("img.mrc").path, "-o", data.path], mentions: "give --overwrite")
        XCTAssertEqual(try Data(contentsOf: mask), before)
        // Even with --overwrite, img.mrc's output img_mask.png is not written when it is an input.
        let both = try CLIRunner.run(["bragg", data.appendingPathComponent("img.mrc").path, mask.path, "-o", data.path, "--overwrite",
                                      "--pixel-size", "0.05"])
        XCTAssertEqual(both.status, 1, both.stderr)
        XCTAssertTrue(both.stderr.contains("img_mask.png: is an input of this run"), both.stderr)
        XCTAssertEqual(try Data(contentsOf: mask), before)
        let copy = try labelledFolder("copy")
        let r = try CLIRunner.run(["bragg", data.appendingPathComponent("img.mrc").path, copy.appendingPathComponent("img.mrc").path,
                                   "-o", tmp.appendingPathComponent("bragg").path])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("as \(data.appendingPathComponent("img.mrc").path) does"), r.stderr)
        // Every frame of a stack is filtered, each under its own name (only the first was).
        // A lattice (0.21 nm fringes both ways) in a disc on the left of frame 0, on the right of frame 1.
        let stack = tmp.appendingPathComponent("stack.mrc")
        var pixels = [Float](), rng = SeededRandom(seed: 5)
        for frame in 0..<2 { for y in 0..<128 { for x in 0..<128 {
            let cx = frame == 0 ? 40 : 88, inside = (x - cx) * (x - cx) + (y - 64) * (y - 64) < 28 * 28
            let lattice = cos(2 * Double.pi * Double(x) / 4.2) + cos(2 * Double.pi * Double(y) / 4.2)
            pixels.append(100 + 5 * rng.nextGaussian() + (inside ? Float(30 * lattice) : 0))
        } } }
        try MRCWriter.write(Micrograph(width: 128, height: 128, frames: 2, pixelType: .float32, data: pixels.withUnsafeBytes { Array($0) },
                                       pixelSize: PixelSize(isotropic: 0.05), format: "MRC"), to: stack)
        let frames = tmp.appendingPathComponent("frames")
        let f = try CLIRunner.run(["bragg", stack.path, "-o", frames.path])
        XCTAssertEqual(f.status, 0, f.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: frames.path).sorted(),
                       ["stack_0_amplitude.tif", "stack_0_mask.png", "stack_0_mask.tif", "stack_1_amplitude.tif", "stack_1_mask.png", "stack_1_mask.tif"])
        for (frame, left) in [(0, true), (1, false)] {
            let mask = try XCTUnwrap(MicrographReader.open(frames.appendingPathComponent("stack_\(frame)_mask.png")).first)
            // The TIFF is the same mask, calibrated: measure sizes its particles in nm.
            let tiff = try XCTUnwrap(MicrographReader.open(frames.appendingPathComponent("stack_\(frame)_mask.tif")).first)
            XCTAssertEqual(tiff.data, mask.data)
            XCTAssertEqual(tiff.pixelSize?.x ?? 0, 0.05, accuracy: 1e-6)
            let measured = try CLIRunner.run(["measure", frames.appendingPathComponent("stack_\(frame)_mask.tif").path])
            XCTAssertEqual(measured.status, 0, measured.stderr)
            XCTAssertFalse(measured.stderr.contains("no pixel size"), measured.stderr)
            var leftCount = 0, rightCount = 0
            for y in 0..<128 { for x in 0..<128 where mask.data[y * 128 + x] > 0 { if x < 64 { leftCount += 1 } else { rightCount += 1 } } }
            XCTAssertGreaterThan(left ? leftCount : rightCount, 10 * max(1, left ? rightCount : leftCount), "frame \(frame)")
        }
        XCTAssertFalse(f.stderr.contains("warning"), f.stderr)
        // Too small to tell a lattice peak from the spectrum's background: refused, not "0.0 % crystalline".
        let crop = tmp.appendingPathComponent("crop32.mrc")
        var cropped = [Float](repeating: 0, count: 32 * 32)
        for y in 0..<32 { for x in 0..<32 { cropped[y * 32 + x] = pixels[(y + 48) * 128 + x + 24] } }
        let croppedBytes: [UInt8] = cropped.withUnsafeBytes { Array($0) }
        try MRCWriter.write(Micrograph(width: 32, height: 32, pixelType: .float32, data: croppedBytes,
                                       pixelSize: PixelSize(isotropic: 0.05), format: "MRC"), to: crop)
        try assertRefused(["bragg", crop.path, "-o", tmp.appendingPathComponent("crop-out").path],
                          mentions: "\(crop.path): is 32×32 pixels; Bragg filtering needs at least 64 a side")
        // Too coarse for gold's densest planes: filtered, with one warning for the file.
        let coarse = try CLIRunner.run(["bragg", stack.path, "--pixel-size", "0.2", "-o", tmp.appendingPathComponent("coarse").path])
        XCTAssertEqual(coarse.status, 0, coarse.stderr)
        let warnings = coarse.stderr.split(separator: "\n")
        XCTAssertEqual(warnings.count, 1, coarse.stderr)
        XCTAssertTrue(warnings.first?.hasPrefix("warning: \(stack.path): at 0.2 nm per pixel only lattice spacings of 0.4 nm") == true, coarse.stderr)
    }

    func testSimulateChecksEveryEndOfItsRanges() throws {
        let out = tmp.appendingPathComponent("sim").path
        try assertRefused(["simulate", "-o", out, "--count", "1", "--size", "64", "--particles", "0:1e30"], mentions: "--particles")
        try assertRefused(["simulate", "-o", out, "--count", "40", "--size", "64", "--dose=-3000:3000"], mentions: "--dose")
        // Each end alone is fine; their brightest corner (most dose on the largest pixel) clips int16.
        try assertRefused(["simulate", "-o", out, "--count", "40", "--size", "64", "--dose", "1000:3000", "--pixel-size", "0.04:0.1",
                           "--diameter", "0.8:1"], mentions: "int16")
        // A negative number after a space is the option's value, not a missing one: said as
        // out of range where it is, and taken where it is allowed (an overfocus range).
        for (flag, value) in [("--dose", "-3000:3000"), ("--pixel-size", "-0.05"), ("--count", "-1"), ("--size", "-64")] {
            let r = try assertRefused(["simulate", "-o", out, "--count", "1", "--size", "64", flag, value], mentions: flag)
            XCTAssertFalse(r.stderr.contains("Missing value"), r.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        let overfocus = try CLIRunner.run(["simulate", "-o", out, "--count", "1", "--size", "64", "--defocus", "-8:-2", "--jobs", "1"])
        XCTAssertEqual(overfocus.status, 0, overfocus.stderr)
        let manifest = try String(contentsOf: URL(fileURLWithPath: out).appendingPathComponent("manifest.jsonl"), encoding: .utf8)
        XCTAssertTrue(manifest.contains("\"defocus_nm\":-"), manifest)
    }

    /// Pixels that are not square would make every size in nm wrong along one axis: refused on
    /// one line unless --pixel-size says which size to measure in.
    func testNonSquarePixelsAreRefusedUnlessThePixelSizeIsGiven() throws {
        let url = tmp.appendingPathComponent("aniso.mrc")
        let values = (0..<(96 * 96)).map { Float($0 % 13) }
        try MRCWriter.write(Micrograph(width: 96, height: 96, pixelType: .float32, data: values.withUnsafeBytes { Array($0) },
                                       pixelSize: PixelSize(x: 0.05, y: 0.1), format: "MRC"), to: url)
        try assertRefused(["measure", url.path], mentions: "not square")
        try assertRefused(["bragg", url.path, "-o", tmp.appendingPathComponent("b").path], mentions: "not square")
        guard DefaultModel.url != nil else { return }
        try assertRefused(["segment", url.path, "-o", tmp.appendingPathComponent("s").path], mentions: "pixels are 0.05 × 0.1 nm, not square")
        let given = try CLIRunner.run(["segment", url.path, "-o", tmp.appendingPathComponent("s2").path, "--pixel-size", "0.05"])
        XCTAssertEqual(given.status, 0, given.stderr)
    }

    /// The 64-px minimum holds at the model's scale; a resampled probability map stays in [0, 1]
    /// (the resampling filter overshoots at sharp edges).
    func testSegmentAtAnotherScale() throws {
        guard DefaultModel.url != nil else { throw XCTSkip("no default model in this checkout") }
        func write(_ name: String, side: Int, pixelSizeNm: Double) throws -> URL {
            let url = tmp.appendingPathComponent(name)
            let values = (0..<(side * side)).map { Float(($0 % side) / 8 % 2 == 0 ? 100 : 300) }
            try MRCWriter.write(Micrograph(width: side, height: side, pixelType: .float32, data: values.withUnsafeBytes { Array($0) },
                                           pixelSize: PixelSize(isotropic: pixelSizeNm), format: "MRC"), to: url)
            return url
        }
        try assertRefused(["segment", try write("tiny.mrc", side: 64, pixelSizeNm: 0.005).path, "-o", tmp.appendingPathComponent("t").path],
                          mentions: "both sides must be at least 64 there")
        let out = tmp.appendingPathComponent("coarse")
        let r = try CLIRunner.run(["segment", try write("coarse.mrc", side: 96, pixelSizeNm: 0.3).path, "-o", out.path, "--prob-format", "npy"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let prob = try NPYFile.read(out.appendingPathComponent("coarse_prob.npy"))
        let values = prob.data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        XCTAssertEqual(values.count, 96 * 96)
        XCTAssertTrue(values.allSatisfy { $0 >= 0 && $0 <= 1 }, "min \(values.min() ?? .nan), max \(values.max() ?? .nan)")
    }

    /// An FEI/Thermo SEM TIFF's information bar is not specimen: no mask there, and it does not
    /// set the contrast the network sees. A 3.4 µm pixel is refused at the model's scale unless
    /// --pixel-size says otherwise. The reference file's scan is blank (every pixel 0): no
    /// particles. With two discs of lattice fringes painted into its scan, one cut by the bar,
    /// both are found and the cut one touches the border.
    func testFEIDataBarIsNotSegmented() throws {
        let file = CLIRunner.shared.appendingPathComponent("reference/formats/tiff/FEI-Helios-Ebeam-8bits.tif")
        guard FileManager.default.fileExists(atPath: file.path), DefaultModel.url != nil else {
            throw XCTSkip("../shared (the FEI reference TIFF) or the default model is absent")
        }
        try assertRefused(["segment", file.path, "-o", tmp.appendingPathComponent("a").path], mentions: "at the model's scale")
        let blank = try CLIRunner.run(["segment", file.path, "-o", tmp.appendingPathComponent("b").path, "--pixel-size", "0.05"])
        XCTAssertEqual(blank.status, 0, blank.stderr)
        XCTAssertTrue(blank.stderr.contains("every pixel above the information bar is 0: nothing to segment, no particles"), blank.stderr)
        XCTAssertTrue(blank.stdout.contains("0 particles"), blank.stdout)

        // The same file with discs painted into its scan (uncompressed 8-bit, one strip a row).
        var bytes = [UInt8](try Data(contentsOf: file))
        func u16(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
        func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }
        XCTAssertEqual(bytes[0], 0x49, "a little-endian TIFF")
        let ifd = u32(4)
        let entry = try XCTUnwrap((0..<u16(ifd)).map { ifd + 2 + 12 * $0 }.first { u16($0) == 273 }, "strip offsets")
        XCTAssertEqual(u32(entry + 4), 471)
        let offsets = (0..<471).map { u32(u32(entry + 8) + 4 * $0) }
        let scan = 442, width = 512  // rows above the 29-row bar
        var state: UInt64 = 1
        func noise() -> Double {  // about a unit Gaussian: a sum of 12 uniform draws less 6
            var sum = 0.0
            for _ in 0..<12 { state = state &* 6364136223846793005 &+ 1442695040888963407; sum += Double(state >> 11) / Double(1 << 53) }
            return sum - 6
        }
        for y in 0..<scan { for x in 0..<width {
            let inDisc = (x - 256) * (x - 256) + (y - 420) * (y - 420) < 70 * 70 || (x - 120) * (x - 120) + (y - 150) * (y - 150) < 50 * 50
            let v = 128 + (inDisc ? 19 * cos(Double(x + y) * 1.3) : 0) + 6 * noise()
            bytes[offsets[y] + x] = UInt8(max(0, min(255, v.rounded())))
        } }
        let painted = tmp.appendingPathComponent("painted.tif")
        try Data(bytes).write(to: painted)
        let out = tmp.appendingPathComponent("c")
        let r = try CLIRunner.run(["segment", painted.path, "-o", out.path, "--pixel-size", "0.05"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let mask = try XCTUnwrap(MicrographReader.open(out.appendingPathComponent("painted_mask.png")).first)
        XCTAssertEqual(mask.data[(scan * width)...].filter { $0 != 0 }.count, 0, "no mask in the bar")
        let table = try String(contentsOf: out.appendingPathComponent("painted_particles.csv"), encoding: .utf8)
        let rows = table.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let header = try XCTUnwrap(rows.first)
        func column(_ name: String) throws -> Int { try XCTUnwrap(header.firstIndex(of: name), name) }
        let (y0, y1, border) = (try column("bbox_y0"), try column("bbox_y1"), try column("touches_border"))
        let particles = rows.dropFirst()
        XCTAssertEqual(particles.count, 2, table)
        XCTAssertEqual(particles.filter { Int($0[y1]) == scan }.map { $0[border] }, ["1"], "the disc cut by the bar: \(table)")
        XCTAssertEqual(particles.filter { Int($0[y1])! < scan && Int($0[y0])! > 0 }.map { $0[border] }, ["0"], "the other: \(table)")
    }

    /// Model files that read but that segment cannot use (edited metadata, another network's
    /// shape, a checkpoint whose tensor sizes overflow) are refused on one line, before any image
    /// meets them: they stopped segment with a trap and left its partial outputs.
    func testModelsThatCannotSegmentAreRefused() throws {
        let data = try labelledFolder("data")
        let image = data.appendingPathComponent("img.mrc").path
        func model(_ name: String, _ config: UNetConfig = UNetConfig(widths: [2, 3], centreWidth: 4),
                   _ edit: (inout ModelMetadata) -> Void = { _ in }) throws -> String {
            let url = tmp.appendingPathComponent(name)
            var meta = ModelMetadata(config: config, provenance: "test")
            edit(&meta)
            try SafeTensorsModel.save(Model(network: UNet(config: config), metadata: meta), to: url)
            return url.path
        }
        let cases: [(String, String)] = [
            (try model("recipe.safetensors") { $0.preprocessing = InputRecipe(medianFilter: false, scaling: .percentile, lowerPercentile: 60, upperPercentile: 40) },
             "preprocessing cannot be applied"),
            (try model("scale.safetensors") { $0.trainingPixelSizeNm = 1e-300 }, "training pixel size"),
            (try model("two-channels.safetensors", UNetConfig(widths: [2, 3], centreWidth: 4, inputChannels: 2)), "takes 2 input channel(s) to 2 classes"),
            (try model("three-classes.safetensors", UNetConfig(widths: [2, 3], centreWidth: 4, classes: 3)), "takes 1 input channel(s) to 3 classes"),
        ]
        // A checkpoint whose one tensor claims 2³⁰ × 2³⁰ × 4 floats in 0 bytes (the product wraps to 0).
        let header = Array(#"{"x":{"dtype":"F32","shape":[1073741824,1073741824,4],"data_offsets":[0,0]}}"#.utf8)
        let checkpoint = tmp.appendingPathComponent("wrap.checkpoint")
        try Data((0..<8).map { UInt8((header.count >> (8 * $0)) & 0xff) } + header).write(to: checkpoint)
        for (path, mentions) in cases + [(checkpoint.path, "more values than")] {
            let out = tmp.appendingPathComponent("out-\(URL(fileURLWithPath: path).lastPathComponent)")
            try assertRefused(["segment", image, "-o", out.path, "--model", path], mentions: mentions)
            let left = (try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []
            XCTAssertEqual(left, [], "\(path) left \(left)")
        }
    }

    /// `activations` writes one picture per weighted layer, numbered in the network's order and
    /// named after the layer, each showing something (not one flat value).
    func testActivationsWritesEveryLayer() throws {
        let data = try labelledFolder("data")
        let net = UNet(config: UNetConfig(widths: [2, 3], centreWidth: 4), seed: 3)
        let model = tmp.appendingPathComponent("tiny.safetensors")
        try SafeTensorsModel.save(Model(network: net, metadata: ModelMetadata(config: net.config, trainingPixelSizeNm: 0.05, provenance: "test")),
                                  to: model)
        let out = tmp.appendingPathComponent("act")
        let r = try CLIRunner.run(["activations", data.appendingPathComponent("img.mrc").path, "-o", out.path, "--model", model.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let names = net.plan.weightedLayerNames
        XCTAssertTrue(r.stdout.contains("\(names.count) layers"), r.stdout)
        let files = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
        XCTAssertEqual(files.count, names.count, "\(files)")
        XCTAssertEqual(Set(files.map { String($0.dropFirst(3).dropLast(4)) }), Set(names))
        XCTAssertEqual(files.map { String($0.prefix(2)) }, (1...names.count).map { String(format: "%02d", $0) })
        for f in files {
            let png = try XCTUnwrap(MicrographReader.open(out.appendingPathComponent(f)).first, f)
            XCTAssertGreaterThan(Set(png.data).count, 2, "\(f) is flat")
        }
        // NaN pixels (every other one) are filled and said, as segment does: every map still shows
        // something (NaN spread through every layer, the last map black); all NaN is refused.
        var pixels = [Float](repeating: 0, count: 128 * 128)
        for i in pixels.indices { let x = i % 128, y = i / 128; pixels[i] = Float(x / 8 + (y / 8) % 3) }
        for i in stride(from: 0, to: pixels.count, by: 2) { pixels[i] = .nan }
        let holes = tmp.appendingPathComponent("holes.npy")
        try NPYFile.write(pixels, shape: [128, 128], to: holes)
        let filled = tmp.appendingPathComponent("filled")
        let h = try CLIRunner.run(["activations", holes.path, "-o", filled.path, "--model", model.path])
        XCTAssertEqual(h.status, 0, h.stderr)
        XCTAssertTrue(h.stderr.contains("8192 pixels are NaN or infinite: filled"), h.stderr)
        for f in try FileManager.default.contentsOfDirectory(atPath: filled.path) {
            let png = try XCTUnwrap(MicrographReader.open(filled.appendingPathComponent(f)).first, f)
            XCTAssertGreaterThan(Set(png.data).count, 2, "\(f) is flat")
        }
        let allNaN = tmp.appendingPathComponent("nan.npy")
        try NPYFile.write([Float](repeating: .nan, count: 128 * 128), shape: [128, 128], to: allNaN)
        try assertRefused(["activations", allNaN.path, "-o", tmp.appendingPathComponent("nan").path, "--model", model.path],
                          mentions: "every pixel is NaN or infinite")
    }

    func testConvertModelAndBenchRefuseNonsense() throws {
        let model = tmp.appendingPathComponent("m.safetensors")
        let net = UNet(config: UNetConfig(widths: [2, 3], centreWidth: 4))
        try SafeTensorsModel.save(Model(network: net, metadata: ModelMetadata(config: net.config, provenance: "test")), to: model)
        let before = try Data(contentsOf: model)
        try assertRefused(["convert-model", model.path, "-o", model.path], mentions: "is the input")
        XCTAssertEqual(try Data(contentsOf: model), before)
        // A file that is not a model is not replaced; another model is.
        let notes = tmp.appendingPathComponent("notes.txt")
        try Data("notes\n".utf8).write(to: notes)
        try assertRefused(["convert-model", model.path, "-o", notes.path], mentions: "exists and is not a NanoFind model")
        XCTAssertEqual(try Data(contentsOf: notes), Data("notes\n".utf8))
        let other = tmp.appendingPathComponent("other.safetensors")
        try FileManager.default.copyItem(at: model, to: other)
        XCTAssertEqual(try CLIRunner.run(["convert-model", model.path, "-o", other.path, "--threshold", "0.25"]).status, 0)
        XCTAssertEqual(try SafeTensorsModel.load(other).metadata.threshold, 0.25)
        try assertRefused(["bench", "--only", "zzz"], mentions: "names no bench row")
        // bench's segment rows run a model as segment does: a 3-class network is refused there too.
        let three = UNet(config: UNetConfig(widths: [2, 3], centreWidth: 4, classes: 3))
        let threeURL = tmp.appendingPathComponent("three.safetensors")
        try SafeTensorsModel.save(Model(network: three, metadata: ModelMetadata(config: three.config, provenance: "test")), to: threeURL)
        try assertRefused(["bench", "--quick", "--only", "infer_tile_512", "--model", threeURL.path], mentions: "to 3 classes")
    }
}

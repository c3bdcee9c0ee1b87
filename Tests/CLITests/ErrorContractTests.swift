import Foundation
import MicrographIO
import XCTest

/// Regression cases for breaches of the error contract found by an outside mutation run: every
/// bad input gives exactly one line, exit 2, bounded memory, and nothing but regular files is
/// read or replaced.
final class ErrorContractTests: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws { tmp = try CLIRunner.temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func assertOneLine(_ args: [String], mentions: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try CLIRunner.run(args)
        XCTAssertEqual(r.status, 2, r.stderr, file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n", omittingEmptySubsequences: false).count, 2, "one line: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("error: "), r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.contains(mentions), "\(r.stderr) should mention \(mentions)", file: file, line: line)
    }

    /// A default model named by NANOFIND_DEFAULT_MODEL that is not there is said, not replaced
    /// by the checkout's without a word.
    func testAMissingModelNamedByTheEnvironmentIsAnError() throws {
        let image = tmp.appendingPathComponent("img.npy")
        try NPYFile.write([Float](repeating: 1, count: 64 * 64), shape: [64, 64], to: image)
        let missing = tmp.appendingPathComponent("nowhere/model.safetensors").path
        let r = try CLIRunner.run(["segment", image.path, "-o", tmp.appendingPathComponent("out").path],
                                  environment: ["NANOFIND_DEFAULT_MODEL": missing])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stderr, "error: \(missing): no such file (named by NANOFIND_DEFAULT_MODEL)\n")
    }

    func testAFIFOIsRefusedInsteadOfBlocking() throws {
        let fifo = tmp.appendingPathComponent("pipe.mrc")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        try assertOneLine(["inspect", fifo.path], mentions: "is not a regular file (a FIFO)")
        try assertOneLine(["segment", fifo.path, "-o", tmp.appendingPathComponent("out").path], mentions: "a FIFO")
    }

    /// The shell's `ulimit -v` of 1 GiB of address space, before the command. macOS refuses an
    /// address-space limit (`setrlimit(RLIMIT_AS)` fails there), so on macOS these runs check the
    /// error lines without the bound.
    static var addressSpaceLimit: String {
        #if os(Linux)
        return "ulimit -v 1048576; "
        #else
        return ""
        #endif
    }

    func testAPNGTextChunkClaimingTwoGigabytesIsRefusedBeforeAllocating() throws {
        // Signature, IHDR (8×8 grey), then a tEXt chunk header claiming 0x7FFFFFFF bytes.
        var bytes: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        bytes += [0, 0, 0, 13] + Array("IHDR".utf8) + [0, 0, 0, 8, 0, 0, 0, 8, 8, 0, 0, 0, 0] + [0, 0, 0, 0]
        bytes += [0x7F, 0xFF, 0xFF, 0xFF] + Array("tEXt".utf8) + [0, 0, 0, 0]
        let png = tmp.appendingPathComponent("huge_text.png")
        try Data(bytes).write(to: png)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        // An address-space limit of 1 GiB: a 2 GB allocation would fail or crash instead of an error line.
        p.arguments = ["-c", Self.addressSpaceLimit + "exec \"$0\" inspect \"$1\"", CLIRunner.binary.path, png.path]
        let err = Pipe()
        p.standardError = err; p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 2, text)
        XCTAssertTrue(text.contains("chunk tEXt claims 2147483647 bytes"), text)
    }

    /// Every reader of a single-file format, on damaged files (truncations, and header fields set
    /// to huge and negative sizes), all opened by one `inspect` under an address-space limit of
    /// 1 GiB: each file is read or refused on one line, nothing crashes, nothing allocates what
    /// the file cannot justify.
    func testDamagedFilesOfEveryFormatUnderOneGiBOfAddressSpace() throws {
        let image = Micrograph(width: 40, height: 30, pixelType: .int16, data: (0..<2400).map { UInt8($0 % 251) },
                               pixelSize: PixelSize(isotropic: 0.1), format: "test")
        let npy = tmp.appendingPathComponent("seed.npy")
        try NPYFile.write((0..<1200).map { Float($0) }, shape: [30, 40], to: npy)
        let seeds: [(String, [UInt8])] = [("mrc", try MRCWriter.encode(image)), ("tif", try TIFFWriter.encode(image)),
                                          ("png", try PNGWriter.encode(Micrograph(width: 40, height: 30, pixelType: .uint8,
                                                                                 data: [UInt8](repeating: 9, count: 1200), format: "png"))),
                                          ("npy", [UInt8](try Data(contentsOf: npy)))]
        var files: [String] = []
        for (ext, seed) in seeds {
            for k in 1..<8 {  // truncations
                let f = tmp.appendingPathComponent("cut\(k).\(ext)")
                try Data(seed.prefix(seed.count * k / 8)).write(to: f)
                files.append(f.path)
            }
            for offset in stride(from: 0, to: min(seed.count - 4, 240), by: 4) {  // fields set to huge / negative
                for value: UInt32 in [0x7FFF_FFFF, 0xFFFF_FFF0] {
                    var b = seed
                    for j in 0..<4 { b[offset + j] = UInt8((value >> (8 * UInt32(j))) & 0xff) }
                    let f = tmp.appendingPathComponent("field\(offset)-\(value).\(ext)")
                    try Data(b).write(to: f)
                    files.append(f.path)
                }
            }
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", Self.addressSpaceLimit + "exec \"$0\" inspect \"$@\"", CLIRunner.binary.path] + files
        let err = Pipe()
        p.standardError = err; p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .exit, "inspect was killed: \(text.suffix(500))")
        XCTAssert([0, 1, 2].contains(p.terminationStatus), "exit \(p.terminationStatus): \(text.suffix(500))")
        let lines = text.split(separator: "\n")
        XCTAssertGreaterThan(lines.count, files.count / 4, "too few damaged files were refused: the damage is too weak")
        for line in lines { XCTAssertTrue(line.hasPrefix("error: \(tmp.path)"), "not one error line per file: \(line)") }
    }

    func testControlCharactersInNamesAndReasonsStayOnOneLine() throws {
        let odd = tmp.appendingPathComponent("bad\nname\u{1b}[31m.mrc")
        try Data(repeating: 7, count: 100).write(to: odd)
        try assertOneLine(["inspect", odd.path], mentions: "bad\\nname\\u{1b}[31m.mrc")
        // An NPY header without its closing brace (the header text used to be quoted with its newline).
        var npy = Array("\u{93}NUMPY".utf8) + [1, 0]
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4), " + String(repeating: " ", count: 53) + "\n"
        npy += [UInt8(header.utf8.count & 0xff), UInt8(header.utf8.count >> 8)] + Array(header.utf8) + [UInt8](repeating: 0, count: 64)
        let broken = tmp.appendingPathComponent("broken.npy")
        try Data(npy).write(to: broken)
        try assertOneLine(["inspect", broken.path], mentions: broken.path)
    }

    func testModelOutputsNeverReplaceFoldersOrDevices() throws {
        let model = CLIRunner.packageRoot.appendingPathComponent("Models/default.safetensors")
        try XCTSkipUnless(FileManager.default.fileExists(atPath: model.path), "Models/default.safetensors is not in this checkout")
        let dir = tmp.appendingPathComponent("folder")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try assertOneLine(["convert-model", model.path, "-o", dir.path], mentions: "is a folder")
        try assertOneLine(["convert-model", model.path, "-o", "/dev/null"], mentions: "is not a regular file")
        var st = stat()
        XCTAssertEqual(stat("/dev/null", &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFCHR, "/dev/null must still be a device")
    }
}

/// A batch over a folder with a FIFO, a device node, an unreadable file and a good file, run as
/// an unprivileged user (root ignores permission bits): the good file is processed, the others
/// are named on one line each, exit 1, nothing blocks.
final class SpecialFilesBatchTests: XCTestCase {
    func testSpecialFilesInABatchAreNamedAndSkipped() throws {
        try XCTSkipUnless(getuid() == 0, "needs root to make a device node and to run the batch as another user")
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser") || FileManager.default.isExecutableFile(atPath: "/sbin/runuser"),
                          "runuser is not installed")
        let model = CLIRunner.packageRoot.appendingPathComponent("Models/default.safetensors")
        try XCTSkipUnless(FileManager.default.fileExists(atPath: model.path), "Models/default.safetensors is not in this checkout")
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        chmod(tmp.path, 0o777)
        let data = tmp.appendingPathComponent("data"), out = tmp.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        chmod(data.path, 0o755); chmod(out.path, 0o777)
        try NPYFile.write((0..<(96 * 96)).map { Float($0 % 11) }, shape: [96, 96], to: data.appendingPathComponent("good.npy"))
        chmod(data.appendingPathComponent("good.npy").path, 0o644)
        XCTAssertEqual(mkfifo(data.appendingPathComponent("pipe.mrc").path, 0o666), 0)
        XCTAssertEqual(mknod(data.appendingPathComponent("device.tif").path, S_IFCHR | 0o666, dev_t((1 << 8) | 3)), 0)
        try NPYFile.write([Float](repeating: 1, count: 96 * 96), shape: [96, 96], to: data.appendingPathComponent("secret.npy"))
        chmod(data.appendingPathComponent("secret.npy").path, 0o000)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
        p.arguments = ["-u", "nobody", "--", CLIRunner.binary.path, "segment", data.path, "-o", out.path, "--model", model.path]
        let err = Pipe(), stdout = Pipe()
        p.standardError = err; p.standardOutput = stdout
        try p.run()
        let deadline = Date().addingTimeInterval(60)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning { p.terminate(); XCTFail("the batch blocked") }
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        _ = stdout.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 1, text)
        let errors = text.split(separator: "\n").filter { $0.hasPrefix("error:") }
        XCTAssertEqual(errors.count, 3, text)
        XCTAssertTrue(errors.contains { $0.contains("pipe.mrc") && $0.contains("a FIFO") }, text)
        XCTAssertTrue(errors.contains { $0.contains("device.tif") && $0.contains("a device") }, text)
        XCTAssertTrue(errors.contains { $0.contains("secret.npy") && $0.contains("permission denied") }, text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("good_particles.csv").path))
    }
}

/// Keras .h5 models are read by libhdf5 in a child process, as EMD files are: a crash there is
/// one error line naming the model, not a dead batch.
final class IsolatedModelTests: XCTestCase {
    func testACrashWhileReadingAKerasModelIsOneLine() throws {
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let h5 = tmp.appendingPathComponent("weights.h5")
        try Data([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a] + [UInt8](repeating: 0, count: 64)).write(to: h5)
        let image = tmp.appendingPathComponent("image.npy")
        try NPYFile.write([Float](repeating: 1, count: 64 * 64), shape: [64, 64], to: image)
        let crashed = try CLIRunner.run(["segment", image.path, "-o", tmp.appendingPathComponent("out").path, "--model", h5.path],
                                        environment: ["NANOFIND_TEST_MODEL_FAULT": "signal"])
        let text = crashed.stderr
        XCTAssertEqual(crashed.status, 2, text)
        XCTAssertEqual(text.split(separator: "\n").count, 1, text)
        XCTAssertTrue(text.contains(h5.path) && text.contains("crashed"), text)
        // convert-model run by a user reads the .h5 in a child too.
        let converted = tmp.appendingPathComponent("m.safetensors")
        let c = try CLIRunner.run(["convert-model", h5.path, "-o", converted.path], environment: ["NANOFIND_TEST_MODEL_FAULT": "signal"])
        XCTAssertEqual(c.status, 2, c.stderr)
        XCTAssertEqual(c.stderr.split(separator: "\n").count, 1, c.stderr)
        XCTAssertTrue(c.stderr.contains(h5.path) && c.stderr.contains("crashed"), c.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: converted.path))
        // Without the fault the same broken file is refused by the reader, also on one line.
        let r = try CLIRunner.run(["segment", image.path, "-o", tmp.appendingPathComponent("out").path, "--model", h5.path])
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains(h5.path), r.stderr)
    }
}

/// A full disk under stdout or stderr (a job's log over its quota): a table that was not
/// written is an error line and exit 2, never exit 0 with an empty file; a log that cannot be
/// written is no crash (FileHandle's write trapped: exit 132 at the first warning).
final class StandardStreamTests: XCTestCase {
    func testFullStandardStreamsAreNoCrashAndNoSilentLoss() throws {
        try XCTSkipUnless(FileManager.default.fileExists(atPath: "/dev/full"), "no /dev/full on this system")
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let mask = tmp.appendingPathComponent("m_mask.png")
        try PNGWriter.writeGrey8((0..<(64 * 64)).map { ($0 % 64) / 16 == 1 && $0 / 64 > 20 && $0 / 64 < 40 ? 255 : 0 }, width: 64, height: 64, to: mask)
        func shell(_ script: String) throws -> (status: Int32, stderr: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", script, CLIRunner.binary.path, mask.path, tmp.path]
            let err = Pipe()
            p.standardError = err; p.standardOutput = FileHandle.nullDevice
            try p.run()
            let e = err.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: e, as: UTF8.self))
        }
        for command in ["measure --pixel-size 0.05 \"$1\"", "inspect --json \"$1\""] {
            let r = try shell("\"$0\" \(command) > /dev/full")
            XCTAssertEqual(r.status, 2, "\(command): \(r.stderr)")
            XCTAssertEqual(r.stderr, "error: standard output: no space left on device\n", command)
        }
        // Errors and warnings into a full log: the batch goes on and ends as it would.
        let missing = try shell("\"$0\" measure \"$2/missing.png\" \"$1\" 2>/dev/full > \"$2/table.csv\"")
        XCTAssertEqual(missing.status, 1, "a batch with a failure")
        XCTAssertEqual(try String(contentsOf: tmp.appendingPathComponent("table.csv"), encoding: .utf8).split(separator: "\n").count, 2)
        let simulated = try shell("\"$0\" simulate -o \"$2/sim\" --count 1 --size 128 --jobs 1 2>/dev/full")
        XCTAssertEqual(simulated.status, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("sim/manifest.jsonl").path))
    }

    /// Stopped by SIGINT, SIGTERM or SIGHUP while its files are written, a command removes its
    /// temporary files (a killed bragg left 4 MB hidden files that survived every later run), and
    /// ends as the signal would have ended it.
    func testAnInterruptedRunLeavesNoTemporaryFiles() throws {
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let image = tmp.appendingPathComponent("img.npy")
        try NPYFile.write((0..<(128 * 128)).map { Float($0 % 7) }, shape: [128, 128], to: image)
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            let out = tmp.appendingPathComponent("out\(sig)")
            let p = Process()
            p.executableURL = CLIRunner.binary
            p.arguments = ["bragg", image.path, "--pixel-size", "0.05", "-o", out.path]
            p.environment = ProcessInfo.processInfo.environment.merging(["NANOFIND_TEST_PAUSE_BEFORE_RENAMES": "20"]) { $1 }
            p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
            try p.run()
            func hidden() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []).filter { $0.hasPrefix(".") } }
            let deadline = Date().addingTimeInterval(15)
            while hidden().count < 3 && Date() < deadline { usleep(5000) }
            XCTAssertEqual(hidden().count, 3, "the three files staged before the signal (signal \(sig))")
            kill(p.processIdentifier, sig)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationReason, .uncaughtSignal, "signal \(sig)")
            XCTAssertEqual(p.terminationStatus, sig)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path), [], "signal \(sig)")
        }
    }

    /// The folder an EMD file is decoded into (in $TMPDIR, by a child process) goes too when the
    /// run is interrupted: the files in it as well (the handler lists them without allocating).
    func testAnInterruptedReadLeavesNoDecodedCopy() throws {
        #if !os(Linux)
        throw XCTSkip("the folder's files are listed without allocating on Linux only (getdents64)")
        #endif
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let scratch = tmp.appendingPathComponent("scratch")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let emd = tmp.appendingPathComponent("hang.emd")  // HDF5's signature: read in a child
        try Data([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a] + [UInt8](repeating: 0, count: 64)).write(to: emd)
        let p = Process()
        p.executableURL = CLIRunner.binary
        p.arguments = ["inspect", emd.path]
        p.environment = ProcessInfo.processInfo.environment.merging(["NANOFIND_TEST_READER_FAULT": "hang", "TMPDIR": scratch.path]) { $1 }
        p.standardOutput = FileHandle.nullDevice; p.standardError = FileHandle.nullDevice
        try p.run()
        defer { _ = try? Process.run(URL(fileURLWithPath: "/usr/bin/pkill"), arguments: ["-f", "read-isolated \(emd.path)"]).waitUntilExit() }  // the hung child
        func folders() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: scratch.path)) ?? []).filter { $0.hasPrefix("nanofind-read-") } }
        let deadline = Date().addingTimeInterval(15)
        while folders().isEmpty && Date() < deadline { usleep(5000) }
        let folder = try XCTUnwrap(folders().first, "the decoding folder was made")
        // What the child would have written by then.
        for name in ["0.json", "0.bin"] { try Data("x".utf8).write(to: scratch.appendingPathComponent("\(folder)/\(name)")) }
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal)
        XCTAssertEqual(folders(), [], "the decoding folder and its files removed")
    }

    /// What a killed run left (SIGKILL: no handler runs) is removed by the next command writing
    /// into that folder, whichever it is; a running process's temporary file is left.
    func testAKilledRunsTemporaryFilesAreRemovedByTheNextRun() throws {
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let gone = Process()
        gone.executableURL = URL(fileURLWithPath: "/bin/sh")
        gone.arguments = ["-c", "exit 0"]
        try gone.run()
        gone.waitUntilExit()
        let out = tmp.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let stale = ".img_mask.png.partial-\(gone.processIdentifier)", live = ".other.png.partial-\(getpid())"
        for name in [stale, live] { try Data("x".utf8).write(to: out.appendingPathComponent(name)) }
        let image = tmp.appendingPathComponent("img.npy")
        try NPYFile.write((0..<(128 * 128)).map { Float($0 % 7) }, shape: [128, 128], to: image)
        let r = try CLIRunner.run(["bragg", image.path, "--pixel-size", "0.05", "-o", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let hidden = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasPrefix(".") }
        XCTAssertEqual(hidden, [live], "the dead process's file removed, the running one's kept")
    }
}


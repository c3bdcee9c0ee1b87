import ArgumentParser
import CNanoSupport
import Foundation
import MicrographIO
import NanoNet

/// Opens micrographs for the CLI. HDF5-based files (EMD) are read in a child process: libhdf5
/// can crash or loop on some corrupt files inside its C code, which no Swift error handling can
/// catch, and one bad file must not take down a batch. Other formats are read in-process.
enum IsolatedReader {
    /// Seconds a child may take before the file counts as unreadable.
    static var timeout: TimeInterval {
        Double(ProcessInfo.processInfo.environment["NANOFIND_READ_TIMEOUT"] ?? "") ?? 120
    }

    static func open(_ url: URL) throws -> [Micrograph] {
        let head = try readHead(url)
        guard MicrographReader.detectFormat(head: head, fileExtension: url.pathExtension) == .emd else {
            return try MicrographReader.open(url)
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nanofind-read-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        return try removedIfInterrupted(dir, folder: true) {
            guard try runChild(["read-isolated", url.path, dir.path], for: url) else { return try MicrographReader.open(url) }
            return try ImageBundle.read(from: dir, source: url)
        }
    }

    /// Runs this program with `arguments` in a child process for `url`, within the timeout: a
    /// crash or hang of the C library in the child becomes one error line about `url`, and the
    /// child's own one-line error is passed on. False when no child could be started.
    static func runChild(_ arguments: [String], for url: URL) throws -> Bool {
        let child = Process()
        child.executableURL = selfExecutable()
        child.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_BACKTRACE"] = "enable=no"  // a crash is reported in one line, not a backtrace
        child.environment = environment
        let errPipe = Pipe()
        child.standardError = errPipe
        child.standardOutput = FileHandle.nullDevice
        do { try child.run() } catch { return false }
        let deadline = Date().addingTimeInterval(timeout)
        // Where the child cannot bound its own address space (macOS), its memory is watched
        // from here against the same bound (`nf_process_footprint` is -1 where it bounds it).
        let bound = memoryBound(for: url)
        while child.isRunning && Date() < deadline {
            let footprint = nf_process_footprint(child.processIdentifier)
            if footprint > 0 && UInt64(footprint) > bound {
                child.terminate(); child.waitUntilExit()
                throw MicrographError(url: url, reason: "reading it took more than \(bound >> 30) GiB of memory; the file is corrupt")
            }
            usleep(2000)
        }
        if child.isRunning {
            child.terminate(); child.waitUntilExit()
            throw MicrographError(url: url, reason: "reading took longer than \(Int(timeout)) s (corrupt HDF5 structure?)")
        }
        let message = String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        if child.terminationReason == .uncaughtSignal {
            throw MicrographError(url: url, reason: "the HDF5 library crashed reading this file (signal \(child.terminationStatus)); the file is corrupt")
        }
        guard child.terminationStatus == 0 else {
            // The child printed the reader's own one-line error; pass its reason on.
            let reason = message.components(separatedBy: ": ").dropFirst(2).joined(separator: ": ")
            throw MicrographError(url: url, reason: reason.isEmpty ? "cannot be read" : reason)
        }
        return true
    }

    /// A model file: Keras HDF5 weights are converted in a child process (libhdf5 crashing or
    /// hanging on a hostile file becomes one error line), native files are read here.
    static func loadModel(_ url: URL) throws -> Model {
        _ = try readHead(url)
        let head = (try? FileHandle(forReadingFrom: url).read(upToCount: 8)) ?? Data()
        guard head.starts(with: [0x89, 0x48, 0x44, 0x46]) else { return try Model.load(url) }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nanofind-model-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let converted = dir.appendingPathComponent("model.safetensors")
        do {
            guard try runChild(["convert-model", "--in-child", url.path, "-o", converted.path], for: url) else { return try Model.load(url) }
        } catch let error as MicrographError {
            throw ModelFileError(file: url.path, reason: error.reason)
        }
        return try SafeTensorsModel.load(converted)
    }

    /// In the child, before libhdf5 reads `url`: an address-space limit of 2 GiB, or 1 GiB plus
    /// eight times the file's size for large files (room for the decoded images however they are
    /// stored), so that an allocation a corrupt header makes libhdf5 ask for (10 GB for a 30 kB
    /// file, found by fuzzing) fails at once and the file is refused.
    static func limitAddressSpace(for url: URL) {
        _ = nf_limit_address_space(memoryBound(for: url))
    }

    /// The memory a child reading `url` may take: 2 GiB, or 1 GiB plus eight times the file's size.
    static func memoryBound(for url: URL) -> UInt64 {
        let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.uint64Value ?? 0
        let (eight, o1) = size.multipliedReportingOverflow(by: 8)
        let (sum, o2) = (UInt64(1) << 30).addingReportingOverflow(eight)
        return o1 || o2 ? .max : max(UInt64(2) << 30, sum)
    }

    /// This program's own executable (found whether it was started by path or through PATH).
    static func selfExecutable() -> URL {
        let procSelf = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        if procSelf.path != "/proc/self/exe", FileManager.default.isExecutableFile(atPath: procSelf.path) { return procSelf }
        if let exe = Bundle.main.executableURL, FileManager.default.isExecutableFile(atPath: exe.path) { return exe }
        return URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).resolvingSymlinksInPath()
    }

    static func readHead(_ url: URL) throws -> [UInt8] { try MicrographReader.readFileHead(url, count: 1024) }
}

/// Micrographs passed from the child to the parent: per image a raw `<i>.bin` with the native
/// bytes and a `<i>.json` with everything else.
enum ImageBundle {
    struct Header: Codable {
        var width: Int, height: Int, frames: Int, channels: Int
        var pixelType: PixelType
        var pixelSize: PixelSize?
        var storedCalibration: StoredCalibration?
        var format: String
        var metadata: MicrographMetadata
    }

    static func write(_ images: [Micrograph], to dir: URL) throws {
        for (i, m) in images.enumerated() {
            let h = Header(width: m.width, height: m.height, frames: m.frames, channels: m.channels, pixelType: m.pixelType,
                           pixelSize: m.pixelSize, storedCalibration: m.storedCalibration, format: m.format, metadata: m.metadata)
            try JSONEncoder().encode(h).write(to: dir.appendingPathComponent("\(i).json"))
            try Data(m.data).write(to: dir.appendingPathComponent("\(i).bin"))
        }
    }

    static func read(from dir: URL, source: URL) throws -> [Micrograph] {
        var out: [Micrograph] = []
        var i = 0
        while FileManager.default.fileExists(atPath: dir.appendingPathComponent("\(i).json").path) {
            let h = try JSONDecoder().decode(Header.self, from: Data(contentsOf: dir.appendingPathComponent("\(i).json")))
            let data = [UInt8](try Data(contentsOf: dir.appendingPathComponent("\(i).bin")))
            guard data.count == h.width * h.height * h.frames * h.channels * h.pixelType.byteCount else {
                throw MicrographError(url: source, reason: "the isolated reader returned inconsistent data")
            }
            out.append(Micrograph(width: h.width, height: h.height, frames: h.frames, channels: h.channels,
                                  pixelType: h.pixelType, data: data, pixelSize: h.pixelSize,
                                  storedCalibration: h.storedCalibration, format: h.format, metadata: h.metadata, source: source))
            i += 1
        }
        return out
    }
}

/// Internal: reads one file and writes its images for `IsolatedReader` (runs in a child process).
struct ReadIsolated: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read-isolated", abstract: "Internal: read one micrograph file in a child process.", shouldDisplay: false)
    @Argument var file: String
    @Argument var outputFolder: String
    func run() throws {
        // Test hook: lets the CLI tests check that a reader dying inside C code is reported.
        if ProcessInfo.processInfo.environment["NANOFIND_TEST_READER_FAULT"] == "signal" {
            signal(SIGSEGV, SIG_DFL)  // as a fault inside C code ends: no handler returns
            raise(SIGSEGV)
        }
        if ProcessInfo.processInfo.environment["NANOFIND_TEST_READER_FAULT"] == "hang" { while true { sleep(1) } }
        IsolatedReader.limitAddressSpace(for: URL(fileURLWithPath: file))
        do {
            let images = try MicrographReader.open(URL(fileURLWithPath: file))
            do {
                try ImageBundle.write(images, to: URL(fileURLWithPath: outputFolder))
            } catch {
                // Not the file's fault: the folder its decoded copy goes to ($TMPDIR) is full or unwritable.
                throw MicrographError(file: file, reason: "its decoded copy cannot be written to \(outputFolder) (\(describe(error)))")
            }
        } catch {
            throw exitWithInputError(error)
        }
    }
}

import CNanoSupport
import Foundation

/// Writes bytes to a temporary file beside `url`, then renames it into place, so a failed or
/// interrupted write never leaves a partial output file.
public func writeAtomically(_ bytes: [UInt8], to url: URL) throws {
    try bytes.withUnsafeBytes { try writeAtomically([$0], to: url) }
}

/// The same for a file made of several pieces (a header, pixels still in the caller's buffer, a
/// trailer), written one after the other without joining them in memory first.
public func writeAtomically(_ head: [UInt8], _ body: UnsafeRawBufferPointer, _ tail: [UInt8], to url: URL) throws {
    try head.withUnsafeBytes { h in try tail.withUnsafeBytes { t in try writeAtomically([h, body, t], to: url) } }
}

/// The hidden name a file is written under before it is renamed into place: `.NAME.partial-PID`
/// beside it (`removeStaleTemporaries` removes those a killed run left).
public func partialURL(_ url: URL) -> URL {
    url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial-\(getpid())")
}

/// Removes from `dir` the temporary files a killed run left (`.NAME.partial-PID` of a process that
/// is gone: SIGKILL, a power cut; an interrupted run removes its own). Every command that writes
/// into a folder calls it first. Files of a process still running are left, whatever it is.
public func removeStaleTemporaries(in dir: URL) {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
    for name in names where name.hasPrefix(".") && name.contains(".partial-") {
        guard let pid = Int32(name.split(separator: "-").last ?? ""), pid > 0, pid != getpid() else { continue }
        if kill(pid, 0) != 0 && errno == ESRCH {
            try? FileManager.default.removeItem(at: dir.appendingPathComponent(name))
        }
    }
}

/// Files written as one set (a report's table, summary, plot and page; a mask beside its
/// amplitude map): each by its `write` to its hidden name (`partialURL`; a writer may also make
/// what it writes there, one file after the other), then all renamed into
/// place once every one is written. A write that fails (a full disk) leaves every file of the
/// set as it was, and a folder at any of the paths is refused before anything is written, so a
/// set is not left half old, half new. (Only what stops the renames part way still could: an
/// interruption between them, a few system calls, or a rename that fails, which renames within
/// a folder do only for reasons checked before, a folder in the way or the folder's
/// permissions.)
public func writeTogether(_ files: [(url: URL, write: (URL) throws -> Void)]) throws {
    for (url, _) in files {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder), isFolder.boolValue {
            throw MicrographError(url: url, reason: "is a folder; it will not be replaced by a file")
        }
    }
    var staged: [(hidden: URL, url: URL)] = [], slots: [Int32] = []
    defer { slots.forEach(nf_cleanup_unregister) }  // after the renames (or the removals)
    func removeStaged() { for (hidden, _) in staged { try? FileManager.default.removeItem(at: hidden) } }
    for (url, write) in files {
        let hidden = partialURL(url)
        staged.append((hidden, url))
        slots.append(nf_cleanup_register(hidden.path, 0))
        do {
            try write(hidden)
        } catch {
            removeStaged()
            // Said of the file's own name, not its hidden one; an error about another file (an
            // input a writer reads) as it is.
            guard let e = error as? MicrographError else {
                throw MicrographError(url: url, reason: "cannot be written (\(error.localizedDescription))")
            }
            throw e.file == hidden.path ? MicrographError(url: url, reason: e.reason) : e
        }
    }
    // (A test holds the set here, its files written, to stop the process at that point.)
    if let pause = ProcessInfo.processInfo.environment["NANOFIND_TEST_PAUSE_BEFORE_RENAMES"].flatMap(Double.init), pause > 0, pause < 600 {
        usleep(UInt32(pause * 1e6))
    }
    for (k, (hidden, url)) in staged.enumerated() where rename(hidden.path, url.path) != 0 {
        let reason = String(cString: strerror(errno))
        for (later, _) in staged[k...] { try? FileManager.default.removeItem(at: later) }
        throw MicrographError(url: url, reason: "cannot be written (\(reason))")
    }
}

/// `writeTogether` for files whose bytes are made already.
public func writeTogether(_ files: [(url: URL, bytes: [UInt8])]) throws {
    try writeTogether(files.map { file in (file.url, { try writeFile(bytes: file.bytes, to: $0) }) })
}

/// The bytes written straight to `url` (no temporary name: for a writer of `writeTogether`,
/// which renames it).
public func writeFile(bytes: [UInt8], to url: URL) throws {
    do {
        try bytes.withUnsafeBytes { try writeFile([$0], to: url) }
    } catch {
        throw MicrographError(url: url, reason: "cannot be written (\(error.localizedDescription))")
    }
}

/// `body`'s result, `url` removed if SIGINT, SIGTERM or SIGHUP stops the process meanwhile (once
/// the CLI has installed the handler, `nf_cleanup_install`): a temporary name an output is
/// written under, or (`folder`) a temporary folder of files.
public func removedIfInterrupted<T>(_ url: URL, folder: Bool = false, _ body: () throws -> T) rethrows -> T {
    let slot = nf_cleanup_register(url.path, folder ? 1 : 0)
    defer { nf_cleanup_unregister(slot) }
    return try body()
}

func writeAtomically(_ pieces: [UnsafeRawBufferPointer], to url: URL) throws {
    let tmp = partialURL(url)
    try removedIfInterrupted(tmp) { try writeStaged(pieces, tmp, to: url) }
}

private func writeStaged(_ pieces: [UnsafeRawBufferPointer], _ tmp: URL, to url: URL) throws {
    do {
        try writeFile(pieces, to: tmp)
        // rename(2) replaces an existing file atomically: readers see the old or the new one.
        guard rename(tmp.path, url.path) == 0 else { throw posixError() }
    } catch {
        try? FileManager.default.removeItem(at: tmp)
        throw MicrographError(url: url, reason: "cannot be written (\(error.localizedDescription))")
    }
}

/// Writes the pieces to a new file with POSIX calls, straight from the caller's buffers (the
/// direct path copies them through its staging buffer, 4 MiB at a time).
/// A large file (a 4096² probability map is 64 MiB) goes around the page cache where the
/// platform and the file system allow it (Linux `O_DIRECT`; `DirectWrite`): a buffered write
/// first finds and fills fresh cache pages for every byte, which on AMD EPYC fam 26 mod 2 (a
/// Firecracker VM) cost 0.14-0.16 s of CPU for 64 MiB against 0.002 s direct (0.018 s wall).
/// Where direct writes are refused (tmpfs before Linux 6.6, some network mounts, macOS) or
/// turned off (`NANOFIND_BUFFERED_WRITES=1`), the file is written the buffered way.
func writeFile(_ pieces: [UnsafeRawBufferPointer], to url: URL) throws {
    if pieces.reduce(0, { $0 + $1.count }) >= DirectWrite.smallestFile, DirectWrite.allowed, try DirectWrite.attempt(pieces, to: url) { return }
    let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw posixError() }
    defer { close(fd) }
    for raw in pieces where raw.count > 0 {
        try writeAll(fd, raw.baseAddress!, raw.count)
    }
}

private func posixError() -> CocoaError {
    CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: String(cString: strerror(errno))])
}

/// Writes `count` bytes, however many calls it takes: at most 1 GiB a call (macOS refuses a
/// write of more than 2³¹ − 1 bytes with EINVAL, where Linux writes part of it).
private func writeAll(_ fd: Int32, _ from: UnsafeRawPointer, _ count: Int) throws {
    var offset = 0
    while offset < count {
        let n = write(fd, from + offset, min(count - offset, 1 << 30))
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw n == 0 ? CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "nothing written"]) : posixError() }
        offset += n
    }
}

/// Large files written around the page cache (`nf_create_direct`: Linux `O_DIRECT`): the bytes
/// are copied through an aligned staging buffer in whole blocks, the last block padded, and the
/// file cut back to its length.
package enum DirectWrite {
    /// Files smaller than this are written buffered (a write to the cache is cheap for them, and
    /// direct writes wait for the device). A 4096² image's overlay PNG (3.8 MB) is above it.
    package static let smallestFile = 1 << 20
    /// Alignment of the buffer, the offsets and the lengths: 4096 covers 512- and 4096-byte
    /// logical blocks.
    static let block = 4096
    package static let stagingBytes = 4 << 20
    /// Off where the environment sets `NANOFIND_BUFFERED_WRITES` to 1 (a file system on which
    /// each direct write is a slow round trip, say).
    static let allowed = ProcessInfo.processInfo.environment["NANOFIND_BUFFERED_WRITES"] != "1"

    /// Writes the file directly; false, when the platform or the file system does not take
    /// direct writes, after which the caller writes it again from the start (the file may hold
    /// some of the blocks: the buffered write truncates it).
    package static func attempt(_ pieces: [UnsafeRawBufferPointer], to url: URL) throws -> Bool {
        let fd = nf_create_direct(url.path)
        guard fd >= 0 else {
            if errno == EINVAL { return false }
            throw posixError()
        }
        defer { close(fd) }
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, block, stagingBytes) == 0, let staging = raw else { return false }
        defer { free(staging) }
        var filled = 0, written = 0
        /// Writes the staging buffer's whole blocks (all of it, padded, when `last`); false when
        /// the device refused a direct write.
        func flush(last: Bool) throws -> Bool {
            var length = filled
            if last {
                length = (filled + block - 1) / block * block
                memset(staging + filled, 0, length - filled)
            }
            var offset = 0
            while offset < length {
                let n = write(fd, staging + offset, length - offset)
                if n < 0 && errno == EINTR { continue }
                if n < 0 && errno == EINVAL { return false }  // the buffered write starts again
                guard n >= 0 else { throw posixError() }
                guard n > 0, n % block == 0 else { return false }  // never seen: the rest would be misaligned
                offset += n
                written += n
            }
            filled = 0
            return true
        }
        for piece in pieces where piece.count > 0 {
            var from = 0
            while from < piece.count {
                let n = min(piece.count - from, stagingBytes - filled)
                memcpy(staging + filled, piece.baseAddress! + from, n)
                filled += n
                from += n
                if filled == stagingBytes, try !flush(last: false) { return false }
            }
        }
        let length = written + filled
        guard try flush(last: true) else { return false }
        guard ftruncate(fd, off_t(length)) == 0 else { throw posixError() }
        return true
    }
}

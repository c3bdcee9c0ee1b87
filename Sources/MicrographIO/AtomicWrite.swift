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

func writeAtomically(_ pieces: [UnsafeRawBufferPointer], to url: URL) throws {
    let tmp = url.deletingLastPathComponent()
        .appendingPathComponent(".\(url.lastPathComponent).partial-\(getpid())")
    do {
        try writeFile(pieces, to: tmp)
        // rename(2) replaces an existing file atomically: readers see the old or the new one.
        guard rename(tmp.path, url.path) == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: String(cString: strerror(errno))])
        }
    } catch {
        try? FileManager.default.removeItem(at: tmp)
        throw MicrographError(url: url, reason: "cannot be written (\(error.localizedDescription))")
    }
}

/// Writes the pieces to a new file with POSIX calls (no intermediate copy of large outputs).
func writeFile(_ pieces: [UnsafeRawBufferPointer], to url: URL) throws {
    let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: String(cString: strerror(errno))]) }
    defer { close(fd) }
    for raw in pieces where raw.count > 0 {
        var offset = 0
        while offset < raw.count {
            let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: String(cString: strerror(errno))])
            }
            offset += n
        }
    }
}

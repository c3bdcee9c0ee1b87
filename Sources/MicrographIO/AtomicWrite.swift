import Foundation

/// Writes bytes to a temporary file beside `url`, then renames it into place, so a failed or
/// interrupted write never leaves a partial output file.
public func writeAtomically(_ bytes: [UInt8], to url: URL) throws {
    let tmp = url.deletingLastPathComponent()
        .appendingPathComponent(".\(url.lastPathComponent).partial-\(getpid())")
    do {
        try Data(bytes).write(to: tmp)
        // rename(2) replaces an existing file atomically: readers see the old or the new one.
        guard rename(tmp.path, url.path) == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: String(cString: strerror(errno))])
        }
    } catch {
        try? FileManager.default.removeItem(at: tmp)
        throw MicrographError(url: url, reason: "cannot be written (\(error.localizedDescription))")
    }
}

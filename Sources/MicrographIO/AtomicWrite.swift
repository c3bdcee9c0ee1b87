import Foundation

/// Writes bytes to a temporary file beside `url`, then renames it into place, so a failed or
/// interrupted write never leaves a partial output file.
public func writeAtomically(_ bytes: [UInt8], to url: URL) throws {
    let tmp = url.deletingLastPathComponent()
        .appendingPathComponent(".\(url.lastPathComponent).partial-\(getpid())")
    do {
        try Data(bytes).write(to: tmp)
        if FileManager.default.fileExists(atPath: url.path) { try FileManager.default.removeItem(at: url) }
        try FileManager.default.moveItem(at: tmp, to: url)
    } catch {
        try? FileManager.default.removeItem(at: tmp)
        throw MicrographError(url: url, reason: "cannot be written (\(error.localizedDescription))")
    }
}

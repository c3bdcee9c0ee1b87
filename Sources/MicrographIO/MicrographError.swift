import Foundation

/// Why a file could not be read or written. Always names the file and what is wrong with it,
/// so the CLI can print one line and a batch can report it and go on.
public struct MicrographError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public var file: String
    public var reason: String
    public init(file: String, reason: String) { self.file = file; self.reason = reason }
    public init(url: URL, reason: String) { self.init(file: url.path, reason: reason) }
    public var description: String { "\(file): \(reason)" }
    public var errorDescription: String? { description }
}

extension MicrographError {
    /// What is wrong with a path that does not exist: "no such file" (or `reason`), or, when its
    /// name holds U+FFFD, that the name is not UTF-8. Foundation reads file names as UTF-8 and
    /// puts U+FFFD for bytes that are not (a Latin-1 "µ" from a Windows share, say), so such a
    /// file is listed in its folder under a name that then opens nothing.
    public static func missing(_ path: String, reason: String = "no such file") -> String {
        path.unicodeScalars.contains("\u{FFFD}")
            ? "its name is not valid UTF-8, so it cannot be opened by that name: rename it in UTF-8 (convmv -f latin1 -t utf8 --notest, say)"
            : reason
    }

    /// A file that is not there (`missing`).
    public static func noSuchFile(_ url: URL) -> MicrographError {
        MicrographError(url: url, reason: missing(url.path))
    }
}


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

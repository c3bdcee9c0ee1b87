import Crypto
import Foundation

/// Hex SHA-256 of a file's bytes, read in pieces (e.g. a model file, so that a result records
/// which weights made it, not only the file's name).
public func fileSHA256(_ url: URL) throws -> String {
    let handle = try FileHandle(forReadingFrom: url)
    defer { try? handle.close() }
    var hasher = SHA256()
    while let piece = try handle.read(upToCount: 1 << 20), !piece.isEmpty { hasher.update(data: piece) }
    return hex(hasher.finalize())
}

/// A digest as lower-case hex, as `sha256sum` prints it.
func hex(_ digest: SHA256.Digest) -> String { digest.map { String(format: "%02x", $0) }.joined() }

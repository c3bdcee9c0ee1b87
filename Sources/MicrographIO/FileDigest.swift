import Crypto
import Foundation

/// SHA-256 of a sequence of byte pieces (tensors, labels, settings), fed in a fixed order, for
/// a result to record what made it: e.g. a model's weights, hashed from memory as they were
/// loaded rather than from a file that may have changed since.
public struct ContentDigest {
    private var hasher = SHA256()

    public init() {}

    /// Adds `bytes`, preceded by their length, so that pieces cannot run into each other.
    public mutating func add(_ bytes: UnsafeRawBufferPointer) {
        withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { hasher.update(bufferPointer: $0) }
        hasher.update(bufferPointer: bytes)
    }

    public mutating func add(_ text: String) { Array(text.utf8).withUnsafeBytes { add($0) } }

    /// The digest as lower-case hex, as `sha256sum` prints it.
    public func hexDigest() -> String { hex(hasher.finalize()) }
}

/// A digest as lower-case hex, as `sha256sum` prints it.
func hex(_ digest: SHA256.Digest) -> String { digest.map { String(format: "%02x", $0) }.joined() }

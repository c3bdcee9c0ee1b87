import Foundation

/// Bounds-checked reading of little- or big-endian values from a byte buffer. Every read that
/// would run past the end throws a `MicrographError` naming the file and the field, so a
/// truncated or corrupt file can never crash a reader.
public struct ByteReader {
    public let bytes: [UInt8]
    public let file: String
    public var offset: Int = 0
    public var bigEndian: Bool

    public init(bytes: [UInt8], file: String, bigEndian: Bool = false) {
        self.bytes = bytes; self.file = file; self.bigEndian = bigEndian
    }

    public var count: Int { bytes.count }
    public var remaining: Int { bytes.count - offset }

    public func fail(_ reason: String) -> MicrographError { MicrographError(file: file, reason: reason) }

    /// Checks that `length` bytes from `at` lie inside the file.
    public func require(_ at: Int, _ length: Int, _ field: String) throws {
        if at < 0 || length < 0 || at > bytes.count || length > bytes.count - at {
            throw fail("truncated: \(field) needs \(length) bytes at offset \(at), file has \(bytes.count)")
        }
    }

    public func uint(at: Int, size: Int, _ field: String) throws -> UInt64 {
        try require(at, size, field)
        var v: UInt64 = 0
        if bigEndian {
            for i in 0..<size { v = (v << 8) | UInt64(bytes[at + i]) }
        } else {
            for i in stride(from: size - 1, through: 0, by: -1) { v = (v << 8) | UInt64(bytes[at + i]) }
        }
        return v
    }

    public func u8(at: Int, _ field: String) throws -> UInt8 { UInt8(try uint(at: at, size: 1, field)) }
    public func u16(at: Int, _ field: String) throws -> UInt16 { UInt16(try uint(at: at, size: 2, field)) }
    public func u32(at: Int, _ field: String) throws -> UInt32 { UInt32(try uint(at: at, size: 4, field)) }
    public func u64(at: Int, _ field: String) throws -> UInt64 { try uint(at: at, size: 8, field) }
    public func i16(at: Int, _ field: String) throws -> Int16 { Int16(bitPattern: try u16(at: at, field)) }
    public func i32(at: Int, _ field: String) throws -> Int32 { Int32(bitPattern: try u32(at: at, field)) }
    public func i64(at: Int, _ field: String) throws -> Int64 { Int64(bitPattern: try u64(at: at, field)) }
    public func f32(at: Int, _ field: String) throws -> Float { Float(bitPattern: try u32(at: at, field)) }
    public func f64(at: Int, _ field: String) throws -> Double { Double(bitPattern: try u64(at: at, field)) }

    public func slice(at: Int, length: Int, _ field: String) throws -> ArraySlice<UInt8> {
        try require(at, length, field)
        return bytes[at..<(at + length)]
    }

    // Sequential variants that advance `offset`.
    public mutating func readU8(_ field: String) throws -> UInt8 { defer { offset += 1 }; return try u8(at: offset, field) }
    public mutating func readU16(_ field: String) throws -> UInt16 { defer { offset += 2 }; return try u16(at: offset, field) }
    public mutating func readU32(_ field: String) throws -> UInt32 { defer { offset += 4 }; return try u32(at: offset, field) }
    public mutating func readU64(_ field: String) throws -> UInt64 { defer { offset += 8 }; return try u64(at: offset, field) }
    public mutating func readI32(_ field: String) throws -> Int32 { defer { offset += 4 }; return try i32(at: offset, field) }
    public mutating func readI64(_ field: String) throws -> Int64 { defer { offset += 8 }; return try i64(at: offset, field) }
    public mutating func readF32(_ field: String) throws -> Float { defer { offset += 4 }; return try f32(at: offset, field) }
    public mutating func readF64(_ field: String) throws -> Double { defer { offset += 8 }; return try f64(at: offset, field) }
    public mutating func readBytes(_ n: Int, _ field: String) throws -> ArraySlice<UInt8> {
        let s = try slice(at: offset, length: n, field); offset += n; return s
    }
}

/// Reverses the byte order of every `size`-byte sample in place (big-endian files → native LE).
public func swapSampleBytes(_ data: inout [UInt8], sampleSize: Int) {
    guard sampleSize > 1 else { return }
    data.withUnsafeMutableBufferPointer { p in
        var i = 0
        while i + sampleSize <= p.count {
            var a = i, b = i + sampleSize - 1
            while a < b { p.swapAt(a, b); a += 1; b -= 1 }
            i += sampleSize
        }
    }
}

/// Reads a whole file, naming it in the error if it cannot be read (`ReadableFile`: read straight
/// into the array, only a regular file).
public func readFileBytes(_ url: URL) throws -> [UInt8] {
    let file = try ReadableFile(url)
    return try file.bytes(0..<file.size, shorter: true)
}

/// A regular file open for reading, read by ranges (a reader that knows its layout from the
/// header reads the pixel data straight into their own array, not through a copy of the whole
/// file); the errors name the file. Reads go straight into the array (no mapping of the file,
/// whose every page would fault in on the copy): `segment`'s read of a 4096² int16 MRC (33 MB,
/// from the page cache) took 8.2–9.7 ms instead of 12.1–13.5 through a mapping (Intel Xeon fam 6
/// mod 207, bench's segment_4096). Only regular files: what the file is, is checked before it
/// is opened (a device's driver is never asked to open it, a FIFO's writer never woken) and
/// again on the open file (opened without blocking, should a FIFO take its place meanwhile).
/// Closed when released.
public final class ReadableFile {
    public let url: URL
    /// Its size when opened (a file that grows meanwhile is read as it was).
    public let size: Int
    private let fd: Int32

    public init(_ url: URL) throws {
        self.url = url
        try requireRegularFile(url)
        var fd = open(url.path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        // A regular file under a write lease (Samba's oplocks, nfsd) refuses a non-blocking
        // open: it was a regular file a moment ago, so open it the blocking way.
        if fd < 0 && (errno == EWOULDBLOCK || errno == EAGAIN) { fd = open(url.path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw ReadableFile.failure(url, errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { let code = errno; close(fd); throw ReadableFile.failure(url, code) }
        if let problem = notRegularFile(mode: st.st_mode) { close(fd); throw MicrographError(url: url, reason: problem) }
        self.fd = fd
        size = Int(max(0, st.st_size))
    }

    deinit { close(fd) }

    static func failure(_ url: URL, _ code: Int32) -> MicrographError {
        code == ENOENT ? MicrographError.noSuchFile(url)
            : MicrographError(url: url, reason: code == EACCES ? "permission denied" : "cannot be read (\(String(cString: strerror(code))))")
    }

    /// The bytes of `range` (within `size`, else an error), read straight into the array, at
    /// most 1 GiB a call (macOS refuses reads above 2 GiB). A file that shrank since it was
    /// opened gives fewer where `shorter`, else an error.
    public func bytes(_ range: Range<Int>, shorter: Bool = false) throws -> [UInt8] {
        guard range.lowerBound >= 0 && range.upperBound <= size else {
            throw MicrographError(url: url, reason: "bytes \(range.lowerBound) to \(range.upperBound) asked for, but the file has \(size)")
        }
        var code: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: range.count) { buffer, count in
            var done = 0
            while done < buffer.count, let base = buffer.baseAddress {
                let n = pread(fd, base + done, min(buffer.count - done, 1 << 30), off_t(range.lowerBound + done))
                if n < 0 && errno == EINTR { continue }
                if n < 0 { code = errno; break }
                if n == 0 { break }  // the file shrank
                done += n
            }
            count = done
        }
        if code != 0 { throw ReadableFile.failure(url, code) }
        if bytes.count < range.count && !shorter {
            throw MicrographError(url: url, reason: "truncated while being read: \(range.upperBound) bytes expected, the file now ends before")
        }
        return bytes
    }
}

import Foundation

/// One TIFF image file directory (IFD) parsed from the file's bytes with `ByteReader`, so that
/// private tags libtiff does not know (FEI 34682, Zeiss 34118, DigitalMicrograph 65003…) can
/// be read. Classic TIFF and BigTIFF, either byte order. Entries whose values lie outside the
/// file are left out; nothing is read without a bounds check.
struct TIFFDirectory {
    struct Entry {
        var tag: UInt16
        var type: UInt16
        var count: Int
        /// Absolute offset of the value bytes in the file.
        var valueOffset: Int
    }

    let reader: ByteReader
    var entries: [UInt16: Entry] = [:]

    static func typeSize(_ type: UInt16) -> Int? {
        switch type {
        case 1, 2, 6, 7: return 1
        case 3, 8: return 2
        case 4, 9, 11, 13: return 4
        case 5, 10, 12, 16, 17, 18: return 8
        default: return nil
        }
    }

    /// The directory with index `index` (0 = first page), or nil when the chain is shorter,
    /// loops, or leaves the file.
    static func directory(_ bytes: [UInt8], file: String, index: Int) -> TIFFDirectory? {
        guard bytes.count >= 8 else { return nil }
        let bigEndian: Bool
        switch (bytes[0], bytes[1]) {
        case (0x49, 0x49): bigEndian = false
        case (0x4D, 0x4D): bigEndian = true
        default: return nil
        }
        let r = ByteReader(bytes: bytes, file: file, bigEndian: bigEndian)
        guard let version = try? r.u16(at: 2, "version") else { return nil }
        let big = version == 43
        guard version == 42 || big else { return nil }
        var offset: Int
        if big {
            guard let o = try? r.u64(at: 8, "first IFD offset"), o < UInt64(bytes.count) else { return nil }
            offset = Int(o)
        } else {
            guard let o = try? r.u32(at: 4, "first IFD offset") else { return nil }
            offset = Int(o)
        }
        var visited = Set<Int>()
        var current = 0
        while true {
            guard offset > 0, offset < bytes.count, !visited.contains(offset), visited.count < 100_000 else { return nil }
            visited.insert(offset)
            let countSize = big ? 8 : 2, entrySize = big ? 20 : 12, inline = big ? 8 : 4
            guard let rawCount = try? r.uint(at: offset, size: countSize, "IFD entry count") else { return nil }
            guard rawCount <= 65_535 else { return nil }
            let n = Int(rawCount)
            let entriesStart = offset + countSize
            guard (try? r.require(entriesStart, n * entrySize, "IFD entries")) != nil else { return nil }
            let nextAt = entriesStart + n * entrySize
            if current == index {
                var dir = TIFFDirectory(reader: r)
                for k in 0..<n {
                    let e = entriesStart + k * entrySize
                    guard let tag = try? r.u16(at: e, "tag"), let type = try? r.u16(at: e + 2, "type"),
                          let count = try? r.uint(at: e + 4, size: big ? 8 : 4, "count"),
                          let size = typeSize(type), count <= UInt64(bytes.count) else { continue }
                    let total = Int(count) * size
                    var valueOffset = e + (big ? 12 : 8)
                    if total > inline {
                        guard let o = try? r.uint(at: valueOffset, size: inline, "value offset"),
                              o <= UInt64(bytes.count) else { continue }
                        valueOffset = Int(o)
                    }
                    guard (try? r.require(valueOffset, total, "tag \(tag)")) != nil else { continue }
                    dir.entries[tag] = Entry(tag: tag, type: type, count: Int(count), valueOffset: valueOffset)
                }
                return dir
            }
            guard let next = try? r.uint(at: nextAt, size: inline, "next IFD offset"), next < UInt64(bytes.count) else { return nil }
            offset = Int(next)
            current += 1
        }
    }

    /// The numeric values of a tag, converted to Double (rationals divided out).
    func values(_ tag: UInt16) -> [Double]? {
        guard let e = entries[tag], let size = TIFFDirectory.typeSize(e.type) else { return nil }
        var out: [Double] = []
        out.reserveCapacity(e.count)
        for k in 0..<e.count {
            let at = e.valueOffset + k * size
            guard let v = try? value(type: e.type, at: at) else { return nil }
            out.append(v)
        }
        return out
    }

    /// The numerator and denominator of a RATIONAL tag's first value.
    func rational(_ tag: UInt16) -> (numerator: Double, denominator: Double)? {
        guard let e = entries[tag], e.type == 5 || e.type == 10, e.count >= 1 else { return nil }
        if e.type == 5 {
            guard let n = try? reader.u32(at: e.valueOffset, "numerator"),
                  let d = try? reader.u32(at: e.valueOffset + 4, "denominator") else { return nil }
            return (Double(n), Double(d))
        }
        guard let n = try? reader.i32(at: e.valueOffset, "numerator"),
              let d = try? reader.i32(at: e.valueOffset + 4, "denominator") else { return nil }
        return (Double(n), Double(d))
    }

    private func value(type: UInt16, at: Int) throws -> Double {
        switch type {
        case 1, 7: return Double(try reader.u8(at: at, "value"))
        case 6: return Double(Int8(bitPattern: try reader.u8(at: at, "value")))
        case 3: return Double(try reader.u16(at: at, "value"))
        case 8: return Double(try reader.i16(at: at, "value"))
        case 4, 13: return Double(try reader.u32(at: at, "value"))
        case 9: return Double(try reader.i32(at: at, "value"))
        case 11: return Double(try reader.f32(at: at, "value"))
        case 12: return try reader.f64(at: at, "value")
        case 16, 18: return Double(try reader.u64(at: at, "value"))
        case 17: return Double(try reader.i64(at: at, "value"))
        case 5:
            let n = Double(try reader.u32(at: at, "numerator")), d = Double(try reader.u32(at: at + 4, "denominator"))
            return n / d
        case 10:
            let n = Double(try reader.i32(at: at, "numerator")), d = Double(try reader.i32(at: at + 4, "denominator"))
            return n / d
        default: throw reader.fail("unknown TIFF type \(type)")
        }
    }

    /// The raw bytes of a tag's value.
    func rawBytes(_ tag: UInt16) -> ArraySlice<UInt8>? {
        guard let e = entries[tag], let size = TIFFDirectory.typeSize(e.type) else { return nil }
        return try? reader.slice(at: e.valueOffset, length: e.count * size, "tag \(tag)")
    }

    /// A text tag (ASCII or bytes) decoded as UTF-8 when valid, else Latin-1, up to the first NUL.
    func text(_ tag: UInt16) -> String? {
        guard let raw = rawBytes(tag) else { return nil }
        let cut = raw.prefix { $0 != 0 }
        return String(bytes: cut, encoding: .utf8) ?? String(bytes: cut, encoding: .isoLatin1)
    }
}

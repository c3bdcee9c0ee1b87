import Foundation

/// The scalar encodings of DigitalMicrograph tag data (the type codes in a tag's info array).
enum DMScalarType: UInt64, Sendable {
    case int16 = 2, int32 = 3, uint16 = 4, uint32 = 5, float32 = 6, float64 = 7
    case bool = 8, int8 = 9, uint8 = 10, int64 = 11, uint64 = 12

    var size: Int {
        switch self {
        case .bool, .int8, .uint8: return 1
        case .int16, .uint16: return 2
        case .int32, .uint32, .float32: return 4
        case .float64, .int64, .uint64: return 8
        }
    }
}

/// A run of scalars left in the file (image data can be large; it is copied only when needed).
struct DMArrayRef: Sendable {
    var type: DMScalarType
    var offset: Int
    var count: Int
    var byteCount: Int { count * type.size }
}

/// The value of a data tag.
enum DMValue: Sendable {
    case number(Double)
    case string(String)
    case array(DMArrayRef)
    /// A struct's fields (DM structs hold scalars only).
    case structure([Double])
    /// An array of structs, left in the file: field types, first byte, element count.
    case structArray(fields: [DMScalarType], offset: Int, count: Int)
}

/// One entry of a tag group: a nested group or a data tag. Unnamed entries (ImageList items,
/// Dimensions) have an empty name and are addressed by position.
indirect enum DMNode: Sendable {
    case group([DMTag])
    case value(DMValue)
}

struct DMTag: Sendable {
    var name: String
    var node: DMNode
}

extension DMNode {
    var entries: [DMTag]? { if case .group(let g) = self { return g }; return nil }
    var value: DMValue? { if case .value(let v) = self { return v }; return nil }

    /// The first entry called `name` of a group.
    subscript(_ name: String) -> DMNode? { entries?.first(where: { $0.name == name })?.node }

    /// Follows a path of names through nested groups.
    func at(_ path: String...) -> DMNode? {
        var node: DMNode? = self
        for name in path { node = node?[name] }
        return node
    }

    var number: Double? {
        switch value {
        case .number(let d)?: return d
        default: return nil
        }
    }
}

/// Parses the tag tree of a DM3 (version 3: 4-byte counts) or DM4 (version 4: 8-byte counts) file.
///
/// The tag structure (types, name lengths, counts, info arrays) is big-endian; tag data use the
/// byte order the header names. Parsing is strictly sequential, so a corrupt file cannot make it
/// loop, and every count is checked against the bytes left before anything is allocated.
struct DMTagParser {
    static let maxDepth = 64

    let version: Int
    /// Byte order of tag data and image data (header field: 1 = little-endian).
    let dataLittleEndian: Bool
    /// Offset of the root tag group.
    let rootOffset: Int
    private var r: ByteReader
    private let data: ByteReader

    var file: String { r.file }

    /// Reads and checks the file header.
    init(bytes: [UInt8], file: String) throws {
        var r = ByteReader(bytes: bytes, file: file, bigEndian: true)
        let version = try r.readU32("DM header version")
        guard version == 3 || version == 4 else {
            throw r.fail("not a DigitalMicrograph file (header version \(version), expected 3 or 4)")
        }
        let rootLength: UInt64 = version == 4 ? try r.readU64("DM header root length")
                                              : UInt64(try r.readU32("DM header root length"))
        let order = try r.readU32("DM header byte order")
        guard order <= 1 else { throw r.fail("DM header byte order is \(order), expected 0 or 1") }
        guard rootLength <= UInt64(r.count) else {
            throw r.fail("truncated: DM header root length \(rootLength) exceeds the file size \(r.count)")
        }
        self.version = Int(version)
        self.dataLittleEndian = order == 1
        self.rootOffset = r.offset
        self.r = r
        self.data = ByteReader(bytes: bytes, file: file, bigEndian: order == 0)
    }

    /// Parses the root group and everything below it.
    mutating func parseRoot() throws -> DMNode {
        r.offset = rootOffset
        return .group(try parseGroup(depth: 0, path: "root"))
    }

    private mutating func readCount(_ field: String) throws -> UInt64 {
        version == 4 ? try r.readU64(field) : UInt64(try r.readU32(field))
    }

    /// Converts a count from the file to Int, refusing values that `limit` bytes cannot hold.
    private func checkedCount(_ v: UInt64, each: Int, _ field: String) throws -> Int {
        let limit = max(r.remaining, 0)
        guard v <= UInt64(Int32.max), each > 0, Int(v) <= limit / each else {
            throw r.fail("\(field) is \(v), more than the \(limit) bytes left at offset \(r.offset) can hold")
        }
        return Int(v)
    }

    private mutating func parseGroup(depth: Int, path: String) throws -> [DMTag] {
        guard depth <= DMTagParser.maxDepth else {
            throw r.fail("tag group \(path) is nested deeper than \(DMTagParser.maxDepth) levels")
        }
        _ = try r.readU8("sorted flag of tag group \(path)")
        _ = try r.readU8("open flag of tag group \(path)")
        // The smallest tag is a type byte and a 2-byte name length (plus an 8-byte size in DM4).
        let n = try checkedCount(try readCount("tag count of group \(path)"), each: version == 4 ? 11 : 3,
                                 "tag count of group \(path)")
        var tags: [DMTag] = []
        for i in 0..<n {
            let kindOffset = r.offset
            let kind = try r.readU8("type of tag \(i) in \(path)")
            let nameLength = Int(try r.readU16("name length of tag \(i) in \(path)"))
            let nameBytes = try r.readBytes(nameLength, "name of tag \(i) in \(path)")
            let name = String(decoding: nameBytes.map { UInt16($0) }, as: UTF16.self)  // Latin-1
            let label = name.isEmpty ? "\(path)[\(i)]" : "\(path).\(name)"
            if version == 4 {
                let size = try r.readU64("size of tag \(label)")
                guard size <= UInt64(r.remaining) else {
                    throw r.fail("size of tag \(label) is \(size), more than the \(r.remaining) bytes left at offset \(r.offset)")
                }
            }
            switch kind {
            case 20: tags.append(DMTag(name: name, node: .group(try parseGroup(depth: depth + 1, path: label))))
            case 21: tags.append(DMTag(name: name, node: .value(try parseData(label))))
            default:
                throw r.fail("tag \(label) at offset \(kindOffset) has type \(kind), expected 20 (group) or 21 (data)")
            }
        }
        return tags
    }

    private func scalarType(_ code: UInt64, _ label: String) throws -> DMScalarType {
        guard let t = DMScalarType(rawValue: code) else {
            throw r.fail("tag \(label) has unsupported data type \(code)")
        }
        return t
    }

    private mutating func parseData(_ label: String) throws -> DMValue {
        let magic = try r.readBytes(4, "'%%%%' marker of tag \(label)")
        guard magic.elementsEqual([0x25, 0x25, 0x25, 0x25]) else {
            throw r.fail("tag \(label) lacks its '%%%%' marker at offset \(r.offset - 4)")
        }
        let infoSize = version == 4 ? 8 : 4
        let ninfo = try checkedCount(try readCount("info length of tag \(label)"), each: infoSize,
                                     "info length of tag \(label)")
        guard ninfo >= 1 else { throw r.fail("tag \(label) has an empty info array") }
        var info: [UInt64] = []
        info.reserveCapacity(ninfo)
        for _ in 0..<ninfo { info.append(try readCount("info of tag \(label)")) }

        func need(_ n: Int) throws {
            guard info.count >= n else {
                throw r.fail("info array of tag \(label) has \(info.count) entries, its type needs \(n)")
            }
        }
        switch info[0] {
        case 18:  // string of UTF-16 code units
            try need(2)
            let n = try checkedCount(info[1], each: 2, "string length of tag \(label)")
            let s = try readUTF16(count: n, label)
            return .string(s)
        case 15:  // struct
            let fields = try structFields(info, from: 1, label)
            var values: [Double] = []
            for f in fields {
                values.append(try scalar(f, at: r.offset, label))
                r.offset += f.size
            }
            return .structure(values)
        case 20:  // array
            try need(3)
            if info[1] == 15 {
                let fields = try structFields(info, from: 2, label)
                try need(4 + 2 * fields.count + 1)
                let elementSize = fields.reduce(0) { $0 + $1.size }
                guard elementSize > 0 else { throw r.fail("tag \(label) is an array of empty structs") }
                let count = try checkedCount(info[4 + 2 * fields.count], each: elementSize,
                                             "array length of tag \(label)")
                let offset = r.offset
                r.offset += count * elementSize
                return .structArray(fields: fields, offset: offset, count: count)
            }
            let t = try scalarType(info[1], label)
            let count = try checkedCount(info[2], each: t.size, "array length of tag \(label)")
            let ref = DMArrayRef(type: t, offset: r.offset, count: count)
            r.offset += ref.byteCount
            return .array(ref)
        default:
            let t = try scalarType(info[0], label)
            let v = try scalar(t, at: r.offset, label)
            r.offset += t.size
            return .number(v)
        }
    }

    /// Field types of a struct described at `info[from...]`: name length, field count, then
    /// (field name length, field type) pairs.
    private func structFields(_ info: [UInt64], from: Int, _ label: String) throws -> [DMScalarType] {
        guard info.count >= from + 2 else { throw r.fail("info array of struct tag \(label) is too short") }
        let nfields = info[from + 1]
        guard nfields <= UInt64((info.count - from - 2) / 2) else {
            throw r.fail("struct tag \(label) declares \(nfields) fields, its info array holds fewer")
        }
        var fields: [DMScalarType] = []
        for k in 0..<Int(nfields) { fields.append(try scalarType(info[from + 2 + 2 * k + 1], label)) }
        return fields
    }

    private mutating func readUTF16(count: Int, _ label: String) throws -> String {
        var units: [UInt16] = []
        units.reserveCapacity(count)
        for k in 0..<count { units.append(try data.u16(at: r.offset + 2 * k, "string of tag \(label)")) }
        r.offset += 2 * count
        return String(decoding: units, as: UTF16.self)
    }

    /// One scalar of tag data, in the data byte order, as a Double.
    func scalar(_ t: DMScalarType, at offset: Int, _ label: String) throws -> Double {
        let field = "value of tag \(label)"
        switch t {
        case .int16: return Double(try data.i16(at: offset, field))
        case .int32: return Double(try data.i32(at: offset, field))
        case .uint16: return Double(try data.u16(at: offset, field))
        case .uint32: return Double(try data.u32(at: offset, field))
        case .float32: return Double(try data.f32(at: offset, field))
        case .float64: return try data.f64(at: offset, field)
        case .bool, .uint8: return Double(try data.u8(at: offset, field))
        case .int8: return Double(Int8(bitPattern: try data.u8(at: offset, field)))
        case .int64: return Double(try data.i64(at: offset, field))
        case .uint64: return Double(try data.u64(at: offset, field))
        }
    }

    /// A string stored as a tag: a string value, or an array of UTF-16 code units (or bytes).
    func text(_ node: DMNode?) -> String? {
        switch node?.value {
        case .string(let s)?: return s
        case .array(let a)? where a.count <= 4096:
            var units: [UInt16] = []
            for k in 0..<a.count {
                guard let v = try? scalar(a.type, at: a.offset + k * a.type.size, "string"),
                      v >= 0, v <= 65535 else { return nil }
                units.append(UInt16(v))
            }
            if let nul = units.firstIndex(of: 0) { units.removeSubrange(nul...) }
            return String(decoding: units, as: UTF16.self)
        case .number(let d)?: return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d)
        default: return nil
        }
    }
}

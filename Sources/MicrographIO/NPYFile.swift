import Foundation

/// NumPy `.npy` files (format versions 1.0, 2.0 and 3.0), C order.
///
/// The reader validates the header (magic, version, header length, dtype, shape and the exact data
/// size) before it allocates anything for the pixels.
public enum NPYFile {
    /// A parsed array: native dtype, shape as stored, little-endian native bytes.
    public struct Array: Sendable {
        public var dtype: PixelType
        public var shape: [Int]
        public var data: [UInt8]
    }

    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY

    public static func isNPY(_ bytes: [UInt8]) -> Bool { bytes.count >= 6 && Swift.Array(bytes[0..<6]) == magic }

    public static func read(_ url: URL) throws -> Array {
        try parse(readFileBytes(url), file: url.path)
    }

    public static func parse(_ bytes: [UInt8], file: String) throws -> Array {
        let r = ByteReader(bytes: bytes, file: file)
        guard isNPY(bytes) else { throw r.fail("not a NumPy .npy file (bad magic bytes)") }
        let major = try r.u8(at: 6, "version")
        let headerLength: Int, headerStart: Int
        switch major {
        case 1: headerLength = Int(try r.u16(at: 8, "header length")); headerStart = 10
        case 2, 3: headerLength = Int(try r.u32(at: 8, "header length")); headerStart = 12
        default: throw r.fail("unsupported .npy version \(major)")
        }
        guard headerLength <= 1 << 20 else { throw r.fail("header length \(headerLength) is implausible") }
        let headerBytes = try r.slice(at: headerStart, length: headerLength, "header")
        guard let header = String(bytes: headerBytes, encoding: major == 3 ? .utf8 : .isoLatin1) else {
            throw r.fail("header is not text")
        }
        guard let descr = dictValue(header, key: "descr") else { throw r.fail("header has no 'descr'") }
        guard let fortran = dictValue(header, key: "fortran_order") else { throw r.fail("header has no 'fortran_order'") }
        guard let shapeText = dictValue(header, key: "shape") else { throw r.fail("header has no 'shape'") }
        let descrClean = descr.trimmingCharacters(in: CharacterSet(charactersIn: "'\" "))
        let (dtype, bigEndian) = try parseDescr(descrClean, r)
        let shape = try parseShape(shapeText, r)
        let fortranOrder = fortran.hasPrefix("True") && shape.filter({ $0 > 1 }).count > 1
        var count = 1
        for d in shape {
            let (m, o) = count.multipliedReportingOverflow(by: d)
            guard !o else { throw r.fail("shape \(shape) overflows") }
            count = m
        }
        let (nbytes, o) = count.multipliedReportingOverflow(by: dtype.byteCount)
        guard !o else { throw r.fail("shape \(shape) overflows") }
        let dataStart = headerStart + headerLength
        guard bytes.count - dataStart >= nbytes else {
            throw r.fail("truncated: shape \(shape) of \(descrClean) needs \(nbytes) data bytes, file has \(max(0, bytes.count - dataStart))")
        }
        var data = [UInt8](bytes[dataStart..<(dataStart + nbytes)])
        if bigEndian {
            swapSampleBytes(&data, sampleSize: dtype.isComplex ? dtype.byteCount / 2 : dtype.byteCount)
        }
        if fortranOrder { data = cOrder(fromFortran: data, shape: shape, elementSize: dtype.byteCount) }
        return Array(dtype: dtype, shape: shape, data: data)
    }

    /// Reads a .npy file as a `Micrograph`: 2-D (H, W) or N-D (..., H, W) with leading axes as
    /// frames; a last axis of 3 or 4 after two of 8 or more, (..., H, W, 3|4), of 8- or 16-bit
    /// samples is colour, as NumPy holds an RGB(A) picture (`np.asarray(PIL.Image.open(...))`),
    /// the alpha dropped.
    public static func readMicrograph(_ url: URL) throws -> Micrograph {
        try micrograph(from: parse(readFileBytes(url), file: url.path), url: url)
    }

    package static func micrograph(from a: Array, url: URL) throws -> Micrograph {
        guard a.shape.count >= 2 else {
            throw MicrographError(url: url, reason: "array has shape \(a.shape); an image needs 2 dimensions (height, width)")
        }
        let n = a.shape.count
        // (Only 8- and 16-bit samples, a picture's: np.dstack of three float micrographs stays frames.)
        if n >= 3, [3, 4].contains(a.shape[n - 1]), a.shape[n - 3] >= 8, a.shape[n - 2] >= 8, [.uint8, .uint16].contains(a.dtype) {
            let h = a.shape[n - 3], w = a.shape[n - 2], c = a.shape[n - 1], frames = a.shape.dropLast(3).reduce(1, *)
            guard frames > 0 else { throw MicrographError(url: url, reason: "array of shape \(a.shape) is empty") }
            var data = a.data
            if c == 4 {  // RGBA: the alpha dropped, as the PNG and TIFF readers drop it
                let e = a.dtype.byteCount, pixels = frames * h * w
                data = [UInt8](repeating: 0, count: pixels * 3 * e)
                a.data.withUnsafeBytes { src in data.withUnsafeMutableBytes { dst in
                    for p in 0..<pixels { memcpy(dst.baseAddress! + p * 3 * e, src.baseAddress! + p * 4 * e, 3 * e) }
                } }
            }
            return Micrograph(width: w, height: h, frames: frames, channels: 3, pixelType: a.dtype, data: data,
                              format: "npy", source: url)
        }
        let h = a.shape[n - 2], w = a.shape[n - 1]
        let frames = a.shape.dropLast(2).reduce(1, *)
        guard w > 0, h > 0, frames > 0 else {
            throw MicrographError(url: url, reason: "array of shape \(a.shape) is empty")
        }
        return Micrograph(width: w, height: h, frames: frames, pixelType: a.dtype, data: a.data,
                          format: "npy", source: url)
    }

    /// Writes a float32 array (C order) as .npy version 1.0, atomically (no partial file is left).
    public static func write(_ values: [Float], shape: [Int], to url: URL) throws {
        precondition(shape.reduce(1, *) == values.count)
        let head = header(descr: "<f4", shape: shape)
        try values.withUnsafeBytes { try writeAtomically(head, $0, [], to: url) }  // no copy of the values
    }

    /// Writes native little-endian samples of any dtype.
    public static func write(data: [UInt8], dtype: PixelType, shape: [Int], to url: URL) throws {
        let head = header(descr: descr(dtype), shape: shape)
        try data.withUnsafeBytes { try writeAtomically(head, $0, [], to: url) }
    }

    static func descr(_ t: PixelType) -> String {
        switch t {
        case .int8: return "|i1"
        case .uint8: return "|u1"
        case .bool: return "|b1"
        case .int16: return "<i2"
        case .uint16: return "<u2"
        case .int32: return "<i4"
        case .uint32: return "<u4"
        case .int64: return "<i8"
        case .uint64: return "<u8"
        case .float16: return "<f2"
        case .float32: return "<f4"
        case .float64: return "<f8"
        case .complex64: return "<c8"
        case .complex128: return "<c16"
        }
    }

    static func header(descr: String, shape: [Int]) -> [UInt8] {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var dict = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = 10 + dict.utf8.count + 1
        dict += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var out = magic + [1, 0]
        let n = UInt16(dict.utf8.count)
        out += [UInt8(n & 0xff), UInt8(n >> 8)]
        out += Swift.Array(dict.utf8)
        return out
    }

    static func parseDescr(_ d: String, _ r: ByteReader) throws -> (PixelType, Bool) {
        guard d.count >= 2 else { throw r.fail("unsupported dtype '\(d)'") }
        let order = d.first!
        let code = String(d.dropFirst())
        let bigEndian = order == ">"
        guard "<>|=".contains(order) else { throw r.fail("unsupported dtype '\(d)'") }
        let map: [String: PixelType] = [
            "i1": .int8, "u1": .uint8, "b1": .bool, "i2": .int16, "u2": .uint16, "i4": .int32,
            "u4": .uint32, "i8": .int64, "u8": .uint64, "f2": .float16, "f4": .float32,
            "f8": .float64, "c8": .complex64, "c16": .complex128,
        ]
        guard let t = map[code] else { throw r.fail("unsupported dtype '\(d)'") }
        return (t, bigEndian)
    }

    /// A column-major (Fortran-order) array's bytes in row-major order: element (i0, …, ik) is at
    /// i0 + d0·(i1 + d1·(…)) in the former.
    static func cOrder(fromFortran data: [UInt8], shape: [Int], elementSize e: Int) -> [UInt8] {
        let count = shape.reduce(1, *)
        var fortranStride = [Int](repeating: 1, count: shape.count)
        for k in 1..<max(1, shape.count) { fortranStride[k] = fortranStride[k - 1] * shape[k - 1] }
        var out = [UInt8](repeating: 0, count: data.count)
        var index = [Int](repeating: 0, count: shape.count)  // row-major counter
        data.withUnsafeBufferPointer { src in out.withUnsafeMutableBufferPointer { dst in
            for c in 0..<count {
                var f = 0
                for k in 0..<shape.count { f += index[k] * fortranStride[k] }
                for b in 0..<e { dst[c * e + b] = src[f * e + b] }
                var k = shape.count - 1
                while k >= 0 { index[k] += 1; if index[k] < shape[k] { break }; index[k] = 0; k -= 1 }
            }
        } }
        return out
    }

    static func parseShape(_ s: String, _ r: ByteReader) throws -> [Int] {
        let inner = s.trimmingCharacters(in: CharacterSet(charactersIn: "() "))
        if inner.isEmpty { return [] }
        var shape: [Int] = []
        for part in inner.split(separator: ",") {
            var t = part.trimmingCharacters(in: .whitespaces)
            if t.hasSuffix("L") { t.removeLast() }  // Python 2's long integers: (6L, 7L)
            if t.isEmpty { continue }
            guard let v = Int(t), v >= 0 else { throw r.fail("bad shape '\(s)'") }
            shape.append(v)
        }
        guard shape.count <= 8 else { throw r.fail("shape '\(s)' has too many dimensions") }
        return shape
    }

    /// Extracts the text of `key`'s value from a Python dict literal (value up to the next
    /// top-level comma or closing brace).
    static func dictValue(_ header: String, key: String) -> String? {
        guard let k = header.range(of: "'\(key)'") ?? header.range(of: "\"\(key)\"") else { return nil }
        var rest = header[k.upperBound...].drop(while: { $0 == " " })
        guard rest.first == ":" else { return nil }
        rest = rest.dropFirst().drop(while: { $0 == " " })
        var depth = 0, out = ""
        for ch in rest {
            if ch == "(" || ch == "[" { depth += 1 }
            if ch == ")" || ch == "]" { depth -= 1 }
            if depth == 0 && (ch == "," || ch == "}") { break }
            out.append(ch)
            if depth < 0 { return nil }
        }
        return out.trimmingCharacters(in: .whitespaces)
    }
}

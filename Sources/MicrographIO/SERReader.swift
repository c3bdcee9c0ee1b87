import Foundation

/// FEI/Thermo TIA series files (`.ser`), with the `.emi` beside them when present
/// (`<stem>_1.ser` goes with `<stem>.emi`).
///
/// A series of N 2-D elements becomes one `Micrograph` of N frames. TIA stores rows bottom-up;
/// they are flipped so that row 0 is the top row, as ncempy and RosettaSciIO show them. The calibration is the first
/// element's `CalibrationDeltaX/Y` in SI units; whether it is metres or reciprocal metres comes
/// from the `.emi` (see `EMIInfo.isReciprocal`), and without one it is taken as metres.
public enum SERReader {
    static let headerByteOrder: UInt16 = 0x4949
    static let seriesID: UInt16 = 0x0197
    static let imageDataType: UInt32 = 0x4122
    static let spectrumDataType: UInt32 = 0x4120
    /// Bytes before the pixels of a 2-D element.
    static let elementHeaderSize = 50

    /// True when the bytes start with the SER byte-order mark and series id.
    public static func isSER(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 6 && bytes[0] == 0x49 && bytes[1] == 0x49 && bytes[2] == 0x97 && bytes[3] == 0x01
    }

    public static func read(_ url: URL) throws -> [Micrograph] {
        let emiURL = companionEMI(for: url)
        var emi: EMIInfo? = nil
        if let e = emiURL, FileManager.default.fileExists(atPath: e.path) {
            emi = EMIInfo.parse(try readFileBytes(e))
        }
        return [try parse(readFileBytes(url), url: url, emi: emi)]
    }

    /// `<stem>_<n>.ser` → `<stem>.emi`; nil when the name has no `_<n>` suffix.
    public static func companionEMI(for url: URL) -> URL? {
        let stem = url.deletingPathExtension().lastPathComponent
        guard let underscore = stem.lastIndex(of: "_"),
              !stem[stem.index(after: underscore)...].isEmpty,
              stem[stem.index(after: underscore)...].allSatisfy(\.isNumber) else { return nil }
        return url.deletingLastPathComponent().appendingPathComponent(String(stem[..<underscore]) + ".emi")
    }

    static func pixelType(_ code: UInt16) -> PixelType? {
        switch code {
        case 1: return .uint8
        case 2: return .uint16
        case 3: return .uint32
        case 4: return .int8
        case 5: return .int16
        case 6: return .int32
        case 7: return .float32
        case 8: return .float64
        case 9: return .complex64
        case 10: return .complex128
        default: return nil
        }
    }

    /// Parses SER bytes. `emi` supplies the unit rule and metadata when the `.emi` was found.
    public static func parse(_ bytes: [UInt8], url: URL, emi: EMIInfo? = nil) throws -> Micrograph {
        var r = ByteReader(bytes: bytes, file: url.path)
        let order = try r.readU16("ByteOrder")
        guard order == headerByteOrder else {
            throw r.fail("not a TIA .ser file (ByteOrder 0x\(String(order, radix: 16)), expected 0x4949)")
        }
        let sid = try r.readU16("SeriesID")
        guard sid == seriesID else { throw r.fail("not a TIA .ser file (SeriesID 0x\(String(sid, radix: 16)), expected 0x0197)") }
        let version = try r.readU16("SeriesVersion")
        let wideOffsets: Bool
        switch version {
        case 0x0210: wideOffsets = false
        case 0x0220: wideOffsets = true
        default: throw r.fail("unsupported SeriesVersion 0x\(String(version, radix: 16)) (expected 0x0210 or 0x0220)")
        }
        let dataType = try r.readU32("DataTypeID")
        if dataType == spectrumDataType { throw r.fail("1-D spectra are not images (DataTypeID 0x4120)") }
        guard dataType == imageDataType else {
            throw r.fail("unsupported DataTypeID 0x\(String(dataType, radix: 16)) (expected 0x4122, 2-D images)")
        }
        _ = try r.readU32("TagTypeID")
        let total = Int(try r.readU32("TotalNumberElements"))
        let valid = Int(try r.readU32("ValidNumberElements"))
        let offsetArrayOffset = wideOffsets ? try r.readU64("OffsetArrayOffset") : UInt64(try r.readU32("OffsetArrayOffset"))
        guard valid >= 1 else { throw r.fail("ValidNumberElements is 0: the series holds no image") }
        guard valid <= total else { throw r.fail("ValidNumberElements \(valid) exceeds TotalNumberElements \(total)") }
        let offsetSize = wideOffsets ? 8 : 4
        guard offsetArrayOffset <= UInt64(r.count), total <= (r.count - Int(offsetArrayOffset)) / offsetSize else {
            throw r.fail("data offset array (\(total) entries at offset \(offsetArrayOffset)) runs past the end of the file (\(r.count) bytes)")
        }
        let arrayStart = Int(offsetArrayOffset)

        var width = 0, height = 0, type = PixelType.uint8
        var deltaX = 0.0, deltaY = 0.0
        var data: [UInt8] = []
        for i in 0..<valid {
            let raw = wideOffsets ? try r.u64(at: arrayStart + i * 8, "data offset \(i)")
                                  : UInt64(try r.u32(at: arrayStart + i * 4, "data offset \(i)"))
            guard raw <= UInt64(r.count) else {
                throw r.fail("data offset \(i) is \(raw), past the end of the file (\(r.count) bytes)")
            }
            let e = Int(raw)
            try r.require(e, elementHeaderSize, "header of element \(i)")
            let dx = try r.f64(at: e + 8, "CalibrationDeltaX of element \(i)")
            let dy = try r.f64(at: e + 28, "CalibrationDeltaY of element \(i)")
            let code = try r.u16(at: e + 40, "DataType of element \(i)")
            guard let t = pixelType(code) else { throw r.fail("element \(i) has unsupported DataType \(code)") }
            let w = Int(try r.u32(at: e + 42, "ArraySizeX of element \(i)"))
            let h = Int(try r.u32(at: e + 46, "ArraySizeY of element \(i)"))
            guard w >= 1, h >= 1 else { throw r.fail("element \(i) has an empty array (\(w) × \(h))") }
            if i == 0 {
                width = w; height = h; type = t; deltaX = dx; deltaY = dy
                // Every element needs its own bytes: the whole series must fit in the file.
                let (px, o1) = w.multipliedReportingOverflow(by: h)
                let (fb, o2) = px.multipliedReportingOverflow(by: t.byteCount)
                let (all, o3) = fb.multipliedReportingOverflow(by: valid)
                guard !o1, !o2, !o3, all <= r.count else {
                    throw r.fail("\(valid) elements of \(w) × \(h) \(t.rawValue) need more bytes than the file has (\(r.count))")
                }
                data.reserveCapacity(all)
            } else if w != width || h != height || t != type {
                throw r.fail("element \(i) is \(w) × \(h) \(t.rawValue), element 0 is \(width) × \(height) \(type.rawValue)")
            }
            let rowBytes = w * t.byteCount
            let pixels = try r.slice(at: e + elementHeaderSize, length: rowBytes * h, "pixels of element \(i)")
            // TIA stores the bottom row first; Micrograph rows run top to bottom.
            for y in stride(from: h - 1, through: 0, by: -1) {
                let start = pixels.startIndex + y * rowBytes
                data.append(contentsOf: pixels[start..<(start + rowBytes)])
            }
        }

        var meta = MicrographMetadata()
        var reciprocal = false
        if let emi {
            meta = emi.metadata
            reciprocal = emi.isReciprocal
        }
        meta.extra["ser_version"] = "0x0\(String(version, radix: 16))"
        meta.extra["ser_elements"] = String(valid)
        var pixelSize: PixelSize? = nil
        var stored: StoredCalibration? = nil
        if deltaX.isFinite, deltaY.isFinite, deltaX > 0, deltaY > 0 {
            let unit = reciprocal ? "1/m" : "m"
            stored = StoredCalibration(x: deltaX, y: deltaY, unitX: unit, unitY: unit)
            if !reciprocal { pixelSize = PixelSize(x: deltaX * 1e9, y: deltaY * 1e9) }
        }
        return Micrograph(width: width, height: height, frames: valid, pixelType: type, data: data,
                          pixelSize: pixelSize, storedCalibration: stored, format: "ser",
                          metadata: meta, source: url)
    }
}

/// What NanoFind uses from a TIA `.emi` file: the `<ObjectInfo>` XML-like text inside it.
public struct EMIInfo: Sendable {
    /// The ObjectInfo text (empty when the file has none).
    public var text: String

    public init(text: String) { self.text = text }

    /// Extracts the first `<ObjectInfo>…</ObjectInfo>` block; nil if there is none.
    public static func parse(_ bytes: [UInt8]) -> EMIInfo? {
        let open = Array("<ObjectInfo>".utf8), close = Array("</ObjectInfo>".utf8)
        guard let start = find(open, in: bytes, from: 0) else { return nil }
        let end = find(close, in: bytes, from: start) ?? bytes.count
        let slice = bytes[start..<min(bytes.count, end + close.count)]
        return EMIInfo(text: String(decoding: slice.map { UInt16($0) }, as: UTF16.self))  // Latin-1
    }

    static func find(_ needle: [UInt8], in hay: [UInt8], from: Int) -> Int? {
        guard let first = needle.first, hay.count >= needle.count else { return nil }
        var i = from
        while i <= hay.count - needle.count {
            if hay[i] == first && hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    /// Text of the first `<tag>…</tag>`.
    public func element(_ tag: String) -> String? {
        guard let a = text.range(of: "<\(tag)>"),
              let b = text.range(of: "</\(tag)>", range: a.upperBound..<text.endIndex) else { return nil }
        let v = text[a.upperBound..<b.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines)
        return v.isEmpty ? nil : v
    }

    /// The `<Value>` of the ExperimentalDescription entry whose `<Label>` is `label`.
    public func labelled(_ label: String) -> String? {
        guard let a = text.range(of: "<Label>\(label)</Label>"),
              let v = text.range(of: "<Value>", range: a.upperBound..<text.endIndex),
              let e = text.range(of: "</Value>", range: v.upperBound..<text.endIndex) else { return nil }
        let s = text[v.upperBound..<e.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines)
        return s.isEmpty ? nil : s
    }

    public var mode: String? { labelled("Mode") }

    /// RosettaSciIO's rule: in STEM mode the data are reciprocal only when a camera recorded them;
    /// otherwise they are reciprocal when the mode is a diffraction mode.
    public var isReciprocal: Bool {
        let m = mode ?? ""
        if m.contains("STEM") { return element("CameraNamePath") != nil }
        return m.contains("Diffraction")
    }

    public var metadata: MicrographMetadata {
        var meta = MicrographMetadata()
        if let v = element("AcceleratingVoltage").flatMap(Double.init), v.isFinite, v > 0 { meta.voltageKV = v / 1000 }
        else if let v = labelled("High tension").flatMap(Double.init), v.isFinite, v > 0 { meta.voltageKV = v }
        if let m = labelled("Magnification").flatMap(Double.init), m.isFinite, m > 0 { meta.magnification = m }
        meta.acquisitionDate = element("AcquireDate")
        meta.mode = mode
        meta.detector = element("CameraNamePath")
        meta.microscope = labelled("Microscope")
        return meta
    }
}

import Foundation
import MicrographIO

/// A small DM3/DM4 writer for tests: the tag structure big-endian, tag data in the chosen byte
/// order, exactly as DigitalMicrograph lays them out. It records the structural fields (counts,
/// info entries, dimensions) so the fuzz tests can corrupt them on purpose.
struct DMTestWriter {
    indirect enum Tag {
        case group(String, [Tag])
        case number(String, type: UInt64, value: Double)
        /// Raw element bytes, already in the data byte order.
        case array(String, type: UInt64, count: Int, raw: [UInt8])
        /// Text as an array of UTF-16 code units (how DM stores most strings).
        case text(String, String)
        /// Text as a type-18 string.
        case string(String, String)
        case structure(String, types: [UInt64], values: [Double])
        case structArray(String, types: [UInt64], count: Int, raw: [UInt8])
    }

    let version: Int
    let littleEndian: Bool
    private(set) var out: [UInt8] = []
    private(set) var fields: [FuzzField] = []

    init(version: Int, littleEndian: Bool) { self.version = version; self.littleEndian = littleEndian }

    static func size(_ type: UInt64) -> Int {
        switch type {
        case 8, 9, 10: return 1
        case 2, 4: return 2
        case 3, 5, 6: return 4
        default: return 8
        }
    }

    /// `value` encoded as DM scalar `type` in the data byte order.
    func encode(_ type: UInt64, _ value: Double) -> [UInt8] {
        let bits: UInt64
        switch type {
        case 2: bits = UInt64(UInt16(bitPattern: Int16(value)))
        case 3: bits = UInt64(UInt32(bitPattern: Int32(value)))
        case 4: bits = UInt64(UInt16(value))
        case 5: bits = UInt64(UInt32(value))
        case 6: bits = UInt64(Float(value).bitPattern)
        case 7: bits = value.bitPattern
        case 8, 10: bits = UInt64(UInt8(value))
        case 9: bits = UInt64(UInt8(bitPattern: Int8(value)))
        case 11: bits = UInt64(bitPattern: Int64(value))
        default: bits = UInt64(value)
        }
        let n = DMTestWriter.size(type)
        return (0..<n).map { k in UInt8(truncatingIfNeeded: bits >> UInt64(8 * (littleEndian ? k : n - 1 - k))) }
    }

    private mutating func be(_ v: UInt64, _ size: Int, field: Bool = false) {
        if field { fields.append(FuzzField(offset: out.count, size: size, bigEndian: true)) }
        for k in 0..<size { out.append(UInt8(truncatingIfNeeded: v >> UInt64(8 * (size - 1 - k)))) }
    }

    private mutating func count(_ v: Int, field: Bool = true) { be(UInt64(v), version == 4 ? 8 : 4, field: field) }

    /// The whole file for a root group holding `tags`.
    mutating func file(_ tags: [Tag]) -> [UInt8] {
        out = []; fields = []
        be(UInt64(version), 4)
        let rootLengthAt = out.count
        count(0, field: true)
        be(littleEndian ? 1 : 0, 4)
        out += [1, 0]
        count(tags.count)
        for t in tags { tag(t) }
        out += [UInt8](repeating: 0, count: version == 4 ? 16 : 8)
        let rootLength = UInt64(out.count - rootLengthAt)
        let n = version == 4 ? 8 : 4
        for k in 0..<n { out[rootLengthAt + k] = UInt8(truncatingIfNeeded: rootLength >> UInt64(8 * (n - 1 - k))) }
        return out
    }

    private mutating func tag(_ t: Tag) {
        let name: String
        switch t {
        case .group(let s, _), .number(let s, _, _), .array(let s, _, _, _), .text(let s, _), .string(let s, _),
             .structure(let s, _, _), .structArray(let s, _, _, _): name = s
        }
        let nameBytes = name.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) }
        if case .group = t { out.append(20) } else { out.append(21) }
        be(UInt64(nameBytes.count), 2, field: true)
        out += nameBytes
        var sizeAt = -1
        if version == 4 { sizeAt = out.count; be(0, 8, field: true) }
        let bodyStart = out.count
        switch t {
        case .group(_, let children):
            out += [0, 0]
            count(children.count)
            for c in children { tag(c) }
        case .number(_, let type, let value):
            info([type])
            fields.append(FuzzField(offset: out.count, size: DMTestWriter.size(type), bigEndian: !littleEndian))
            out += encode(type, value)
        case .array(_, let type, let n, let raw):
            info([20, type, UInt64(n)]); out += raw
        case .text(_, let s):
            let units = Array(s.utf16)
            info([20, 4, UInt64(units.count)])
            for u in units { out += encode(4, Double(u)) }
        case .string(_, let s):
            let units = Array(s.utf16)
            info([18, UInt64(units.count)])
            for u in units { out += encode(4, Double(u)) }
        case .structure(_, let types, let values):
            info([15, 0, UInt64(types.count)] + types.flatMap { [0, $0] })
            for (ty, v) in zip(types, values) { out += encode(ty, v) }
        case .structArray(_, let types, let n, let raw):
            info([20, 15, 0, UInt64(types.count)] + types.flatMap { [0, $0] } + [UInt64(n)])
            out += raw
        }
        if sizeAt >= 0 {
            let size = UInt64(out.count - bodyStart)
            for k in 0..<8 { out[sizeAt + k] = UInt8(truncatingIfNeeded: size >> UInt64(8 * (7 - k))) }
        }
    }

    private mutating func info(_ entries: [UInt64]) {
        out += Array("%%%%".utf8)
        count(entries.count)
        for e in entries { count(Int(e)) }
    }
}

/// A test image in DM terms: what to write and what the reader must return.
struct DMTestImage {
    var dataType: Int
    /// DM scalar type of the Data array elements (nil: a struct array of two float32/float64 = complex).
    var elementType: UInt64?
    var type: PixelType
    var dims: [Int]
    var channels = 1
    /// Native little-endian pixel bytes the reader must return.
    var expected: [UInt8]
    /// Bytes stored in the file before byte-order conversion (LE); RGB stores 4 bytes a pixel.
    var storedLE: [UInt8]

    /// A deterministic image of `type` with values depending on the position.
    static func make(_ type: PixelType, dims: [Int]) -> DMTestImage {
        let n = dims.reduce(1, *)
        var le: [UInt8] = []
        func add<T>(_ v: T) { withUnsafeBytes(of: v) { le += $0 } }
        for i in 0..<n {
            let v = Double((i * 37) % 101) - 20
            switch type {
            case .int8: add(Int8(v))
            case .uint8: add(UInt8(v + 20))
            case .bool: add(UInt8(i % 3 == 0 ? 1 : 0))
            case .int16: add(Int16(v * 300))
            case .uint16: add(UInt16((v + 20) * 600))
            case .int32: add(Int32(v * 100_000))
            case .uint32: add(UInt32((v + 20) * 40_000_000))
            case .float32: add(Float(v) * 0.5)
            case .float64: add(v * 0.25)
            case .complex64: add(Float(v)); add(Float(i % 7))
            case .complex128: add(v); add(Double(i % 5))
            case .int64: add(Int64(v))
            case .uint64: add(UInt64(v + 20))
            case .float16: add(UInt16(0))
            }
        }
        let codes: [PixelType: (Int, UInt64?)] = [
            .int16: (1, 2), .float32: (2, 6), .complex64: (3, nil), .uint8: (6, 10), .int32: (7, 3),
            .int8: (9, 9), .uint16: (10, 4), .uint32: (11, 5), .float64: (12, 7), .complex128: (13, nil),
            .bool: (14, 8),
        ]
        let (code, element) = codes[type] ?? (0, 0)
        return DMTestImage(dataType: code, elementType: element, type: type, dims: dims, expected: le, storedLE: le)
    }

    /// An RGB image (DataType 23): stored as B, G, R, A bytes, returned as R, G, B.
    static func rgb(width: Int, height: Int) -> DMTestImage {
        var stored: [UInt8] = [], expected: [UInt8] = []
        for i in 0..<(width * height) {
            let r = UInt8(i % 251), g = UInt8((i * 3) % 256), b = UInt8(255 - i % 200)
            stored += [b, g, r, 255]; expected += [r, g, b]
        }
        return DMTestImage(dataType: 23, elementType: 5, type: .uint8, dims: [width, height], channels: 3,
                           expected: expected, storedLE: stored)
    }

    /// The Data tag for this image, in the writer's byte order.
    func dataTag(littleEndian: Bool) -> DMTestWriter.Tag {
        let sample: Int
        if let e = elementType { sample = DMTestWriter.size(e) } else { sample = type.byteCount / 2 }
        var raw = storedLE
        if !littleEndian { swapSampleBytes(&raw, sampleSize: sample) }
        if let e = elementType { return .array("Data", type: e, count: raw.count / sample, raw: raw) }
        let f: UInt64 = sample == 4 ? 6 : 7
        return .structArray("Data", types: [f, f], count: raw.count / (2 * sample), raw: raw)
    }
}

extension DMTestWriter {
    /// A DigitalMicrograph-like file: a thumbnail ImageList entry, `image` with calibration and
    /// metadata, and optionally a 1-D plot entry that the reader must skip.
    static func dmFile(version: Int, littleEndian: Bool, image: DMTestImage, scale: (Double, Double),
                       units: (String, String), withPlot: Bool = false) -> (bytes: [UInt8], fields: [FuzzField]) {
        typealias T = DMTestWriter.Tag
        func dimensions(_ d: [Int]) -> T { .group("Dimensions", d.map { .number("", type: 5, value: Double($0)) }) }
        func calibration(_ s: [(Double, String)]) -> T {
            .group("Calibrations", [
                .group("Brightness", [.number("Origin", type: 6, value: 0), .number("Scale", type: 6, value: 1), .text("Units", "")]),
                .group("Dimension", s.map { .group("", [.number("Origin", type: 6, value: 0),
                                                        .number("Scale", type: 6, value: $0.0), .text("Units", $0.1)]) }),
                .number("DisplayCalibratedUnits", type: 8, value: 1),
            ])
        }
        let thumbPixels = 8 * 8
        let thumb: T = .group("", [
            .group("ImageData", [
                calibration([(1, ""), (1, "")]),
                .array("Data", type: 3, count: thumbPixels, raw: [UInt8](repeating: 0x7F, count: thumbPixels * 4)),
                .number("DataType", type: 3, value: 23),
                dimensions([8, 8]),
                .number("PixelDepth", type: 3, value: 4),
            ]),
            .text("Name", "Thumbnail"),
        ])
        var w = DMTestWriter(version: version, littleEndian: littleEndian)
        var calib = [(scale.0, units.0), (scale.1, units.1)]
        for _ in 2..<max(2, image.dims.count) { calib.append((1, "")) }
        let main: T = .group("", [
            .group("ImageData", [
                calibration(calib),
                image.dataTag(littleEndian: littleEndian),
                .number("DataType", type: 3, value: Double(image.dataType)),
                dimensions(image.dims),
                .number("PixelDepth", type: 3, value: Double(image.type.byteCount)),
            ]),
            .group("ImageTags", [
                .group("DataBar", [.text("Acquisition Date", "8/8/2016"), .text("Acquisition Time", "4:26:37 PM"),
                                   .text("Device Name", "TestCam")]),
                .group("Microscope Info", [.number("Voltage", type: 7, value: 300_000),
                                           .number("Indicated Magnification", type: 6, value: 250_000),
                                           .text("Name", "Test Microscope"), .string("Operator", "tester")]),
                .structure("Tilt", types: [6, 6, 3], values: [0.5, -0.5, 2]),
                .number("Big", type: 11, value: -5), .number("Huge", type: 12, value: 7),
                .number("Flag", type: 8, value: 1), .number("Small", type: 9, value: -3),
            ]),
            .text("Name", "generated"),
        ])
        var entries: [T] = [thumb, main]
        if withPlot {
            let plot = DMTestImage.make(.float32, dims: [32])
            entries.append(.group("", [.group("ImageData", [
                calibration([(1, "eV")]), plot.dataTag(littleEndian: littleEndian),
                .number("DataType", type: 3, value: 2), dimensions([32]),
            ])]))
        }
        let bytes = w.file([
            .group("DocumentObjectList", [.group("", [.number("AnnotationType", type: 3, value: 20)])]),
            .group("ImageList", entries),
            .number("InImageMode", type: 8, value: 1),
        ])
        return (bytes, w.fields)
    }
}

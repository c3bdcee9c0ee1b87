import Foundation

/// Gatan DigitalMicrograph DM3 (version 3) and DM4 (version 4) files.
///
/// Every `ImageList` entry whose `ImageData` has two or more dimensions becomes a `Micrograph`,
/// except the thumbnail that DigitalMicrograph writes as the first entry of a multi-entry list.
/// `Dimensions[0]` is x (width), `[1]` is y (height), further dimensions are frames.
/// The calibration is `ImageData.Calibrations.Dimension.{0,1}.Scale/Units`; metadata comes from
/// `ImageTags` (`Microscope Info`, `DataBar`).
public enum DMReader {
    /// True when the bytes start like a DM3/DM4 header (version 3 or 4, byte-order flag 0 or 1).
    public static func isDM(_ bytes: [UInt8]) -> Bool {
        let r = ByteReader(bytes: bytes, file: "", bigEndian: true)
        guard let version = try? r.u32(at: 0, "version") else { return false }
        let orderOffset: Int
        switch version {
        case 3: orderOffset = 8
        case 4: orderOffset = 12
        default: return false
        }
        guard let order = try? r.u32(at: orderOffset, "byte order"), order <= 1,
              let sorted = try? r.u8(at: orderOffset + 4, "sorted"), sorted <= 1,
              let open = try? r.u8(at: orderOffset + 5, "open"), open <= 1 else { return false }
        return true
    }

    public static func read(_ url: URL) throws -> [Micrograph] {
        try parse(readFileBytes(url), url: url)
    }

    /// Parses DM bytes; `url` names the file in errors and becomes each image's `source`.
    public static func parse(_ bytes: [UInt8], url: URL) throws -> [Micrograph] {
        let file = url.path
        var parser = try DMTagParser(bytes: bytes, file: file)
        let root = try parser.parseRoot()
        let format = parser.version == 4 ? "dm4" : "dm3"
        guard let list = root["ImageList"]?.entries else {
            throw MicrographError(file: file, reason: "DM file has no ImageList tag group")
        }
        // The thumbnails are the entries the root's Thumbnails group names (ImageIndex), as
        // RosettaSciIO reads them; without that group, DigitalMicrograph's habit: the first of
        // several entries.
        let thumbnails: Set<Int>
        if let group = root["Thumbnails"]?.entries {
            thumbnails = Set(group.compactMap { $0.node["ImageIndex"]?.number.flatMap { $0.isFinite ? Int(exactly: $0.rounded()) : nil } })
        } else {
            thumbnails = list.count > 1 ? [0] : []
        }
        var images: [Micrograph] = []
        var spectra = 0
        for (index, entry) in list.enumerated() where !thumbnails.contains(index) {
            // Spectra and spectrum images (EELS, EDS) are not micrographs.
            let kind = parser.text(entry.node.at("ImageTags", "Meta Data", "Format"))?.lowercased() ?? ""
            if kind == "spectrum" || kind == "spectrum image" || entry.node.at("ImageTags", "spim") != nil { spectra += 1; continue }
            if let m = try image(entry.node, index: index, parser: parser, bytes: bytes, url: url, format: format) {
                images.append(m)
            }
        }
        guard !images.isEmpty else {
            if spectra > 0 { throw MicrographError(file: file, reason: "DM file holds spectra or a spectrum image (EELS, EDS), not a micrograph") }
            throw MicrographError(file: file, reason: "DM file holds no 2-D image (ImageList has \(list.count) entries)")
        }
        return images
    }

    /// Pixel type of an `ImageData.DataType` code, and whether it is RGB (4 bytes per pixel: B, G, R, A).
    static func pixelType(_ code: Int) -> (PixelType, rgb: Bool)? {
        switch code {
        case 1: return (.int16, false)
        case 2: return (.float32, false)
        case 3: return (.complex64, false)
        case 6: return (.uint8, false)
        case 7: return (.int32, false)
        case 9: return (.int8, false)
        case 10: return (.uint16, false)
        case 11: return (.uint32, false)
        case 12: return (.float64, false)
        case 13: return (.complex128, false)
        case 14: return (.bool, false)
        case 8, 23: return (.uint8, true)
        default: return nil
        }
    }

    static func image(_ node: DMNode, index: Int, parser: DMTagParser, bytes: [UInt8], url: URL,
                      format: String) throws -> Micrograph? {
        let file = url.path
        let label = "ImageList[\(index)].ImageData"
        func fail(_ reason: String) -> MicrographError { MicrographError(file: file, reason: "\(label): \(reason)") }
        guard let imageData = node["ImageData"], let dimsNode = imageData["Dimensions"]?.entries else { return nil }
        var dims: [Int] = []
        for d in dimsNode {
            guard let v = d.node.number, v.isFinite, v >= 1, v <= Double(Int32.max), v == v.rounded() else {
                throw fail("Dimensions has an invalid entry \(d.node.number.map { "\($0)" } ?? "(not a number)")")
            }
            dims.append(Int(v))
        }
        guard dims.count >= 2 else { return nil }  // 1-D plots and spectra are not images
        guard let codeValue = imageData["DataType"]?.number, codeValue.isFinite, abs(codeValue) < 1e6 else {
            throw fail("missing or invalid DataType")
        }
        let code = Int(codeValue)
        guard let (type, rgb) = pixelType(code) else { throw fail("unsupported DataType \(code)") }
        var pixels = 1
        for d in dims {
            let (m, o) = pixels.multipliedReportingOverflow(by: d)
            guard !o else { throw fail("Dimensions \(dims) overflow") }
            pixels = m
        }
        let storedBytesPerPixel = rgb ? 4 : type.byteCount
        let (needed, o) = pixels.multipliedReportingOverflow(by: storedBytesPerPixel)
        guard !o else { throw fail("Dimensions \(dims) overflow") }

        let dataOffset: Int, dataBytes: Int, sampleSize: Int
        switch imageData["Data"]?.value {
        case .array(let a)?:
            dataOffset = a.offset; dataBytes = a.byteCount; sampleSize = a.type.size
        case .structArray(let fields, let offset, let count)?:
            let size = fields.reduce(0) { $0 + $1.size }
            dataOffset = offset; dataBytes = size * count; sampleSize = fields.first?.size ?? 1
        default:
            throw fail("missing Data array")
        }
        guard dataBytes == needed else {
            throw fail("Data holds \(dataBytes) bytes but Dimensions \(dims) of DataType \(code) need \(needed)")
        }
        guard dataOffset >= 0, dataOffset <= bytes.count - needed else {
            throw fail("Data at offset \(dataOffset) runs past the end of the file")
        }
        var data = [UInt8](bytes[dataOffset..<(dataOffset + needed)])
        if !parser.dataLittleEndian { swapSampleBytes(&data, sampleSize: sampleSize) }
        var channels = 1
        if rgb {
            // Stored as 32-bit B, G, R, A little-endian words: keep R, G, B.
            var out = [UInt8](repeating: 0, count: pixels * 3)
            for p in 0..<pixels {
                out[3 * p] = data[4 * p + 2]; out[3 * p + 1] = data[4 * p + 1]; out[3 * p + 2] = data[4 * p]
            }
            data = out
            channels = 3
        } else if type == .bool {
            for i in data.indices where data[i] > 1 { data[i] = 1 }
        }

        let width = dims[0], height = dims[1]
        let frames = pixels / (width * height)
        let (pixelSize, stored) = calibration(imageData, parser: parser)
        let tags = node["ImageTags"]
        var meta = MicrographMetadata()
        let info = tags?["Microscope Info"]
        if let v = info?["Voltage"]?.number, v.isFinite, v > 0 { meta.voltageKV = v / 1000 }
        if let m = info?["Indicated Magnification"]?.number ?? info?["Actual Magnification"]?.number,
           m.isFinite, m > 0 {
            meta.magnification = m
        }
        meta.microscope = nonEmpty(parser.text(info?["Name"])) ?? nonEmpty(parser.text(info?["Microscope"]))
        meta.mode = nonEmpty(parser.text(info?["Imaging Mode"]))
        let bar = tags?["DataBar"]
        let date = [parser.text(bar?["Acquisition Date"]), parser.text(bar?["Acquisition Time"])]
            .compactMap { nonEmpty($0) }
        if !date.isEmpty { meta.acquisitionDate = date.joined(separator: " ") }
        meta.detector = nonEmpty(parser.text(bar?["Device Name"]))
        if let title = nonEmpty(parser.text(node["Name"])) { meta.extra["title"] = title }
        meta.extra["dm_data_type"] = String(code)
        meta.extra["dm_image_list_index"] = String(index)
        return Micrograph(width: width, height: height, frames: frames, channels: channels,
                          pixelType: type, data: data, pixelSize: pixelSize, storedCalibration: stored,
                          format: format, metadata: meta, source: url)
    }

    static func nonEmpty(_ s: String?) -> String? {
        guard let t = s?.trimmingCharacters(in: .whitespacesAndNewlines), !t.isEmpty else { return nil }
        return t
    }

    /// The x/y calibration as stored, and in nm when both axes are real-space lengths.
    static func calibration(_ imageData: DMNode, parser: DMTagParser) -> (PixelSize?, StoredCalibration?) {
        guard let dims = imageData.at("Calibrations", "Dimension")?.entries, dims.count >= 2 else { return (nil, nil) }
        func axis(_ i: Int) -> (Double, String)? {
            guard let scale = dims[i].node["Scale"]?.number, scale.isFinite, scale > 0,
                  let unit = nonEmpty(parser.text(dims[i].node["Units"])) else { return nil }
            return (scale, unit)
        }
        guard let x = axis(0), let y = axis(1) else { return (nil, nil) }
        let stored = StoredCalibration(x: x.0, y: y.0, unitX: x.1, unitY: y.1)
        guard let fx = LengthUnit.nanometres(per: x.1), let fy = LengthUnit.nanometres(per: y.1) else { return (nil, stored) }
        return (PixelSize(x: x.0 * fx, y: y.0 * fy), stored)
    }
}

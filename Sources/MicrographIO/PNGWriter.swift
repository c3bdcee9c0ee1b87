import CPNG
import Foundation

/// Writes 8/16-bit grey PNGs (masks, label images), 8-bit RGB PNGs (plots) and palette PNGs
/// (overlays), atomically.
public enum PNGWriter {
    public static func write(_ image: Micrograph, to url: URL) throws {
        try writeAtomically(encode(image, file: url.path), to: url)
    }

    /// Writes an 8-bit grey image (row-major `width × height` bytes).
    public static func writeGrey8(_ pixels: [UInt8], width: Int, height: Int, to url: URL) throws {
        try write(Micrograph(width: width, height: height, pixelType: .uint8, data: pixels, format: "png"), to: url)
    }

    /// Writes an 8-bit RGB image (row-major, R G B interleaved).
    public static func writeRGB8(_ pixels: [UInt8], width: Int, height: Int, to url: URL) throws {
        try write(Micrograph(width: width, height: height, channels: 3, pixelType: .uint8, data: pixels, format: "png"), to: url)
    }

    /// Writes 8-bit palette indices (row-major `width × height` bytes) with up to 256 RGB
    /// palette entries (every index must name one).
    public static func writeIndexed(_ indices: [UInt8], width: Int, height: Int, palette: [(UInt8, UInt8, UInt8)],
                                    to url: URL) throws {
        try writeAtomically(encodeIndexed(indices, width: width, height: height, palette: palette, file: url.path), to: url)
    }

    /// A palette PNG, its rows unfiltered and coded as literals (`RunDeflater.literals`).
    public static func encodeIndexed(_ indices: [UInt8], width: Int, height: Int, palette: [(UInt8, UInt8, UInt8)],
                                     file: String = "") throws -> [UInt8] {
        let fail = { (reason: String) in MicrographError(file: file, reason: reason) }
        guard width > 0, height > 0, width <= 1_000_000, height <= 1_000_000, indices.count == width * height else {
            throw fail("PNG size \(width)×\(height) is out of range or does not match \(indices.count) indices")
        }
        guard (1...256).contains(palette.count), palette.count == 256 || indices.allSatisfy({ Int($0) < palette.count }) else {
            throw fail("palette of \(palette.count) entries does not cover every index")
        }
        // Rows unfiltered (filter byte 0), as literals in a code fitted to them
        // (`RunDeflater.literals`): an overlay's grey levels seldom repeat along a row.
        let rows = [UInt8](unsafeUninitializedCapacity: height * (width + 1)) { out, count in
            indices.withUnsafeBufferPointer { src in
                for y in 0..<height {
                    let row = out.baseAddress! + y * (width + 1)
                    row.initialize(to: 0)  // filter: none
                    (row + 1).initialize(from: src.baseAddress! + y * width, count: width)
                }
            }
            count = height * (width + 1)
        }
        let stream = rows.withUnsafeBytes { RunDeflater.literals($0) }
        let rgb = palette.flatMap { [$0.0, $0.1, $0.2] }
        return try encoded(fail) { io in
            rgb.withUnsafeBufferPointer { p in
                stream.withUnsafeBufferPointer {
                    nf_png_encode_stream(UInt32(width), UInt32(height), PNG_COLOR_TYPE_PALETTE, 8, p.baseAddress, Int32(palette.count),
                                         $0.baseAddress, $0.count, &io)
                }
            }
        }
    }

    /// The file a shim encoder made (`encode` returns its status), or its message as the error.
    static func encoded(_ fail: (String) -> MicrographError, _ encode: (inout nf_png_io) -> Int32) throws -> [UInt8] {
        var io = nf_png_io()
        let status = encode(&io)
        guard status == 0, let out = io.output else {
            let reason = withUnsafeBytes(of: io.message) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
            throw fail("PNG cannot be encoded (\(reason))")
        }
        defer { nf_png_free(out) }
        return [UInt8](UnsafeBufferPointer(start: out, count: io.output_size))
    }

    public static func encode(_ image: Micrograph, file: String = "") throws -> [UInt8] {
        let fail = { (reason: String) in MicrographError(file: file, reason: reason) }
        guard image.frames == 1 else { throw fail("PNG holds one frame; this image has \(image.frames)") }
        guard image.channels == 1 || image.channels == 3 else { throw fail("PNG writer takes 1 or 3 channels, not \(image.channels)") }
        let depth: Int32
        switch image.pixelType {
        case .uint8, .bool: depth = 8
        case .uint16: depth = 16
        default: throw fail("PNG stores uint8 or uint16 samples, not \(image.pixelType.rawValue)")
        }
        guard image.width > 0, image.height > 0, image.width <= 1_000_000, image.height <= 1_000_000 else {
            throw fail("PNG size \(image.width)×\(image.height) is out of range")
        }
        if image.channels == 3 {
            return try encoded(fail) { io in
                image.data.withUnsafeBufferPointer { nf_png_encode_rgb($0.baseAddress, UInt32(image.width), UInt32(image.height), depth, &io) }
            }
        }
        // Grey: masks and label images, long runs of one value (`RunDeflater`). 8-bit rows go
        // unfiltered (filter byte 0: a mask's runs of 0 and 255 stay runs). 16-bit samples are
        // stored big-endian, so a run of one label k is 00 k 00 k … with no run of bytes: those
        // rows take the SUB filter (1), each byte minus the one two before it, which turns a run
        // of one value into zeros.
        let rowBytes = image.width * Int(depth / 8)
        var deflater = RunDeflater()
        image.data.withUnsafeBytes { data in
            var filtered = [UInt8](repeating: 0, count: depth == 16 ? rowBytes : 0)
            for y in 0..<image.height {
                let row = UnsafeRawBufferPointer(rebasing: data[(y * rowBytes)..<((y + 1) * rowBytes)])
                if depth == 8 {
                    deflater.feed(repeating: 0, count: 1)
                    deflater.feed(row)
                } else {
                    deflater.feed(repeating: 1, count: 1)
                    func bigEndian(_ i: Int) -> UInt8 { i < 0 ? 0 : row[i ^ 1] }  // byte i of the big-endian row
                    for i in 0..<rowBytes { filtered[i] = bigEndian(i) &- bigEndian(i - 2) }
                    filtered.withUnsafeBytes { deflater.feed($0) }
                }
            }
        }
        let stream = deflater.finish()
        return try encoded(fail) { io in
            stream.withUnsafeBufferPointer {
                nf_png_encode_stream(UInt32(image.width), UInt32(image.height), PNG_COLOR_TYPE_GRAY, depth, nil, 0, $0.baseAddress, $0.count, &io)
            }
        }
    }
}

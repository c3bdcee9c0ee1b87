import CPNG
import Foundation

/// PNG through libpng: 1–16-bit grey becomes uint8 or uint16 (16-bit samples, big-endian in the
/// file, become native little-endian); palette and RGB become 3-channel RGB; alpha is dropped.
/// PNG has no calibration. libpng's errors are caught in C (see CPNG/shim.h) and become a
/// `MicrographError`; the decoded size is checked against the file size before allocation.
public enum PNGReader {
    /// Deflate expands at most about 1032:1; a larger claimed image cannot be in the file.
    public static let maxCompressionRatio = 1100

    public static func read(_ url: URL) throws -> Micrograph {
        try parse(readFileBytes(url), url: url)
    }

    public static func parse(_ bytes: [UInt8], url: URL) throws -> Micrograph {
        let file = url.path
        let (limit, overflow) = bytes.count.multipliedReportingOverflow(by: maxCompressionRatio)
        let maxBytes = overflow ? Int.max : limit + (1 << 20)
        var image = nf_png_image()
        var io = nf_png_io()
        let status = bytes.withUnsafeBufferPointer { buf in
            nf_png_decode(buf.baseAddress, buf.count, maxBytes, &image, &io)
        }
        guard status == 0, let pixels = image.pixels else {
            let reason = withUnsafeBytes(of: io.message) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
            throw MicrographError(file: file, reason: "PNG cannot be decoded (\(reason.isEmpty ? "libpng gave no reason" : reason))")
        }
        defer { nf_png_free(pixels) }
        let data = [UInt8](UnsafeBufferPointer(start: pixels, count: image.size))
        let type: PixelType = image.bit_depth == 16 ? .uint16 : .uint8
        let width = Int(image.width), height = Int(image.height), channels = Int(image.channels)
        guard width * height * channels * type.byteCount == data.count else {
            throw MicrographError(file: file, reason: "PNG decoded to \(data.count) bytes, expected \(width)×\(height)×\(channels) \(type.rawValue)")
        }
        let colourTypes = [0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"]
        let metadata = MicrographMetadata(extra: [
            "png_colour_type": colourTypes[Int(image.color_type)] ?? String(image.color_type),
            "png_bit_depth": String(image.stored_bit_depth),
        ])
        return Micrograph(width: width, height: height, channels: channels, pixelType: type, data: data,
                          format: "png", metadata: metadata, source: url)
    }
}

import CPNG
import Foundation

/// Writes 8/16-bit grey PNGs (masks, label images) and 8-bit RGB PNGs (overlays), atomically.
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
        var io = nf_png_io()
        let status = image.data.withUnsafeBufferPointer { buf in
            nf_png_encode(buf.baseAddress, UInt32(image.width), UInt32(image.height), Int32(image.channels), depth, &io)
        }
        guard status == 0, let out = io.output else {
            let reason = withUnsafeBytes(of: io.message) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
            throw fail("PNG cannot be encoded (\(reason))")
        }
        defer { nf_png_free(out) }
        return [UInt8](UnsafeBufferPointer(start: out, count: io.output_size))
    }
}

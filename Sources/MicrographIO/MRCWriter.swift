import Foundation

/// Writes MRC2014 files: mode 0 (int8), 1 (int16), 2 (float32), 4 (complex64), 6 (uint16) and
/// 12 (float16), little-endian, frames as an image stack (ispg 0). cella comes from the pixel
/// size (Å), or is 0 for an uncalibrated image; dmin, dmax, dmean and rms describe the whole
/// stack. The write is atomic.
public enum MRCWriter {
    public static func mode(for type: PixelType) -> Int? {
        switch type {
        case .int8: return 0
        case .int16: return 1
        case .float32: return 2
        case .complex64: return 4
        case .uint16: return 6
        case .float16: return 12
        default: return nil
        }
    }

    public static func write(_ image: Micrograph, to url: URL) throws {
        try writeAtomically(encode(image, file: url.path), to: url)
    }

    /// The complete file as bytes.
    public static func encode(_ image: Micrograph, file: String = "") throws -> [UInt8] {
        guard let mode = mode(for: image.pixelType) else {
            throw MicrographError(file: file, reason: "pixel type \(image.pixelType.rawValue) has no MRC2014 mode (use int8, int16, uint16, float16, float32 or complex64)")
        }
        guard image.channels == 1 else {
            throw MicrographError(file: file, reason: "MRC holds one channel; this image has \(image.channels)")
        }
        guard image.width <= Int(Int32.max), image.height <= Int(Int32.max), image.frames <= Int(Int32.max) else {
            throw MicrographError(file: file, reason: "image is too large for an MRC header")
        }
        var header = [UInt8](repeating: 0, count: MRCHeader.size)
        func putI32(_ word: Int, _ v: Int32) {
            let u = UInt32(bitPattern: v)
            for k in 0..<4 { header[4 * word + k] = UInt8((u >> (8 * UInt32(k))) & 0xff) }
        }
        func putF32(_ word: Int, _ v: Float) { putI32(word, Int32(bitPattern: v.bitPattern)) }
        putI32(0, Int32(image.width)); putI32(1, Int32(image.height)); putI32(2, Int32(image.frames))
        putI32(3, Int32(mode))
        putI32(7, Int32(image.width)); putI32(8, Int32(image.height)); putI32(9, 1)
        if let p = image.pixelSize {
            putF32(10, Float(p.x * 10 * Double(image.width)))
            putF32(11, Float(p.y * 10 * Double(image.height)))
            putF32(12, Float(p.x * 10))
        }
        putF32(13, 90); putF32(14, 90); putF32(15, 90)
        putI32(16, 1); putI32(17, 2); putI32(18, 3)
        // dmin, dmax, dmean and rms of the whole stack, not of its first frame. A stack with no
        // finite value gets MRC2014's "not determined": dmax < dmin, dmean below both, rms < 0.
        let computed = image.stackStatistics()
        let stats = computed.rms.isFinite ? computed : (min: 0, max: -1, mean: -2, rms: -1)
        putF32(19, Float(stats.min)); putF32(20, Float(stats.max)); putF32(21, Float(stats.mean))
        putI32(22, 0)  // ispg 0: image stack
        putI32(27, 20141)  // nversion
        for (k, c) in "MAP ".utf8.enumerated() { header[208 + k] = c }
        header[212] = 0x44; header[213] = 0x44
        putF32(54, Float(stats.rms))
        putI32(55, 1)
        for (k, c) in "NanoFind".utf8.enumerated() { header[224 + k] = c }
        return header + image.data
    }
}

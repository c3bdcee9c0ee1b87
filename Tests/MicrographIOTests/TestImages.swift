import Foundation
import MicrographIO

/// Small deterministic images of every type the writers take, for round trips and fuzz seeds.
enum TestImages {
    /// Little-endian bytes of `count` samples of `type`, a varied ramp with negative values for
    /// signed types.
    static func samples(_ type: PixelType, count: Int, seed: Int = 1) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(count * type.byteCount)
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        for i in 0..<count {
            let v = (i * 37 + seed * 101) % 251
            switch type {
            case .uint8, .bool: out.append(UInt8(v))
            case .int8: out.append(UInt8(bitPattern: Int8(v - 125)))
            case .uint16: put(UInt16(v * 250 + i % 7))
            case .int16: put(Int16(v * 100 - 12_000))
            case .uint32: put(UInt32(v) * 65_537)
            case .int32: put(Int32(v * 1_000 - 120_000))
            case .uint64: put(UInt64(v) << 33)
            case .int64: put(Int64(v) * -1_000_000_007)
            case .float16: put(UInt16(0x3C00 + v))  // 1.0 … 1.25
            case .float32: put(Float(Double(v) / 7 - 11).bitPattern)
            case .float64: put((Double(v) / 3 - 40).bitPattern)
            case .complex64: put(Float(v).bitPattern); put(Float(-v).bitPattern)
            case .complex128: put(Double(v).bitPattern); put(Double(i).bitPattern)
            }
        }
        return out
    }

    static func image(_ type: PixelType, width: Int = 13, height: Int = 7, frames: Int = 1, channels: Int = 1,
                      pixelSizeNM: Double? = 0.04336, format: String = "test") -> Micrograph {
        Micrograph(width: width, height: height, frames: frames, channels: channels, pixelType: type,
                   data: samples(type, count: width * height * frames * channels),
                   pixelSize: pixelSizeNM.map { PixelSize(isotropic: $0) }, format: format)
    }
}

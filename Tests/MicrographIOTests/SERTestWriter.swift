import Foundation
import MicrographIO

/// A small TIA .ser writer for tests (little-endian, one "Number" dimension, time tags). Rows are
/// written bottom-up as TIA does. Records the structural fields for the fuzz tests.
enum SERTestWriter {
    struct Output {
        var bytes: [UInt8]
        var fields: [FuzzField]
        /// Offsets of the header, the offset array and every element (for self-references).
        var offsets: [UInt64]
    }

    /// `frames` are native LE pixels, top row first, each `width × height` samples of `code`'s type.
    static func write(version: UInt16 = 0x0210, dataTypeID: UInt32 = 0x4122, code: UInt16, type: PixelType,
                      width: Int, height: Int, frames: [[UInt8]], delta: (Double, Double)) -> Output {
        var b: [UInt8] = []
        var fields: [FuzzField] = []
        func le<T: FixedWidthInteger>(_ v: T, field: Bool = false) {
            if field { fields.append(FuzzField(offset: b.count, size: MemoryLayout<T>.size, bigEndian: false)) }
            withUnsafeBytes(of: v.littleEndian) { b += $0 }
        }
        func f64(_ v: Double, field: Bool = false) { le(v.bitPattern, field: field) }
        let wide = version >= 0x0220
        let n = frames.count
        le(UInt16(0x4949)); le(UInt16(0x0197)); le(version, field: true)
        le(dataTypeID, field: true); le(UInt32(0x4152), field: true)
        le(UInt32(n), field: true); le(UInt32(n), field: true)
        let offsetArrayAt = b.count
        if wide { le(UInt64(0), field: true) } else { le(UInt32(0), field: true) }
        le(UInt32(1), field: true)  // NumberDimensions
        le(UInt32(n), field: true); f64(0); f64(1); le(Int32(0))
        le(UInt32(6), field: true); b += Array("Number".utf8); le(UInt32(0), field: true)
        let arrayStart = b.count
        // Patch OffsetArrayOffset.
        for k in 0..<(wide ? 8 : 4) { b[offsetArrayAt + k] = UInt8(truncatingIfNeeded: UInt64(arrayStart) >> UInt64(8 * k)) }
        let slot = wide ? 8 : 4
        let dataOffsetsAt = b.count
        for _ in 0..<(2 * n) { if wide { le(UInt64(0), field: true) } else { le(UInt32(0), field: true) } }
        var offsets: [UInt64] = [0, UInt64(arrayStart)]
        func patch(_ at: Int, _ v: Int) {
            for k in 0..<slot { b[at + k] = UInt8(truncatingIfNeeded: UInt64(v) >> UInt64(8 * k)) }
        }
        let rowBytes = width * type.byteCount
        for (i, frame) in frames.enumerated() {
            patch(dataOffsetsAt + i * slot, b.count)
            offsets.append(UInt64(b.count))
            f64(-1e-7); f64(delta.0, field: true); le(Int32(0))
            f64(-1e-7); f64(delta.1, field: true); le(Int32(0))
            le(code, field: true); le(UInt32(width), field: true); le(UInt32(height), field: true)
            for y in stride(from: height - 1, through: 0, by: -1) { b += frame[(y * rowBytes)..<((y + 1) * rowBytes)] }
        }
        for i in 0..<n {
            patch(dataOffsetsAt + (n + i) * slot, b.count)
            le(UInt16(0x4152)); le(UInt16(0)); le(UInt32(1_456_000_000 + i))
        }
        offsets.append(UInt64(b.count))
        return Output(bytes: b, fields: fields, offsets: offsets)
    }

    /// Deterministic frames of `type` (native LE, top row first).
    static func frames(_ type: PixelType, width: Int, height: Int, count: Int) -> [[UInt8]] {
        let all = DMTestImage.make(type, dims: [width, height * count]).expected
        let n = width * height * type.byteCount
        return (0..<count).map { f in Array(all[(f * n)..<((f + 1) * n)]) }
    }

    /// The TIA code of a pixel type.
    static func code(_ t: PixelType) -> UInt16 {
        let codes: [PixelType: UInt16] = [.uint8: 1, .uint16: 2, .uint32: 3, .int8: 4, .int16: 5, .int32: 6,
                                          .float32: 7, .float64: 8, .complex64: 9, .complex128: 10]
        return codes[t] ?? 0
    }

    /// An .emi-like file: binary padding around the ObjectInfo text TIA writes.
    static func emi(mode: String, camera: String?, voltage: String = "200000", magnification: String? = "19500") -> [UInt8] {
        var text = "<ObjectInfo><ExperimentalConditions><MicroscopeConditions><AcceleratingVoltage>\(voltage)"
        text += "</AcceleratingVoltage></MicroscopeConditions></ExperimentalConditions><ExperimentalDescription><Root>"
        text += "<Data><Label>Microscope</Label><Value>Test TEM 200 kV</Value><Unit></Unit></Data>"
        text += "<Data><Label>Mode</Label><Value> \(mode)</Value><Unit></Unit></Data>"
        if let magnification { text += "<Data><Label>Magnification</Label><Value>\(magnification)</Value><Unit>x</Unit></Data>" }
        text += "</Root></ExperimentalDescription><AcquireDate>Sun Feb 21 17:50:18 2016</AcquireDate><AcquireInfo>"
        if let camera { text += "<CameraNamePath>\(camera)</CameraNamePath>" }
        text += "</AcquireInfo></ObjectInfo>"
        return [UInt8](repeating: 0xAB, count: 64) + Array(text.utf8) + [0, 0, 0, 1]
    }
}

import Crypto
import Foundation

/// Pixel values as numbers, frame statistics and the frame checksum, defined the way the
/// reference corpus (`expected.json`) defines them: complex samples count as their modulus,
/// RGB samples as grey = 0.299 R + 0.587 G + 0.114 B, and statistics are computed in Double.
extension Micrograph {
    /// One frame as Float values, one per pixel (row-major). RGB becomes grey, complex its modulus.
    /// `parallel(count, piece)` runs `piece(0 ..< count)`, side by side if it will: a grey frame
    /// is decoded in up to 8 pieces (the same values however they run).
    public func floatFrame(_ i: Int, parallel: (_ count: Int, _ piece: (Int) -> Void) -> Void = { n, piece in for k in 0..<n { piece(k) } }) -> [Float] {
        directFloatFrame(i, parallel: parallel) ?? doubleFrame(i).map { Float($0) }
    }

    /// One grey frame of a type whose values a Float holds after one rounding (as through
    /// Double), decoded straight to Float: no Double copy of a large frame. Nil for the others.
    func directFloatFrame(_ i: Int, parallel: (_ count: Int, _ piece: (Int) -> Void) -> Void = { n, piece in for k in 0..<n { piece(k) } }) -> [Float]? {
        guard channels == 1 else { return nil }
        switch pixelType {
        case .int64, .uint64, .complex64, .complex128: return nil
        default: break
        }
        let n = samplesPerFrame, parts = max(1, min(8, n >> 18)), type = pixelType
        return frameBytes(i).withUnsafeBytes { raw in
            [Float](unsafeUninitializedCapacity: n) { out, count in
                parallel(parts) { part in
                    Self.decode(raw, type, from: part * n / parts, to: (part + 1) * n / parts, into: out.baseAddress!)
                }
                count = n
            }
        }
    }

    /// Samples a ..< b of grey `raw` data of `type` (one of those `directFloatFrame` takes) as Float.
    private static func decode(_ raw: UnsafeRawBufferPointer, _ type: PixelType, from a: Int, to b: Int, into out: UnsafeMutablePointer<Float>) {
        // Through the raw pointer (the frame holds every sample, as `Micrograph` guarantees):
        // loops with no checks in them, which the compiler vectorises.
        guard b > a, let p = raw.baseAddress else { return }
        precondition(b * type.byteCount <= raw.count)
        @inline(__always) func each(_ value: (Int) -> Float) { for k in a..<b { out[k] = value(k) } }
        switch type {
        case .int8: each { Float(p.loadUnaligned(fromByteOffset: $0, as: Int8.self)) }
        case .uint8: each { Float(p.loadUnaligned(fromByteOffset: $0, as: UInt8.self)) }
        case .bool: each { p.loadUnaligned(fromByteOffset: $0, as: UInt8.self) != 0 ? 1 : 0 }
        case .int16: each { Float(Int16(littleEndian: p.loadUnaligned(fromByteOffset: 2 &* $0, as: Int16.self))) }
        case .uint16: each { Float(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2 &* $0, as: UInt16.self))) }
        case .int32: each { Float(Int32(littleEndian: p.loadUnaligned(fromByteOffset: 4 &* $0, as: Int32.self))) }
        case .uint32: each { Float(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 &* $0, as: UInt32.self))) }
        case .float16: each { halfToFloat(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2 &* $0, as: UInt16.self))) }
        case .float32: each { Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 &* $0, as: UInt32.self))) }
        case .float64: each { Float(Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8 &* $0, as: UInt64.self)))) }
        case .int64, .uint64, .complex64, .complex128: preconditionFailure("decode: \(type) is not decoded straight to Float")
        }
    }

    /// One frame as Double values, one per pixel (row-major). RGB becomes grey (not rounded),
    /// complex its modulus.
    public func doubleFrame(_ i: Int) -> [Double] {
        let samples = sampleValues(frame: i)
        switch channels {
        case 1:
            return samples
        case 3:
            var grey = [Double](repeating: 0, count: width * height)
            for p in 0..<grey.count {
                grey[p] = 0.299 * samples[3 * p] + 0.587 * samples[3 * p + 1] + 0.114 * samples[3 * p + 2]
            }
            return grey
        default:
            // Other channel counts: the mean of the channels.
            var out = [Double](repeating: 0, count: width * height)
            for p in 0..<out.count {
                var s = 0.0
                for c in 0..<channels { s += samples[channels * p + c] }
                out[p] = s / Double(channels)
            }
            return out
        }
    }

    /// Every sample of one frame (all channels interleaved) as Double; complex samples as |z|.
    public func sampleValues(frame: Int) -> [Double] {
        let bytes = frameBytes(frame)
        let n = samplesPerFrame
        var out = [Double](repeating: 0, count: n)
        bytes.withUnsafeBytes { raw in
            switch pixelType {
            case .int8: for k in 0..<n { out[k] = Double(raw.loadUnaligned(fromByteOffset: k, as: Int8.self)) }
            case .uint8: for k in 0..<n { out[k] = Double(raw[k]) }
            case .bool: for k in 0..<n { out[k] = raw[k] != 0 ? 1 : 0 }
            case .int16: for k in 0..<n { out[k] = Double(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * k, as: Int16.self))) }
            case .uint16: for k in 0..<n { out[k] = Double(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * k, as: UInt16.self))) }
            case .int32: for k in 0..<n { out[k] = Double(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * k, as: Int32.self))) }
            case .uint32: for k in 0..<n { out[k] = Double(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * k, as: UInt32.self))) }
            case .int64: for k in 0..<n { out[k] = Double(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * k, as: Int64.self))) }
            case .uint64: for k in 0..<n { out[k] = Double(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * k, as: UInt64.self))) }
            case .float16:
                for k in 0..<n {
                    let bits = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * k, as: UInt16.self))
                    out[k] = Double(halfToFloat(bits))
                }
            case .float32:
                for k in 0..<n {
                    out[k] = Double(Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * k, as: UInt32.self))))
                }
            case .float64:
                for k in 0..<n {
                    out[k] = Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * k, as: UInt64.self)))
                }
            case .complex64:
                for k in 0..<n {
                    let re = Double(Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * k, as: UInt32.self))))
                    let im = Double(Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * k + 4, as: UInt32.self))))
                    out[k] = (re * re + im * im).squareRoot()
                }
            case .complex128:
                for k in 0..<n {
                    let re = Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 16 * k, as: UInt64.self)))
                    let im = Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 16 * k + 8, as: UInt64.self)))
                    out[k] = (re * re + im * im).squareRoot()
                }
            }
        }
        return out
    }

    /// Minimum, maximum and mean of one frame in Double (mean summed in Double), of the values
    /// `doubleFrame` gives. NaN samples are skipped; a frame of only NaN gives NaN for all three.
    public func statistics(frame: Int = 0) -> (min: Double, max: Double, mean: Double) {
        let values = doubleFrame(frame)
        var lo = Double.infinity, hi = -Double.infinity, sum = 0.0, count = 0
        for v in values where !v.isNaN {
            if v < lo { lo = v }
            if v > hi { hi = v }
            sum += v
            count += 1
        }
        guard count > 0 else { return (.nan, .nan, .nan) }
        return (lo, hi, sum / Double(count))
    }

    /// Minimum, maximum, mean and RMS deviation from the mean over every frame (NaN and ±∞ left
    /// out, so that one bad frame does not make the header useless),
    /// as an MRC header records them for the whole stack: per-frame sums combined in Double
    /// (M2 = Σ M2ᵢ + Σ nᵢ (meanᵢ − mean)²), so no frame is read twice at once.
    public func stackStatistics() -> (min: Double, max: Double, mean: Double, rms: Double) {
        var lo = Double.infinity, hi = -Double.infinity
        var perFrame: [(n: Double, mean: Double, m2: Double)] = []
        for f in 0..<frames {
            let values = doubleFrame(f)
            var sum = 0.0, count = 0
            for v in values where v.isFinite {
                if v < lo { lo = v }
                if v > hi { hi = v }
                sum += v
                count += 1
            }
            guard count > 0 else { continue }
            let mean = sum / Double(count)
            var m2 = 0.0
            for v in values where v.isFinite { m2 += (v - mean) * (v - mean) }
            perFrame.append((Double(count), mean, m2))
        }
        let n = perFrame.reduce(0) { $0 + $1.n }
        guard n > 0 else { return (.nan, .nan, .nan, .nan) }
        let mean = perFrame.reduce(0) { $0 + $1.n * $1.mean } / n
        let m2 = perFrame.reduce(0) { $0 + $1.m2 + $1.n * ($1.mean - mean) * ($1.mean - mean) }
        return (lo, hi, mean, (m2 / n).squareRoot())
    }

    /// Hex SHA-256 of one frame's native little-endian bytes (RGB interleaved, complex as re, im).
    public func sha256(frame: Int = 0) -> String {
        hex(SHA256.hash(data: Data(frameBytes(frame))))
    }
}

/// IEEE 754 binary16 → Float, without relying on the platform's Float16 support.
func halfToFloat(_ h: UInt16) -> Float {
    let sign: UInt32 = UInt32(h & 0x8000) << 16
    let exponent = Int((h >> 10) & 0x1f)
    let mantissa = UInt32(h & 0x3ff)
    if exponent == 0 {
        // zero or subnormal: mantissa × 2^-24
        let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
        return sign != 0 ? -magnitude : magnitude
    }
    if exponent == 31 {
        return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13))
    }
    return Float(bitPattern: sign | (UInt32(exponent - 15 + 127) << 23) | (mantissa << 13))
}

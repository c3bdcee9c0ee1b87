import Foundation
import NanoTensor

/// Mutations draw from NanoTensor's SplitMix64, so every fuzz run mutates the same way.
typealias SeededRandom = SplitMix64

/// Ways to damage a valid file that every reader must survive.
enum FuzzMutations {
    /// Values that break size arithmetic: zero, one, sign bits, all ones, powers of two.
    static let extreme32: [UInt32] = [0, 1, 0xFFFF_FFFF, 0x7FFF_FFFF, 0x8000_0000, 0x8000_0001, 0xFFFF, 0x10000,
                                      0x0100_0000, 0xFFFF_FFFE, 0x4000_0000, 0x00FF_FFFF]

    static func truncate(_ b: inout [UInt8], at offset: Int) {
        b.removeSubrange(min(max(0, offset), b.count)...)
    }

    /// 1–8 random bytes (or single bits) changed within the first `window` bytes.
    static func flipBytes(_ b: inout [UInt8], window: Int = 1024, _ rng: inout SeededRandom) {
        guard !b.isEmpty else { return }
        let limit = min(window, b.count)
        for _ in 0..<Int.random(in: 1...8, using: &rng) {
            let at = Int.random(in: 0..<limit, using: &rng)
            if Bool.random(using: &rng) { b[at] ^= UInt8(1) << UInt8.random(in: 0...7, using: &rng) } else { b[at] = UInt8.random(in: 0...255, using: &rng) }
        }
    }

    static func put32(_ b: inout [UInt8], at: Int, _ v: UInt32, bigEndian: Bool) {
        guard at >= 0, at + 4 <= b.count else { return }
        for k in 0..<4 {
            let shift = bigEndian ? 8 * (3 - k) : 8 * k
            b[at + k] = UInt8((v >> UInt32(shift)) & 0xff)
        }
    }

    static func put16(_ b: inout [UInt8], at: Int, _ v: UInt16, bigEndian: Bool) {
        guard at >= 0, at + 2 <= b.count else { return }
        b[at] = UInt8(bigEndian ? v >> 8 : v & 0xff)
        b[at + 1] = UInt8(bigEndian ? v & 0xff : v >> 8)
    }

    /// An extreme 32-bit value at a random 2-aligned offset in the first `window` bytes.
    static func extremeField(_ b: inout [UInt8], window: Int = 1024, _ rng: inout SeededRandom) {
        guard b.count >= 4 else { return }
        let at = 2 * Int.random(in: 0...((min(window, b.count) - 4) / 2), using: &rng)
        let v = Bool.random(using: &rng) ? extreme32.randomElement(using: &rng)! : UInt32.random(in: 0...UInt32.max, using: &rng)
        put32(&b, at: at, v, bigEndian: Bool.random(using: &rng))
    }

    /// A copy of one region of the file written over another (splices structure into data).
    static func splice(_ b: inout [UInt8], _ rng: inout SeededRandom) {
        guard b.count >= 8 else { return }
        let length = Int.random(in: 1...min(64, b.count / 2), using: &rng)
        let from = Int.random(in: 0...(b.count - length), using: &rng)
        let to = Int.random(in: 0...(b.count - length), using: &rng)
        let chunk = Array(b[from..<(from + length)])
        b.replaceSubrange(to..<(to + length), with: chunk)
    }

    // MARK: PNG chunks

    static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func crc32(_ b: ArraySlice<UInt8>) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for x in b { c = crcTable[Int((c ^ UInt32(x)) & 0xff)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    /// Offsets of the PNG chunks that lie wholly in the file: (start of length field, data length).
    static func pngChunks(_ b: [UInt8]) -> [(at: Int, length: Int)] {
        var out: [(Int, Int)] = []
        var at = 8
        while at + 12 <= b.count {
            let length = Int(b[at]) << 24 | Int(b[at + 1]) << 16 | Int(b[at + 2]) << 8 | Int(b[at + 3])
            guard length <= b.count - at - 12 else { break }
            out.append((at, length))
            at += 12 + length
        }
        return out
    }

    /// Recomputes every chunk CRC, so the damage reaches the decoder instead of the CRC check.
    static func fixPNGCRCs(_ b: inout [UInt8]) {
        for (at, length) in pngChunks(b) {
            put32(&b, at: at + 8 + length, crc32(b[(at + 4)..<(at + 8 + length)]), bigEndian: true)
        }
    }
}

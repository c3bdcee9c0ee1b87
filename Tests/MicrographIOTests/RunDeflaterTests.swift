import CPNG
import Foundation
import MicrographIO
import NanoTensor
import XCTest

/// `RunDeflater` checked by zlib, an independent decoder: `uncompress` inflates the stream and
/// checks its Adler-32, so a wrong code, length, distance or checksum fails.
final class RunDeflaterTests: XCTestCase {
    func stream(_ bytes: [UInt8], pieces: [Int]? = nil) -> [UInt8] {
        var deflater = RunDeflater()
        bytes.withUnsafeBytes { all in
            var at = 0
            for size in pieces ?? [bytes.count] where at < bytes.count {
                let end = min(bytes.count, at + size)
                deflater.feed(UnsafeRawBufferPointer(rebasing: all[at..<end]))
                at = end
            }
            if at < bytes.count { deflater.feed(UnsafeRawBufferPointer(rebasing: all[at...])) }
        }
        return deflater.finish()
    }

    func inflated(_ stream: [UInt8], count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count + 1)  // room for one byte too many
        var length = uLongf(out.count)
        guard uncompress(&out, &length, stream, uLong(stream.count)) == Z_OK else { return nil }
        return Array(out[..<Int(length)])
    }

    /// zlib's own run-length deflate (level 1, `Z_RLE`), what the writers used before.
    func zlibRunLength(_ bytes: [UInt8]) -> Int {
        var z = z_stream()
        XCTAssertEqual(deflateInit2_(&z, 1, Z_DEFLATED, 15, 8, Z_RLE, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)), Z_OK)
        var out = [UInt8](repeating: 0, count: bytes.count + bytes.count / 100 + 1024)
        var input = bytes
        let status = input.withUnsafeMutableBufferPointer { i in
            out.withUnsafeMutableBufferPointer { o in
                z.next_in = i.baseAddress; z.avail_in = uInt(i.count)
                z.next_out = o.baseAddress; z.avail_out = uInt(o.count)
                return deflate(&z, Z_FINISH)
            }
        }
        XCTAssertEqual(status, Z_STREAM_END)
        let size = Int(z.total_out)
        deflateEnd(&z)
        return size
    }

    func testStreamsInflateToWhatWasFed() throws {
        var rng = SplitMix64(seed: 11)
        var cases: [(String, [UInt8])] = [("empty", []), ("one byte", [7]), ("one zero", [0]),
                                          ("every byte value", (0..<768).map { UInt8($0 % 256) })]
        // Runs around the longest match (258) and the length codes' bases, of 0, 255 and others.
        for n in [1, 2, 3, 4, 10, 11, 12, 257, 258, 259, 260, 261, 262, 516, 517, 518, 519, 100_003] {
            for b: UInt8 in [0, 255, 17] { cases.append(("\(n) × \(b)", [UInt8](repeating: b, count: n))) }
        }
        cases.append(("noise", (0..<5000).map { _ in UInt8.random(in: 0...255, using: &rng) }))
        // Mask- and label-like: runs of 1 to 600 bytes, mostly 0 and 255, some of any value.
        var runs: [UInt8] = []
        while runs.count < 200_000 {
            let value: UInt8 = rng.next() % 4 == 0 ? UInt8.random(in: 0...255, using: &rng) : (rng.next() % 2 == 0 ? 0 : 255)
            runs += [UInt8](repeating: value, count: Int.random(in: 1...600, using: &rng))
        }
        cases.append(("runs", runs))
        for (name, bytes) in cases {
            XCTAssertEqual(inflated(stream(bytes), count: bytes.count), bytes, name)
            // Fed in pieces of 1 to 1000 bytes: runs that cross from one piece to the next.
            let pieces = (0..<(bytes.count + 1)).map { _ in Int.random(in: 1...1000, using: &rng) }
            XCTAssertEqual(inflated(stream(bytes, pieces: pieces), count: bytes.count), bytes, "\(name) in pieces")
        }
    }

    /// Literals in a code fitted to their histogram (`RunDeflater.literals`, the overlay's
    /// coder): zlib inflates them to what was given, for no bytes, one, every value, noise, and
    /// counts so skewed (each value twice as frequent as the one before, as far as 2²⁰) that an
    /// unlimited Huffman code would need over 15 bits; and the stream is about as short as the
    /// histogram allows (its entropy, plus the header).
    func testLiteralsInAFittedCodeInflateToWhatWasGiven() throws {
        var rng = SplitMix64(seed: 12)
        var skewed: [UInt8] = []
        for v in 0..<21 { skewed += [UInt8](repeating: UInt8(v), count: 1 << v) }
        let grey = (0..<300_000).map { _ -> UInt8 in UInt8(clamping: 128 + Int((rng.nextGaussian() * 20).rounded())) }
        let cases: [(String, [UInt8])] = [("empty", []), ("one byte", [200]), ("every byte value", (0..<1024).map { UInt8($0 % 256) }),
                                          ("noise", (0..<5000).map { _ in UInt8.random(in: 0...255, using: &rng) }),
                                          ("skewed", skewed), ("grey levels", grey)]
        for (name, bytes) in cases {
            let stream = bytes.withUnsafeBytes { RunDeflater.literals($0) }
            XCTAssertEqual(inflated(stream, count: bytes.count), bytes, name)
        }
        // Gaussian grey levels of σ 20: about 6.4 bits a byte.
        var counts = [Int](repeating: 0, count: 256)
        for b in grey { counts[Int(b)] += 1 }
        let entropy = counts.filter { $0 > 0 }.reduce(0.0) { $0 - Double($1) * log2(Double($1) / Double(grey.count)) } / 8
        let stream = grey.withUnsafeBytes { RunDeflater.literals($0) }
        XCTAssertLessThan(Double(stream.count), 1.01 * entropy + 200, "\(stream.count) bytes, entropy \(entropy)")
    }

    /// The literal coder's word-at-a-time loop (`putCodes`) writes the same bits as `put` of
    /// each code in turn (its plain twin), whatever the bits already waiting and however many
    /// bytes (the loop takes three at a time, then the rest).
    func testCodesPutAWordAtATimeEqualPutOneByOne() {
        var rng = SplitMix64(seed: 3)
        // A code of 1 to 15 bits for each byte value (the bits above a code's length are zero).
        let lengths = (0..<256).map { _ in UInt8(Int.random(in: 1...15, using: &rng)) }
        let codes = lengths.map { UInt32.random(in: 0..<(1 << UInt32($0)), using: &rng) }
        for count in [0, 1, 2, 3, 4, 5, 100, 4097] {
            for waiting in [0, 1, 7, 8, 13, 31] {
                let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
                var fast = DeflateBits(), plain = DeflateBits()
                let head = UInt64.random(in: 0..<(1 << UInt64(waiting)), using: &rng)
                fast.put(head, waiting); plain.put(head, waiting)
                bytes.withUnsafeBytes { fast.putCodes($0, table: (0..<256).map { UInt64(codes[$0]) | UInt64(lengths[$0]) << 32 }) }
                for b in bytes { plain.put(UInt64(codes[Int(b)]), Int(lengths[Int(b)])) }
                fast.put(0b101, 3); plain.put(0b101, 3)
                XCTAssertEqual(fast.finish(adler: 1), plain.finish(adler: 1), "\(count) bytes after \(waiting) bits")
            }
        }
    }

    /// A mask (a PNG's rows: a filter byte, then 0/255 pixels) and a label image after the TIFF
    /// predictor come out about as short as zlib's run-length deflate makes them, and tiny.
    func testMasksAndLabelsDeflateAboutAsShortAsZlibDoes() throws {
        let side = 1024
        var png: [UInt8] = [], labels: [UInt8] = []
        for y in 0..<side {
            png.append(0)
            var previous: UInt16 = 0
            for x in 0..<side {
                // 40 discs of radius 30 on an 8 × 5 grid, label k + 1.
                let k = (y / 128) * 8 + x / 128
                let dx = x % 128 - 64, dy = y % 128 - 64
                let inside = k < 40 && dx * dx + dy * dy < 30 * 30
                png.append(inside ? 255 : 0)
                let label: UInt16 = inside ? UInt16(k + 1) : 0
                let difference = x == 0 ? label : label &- previous
                labels += [UInt8(truncatingIfNeeded: difference), UInt8(difference >> 8)]
                previous = label
            }
        }
        for (name, bytes) in [("mask PNG rows", png), ("label differences", labels)] {
            let ours = stream(bytes)
            XCTAssertEqual(inflated(ours, count: bytes.count), bytes, name)
            let zlib = zlibRunLength(bytes)
            XCTAssertLessThan(Double(ours.count), 1.5 * Double(zlib), "\(name): \(ours.count) bytes, zlib's Z_RLE \(zlib)")
            XCTAssertLessThan(ours.count, bytes.count / 50, name)
        }
    }
}

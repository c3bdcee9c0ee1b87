import CTIFF
import Foundation
import MicrographIO
import XCTest

/// Thousands of damaged MRC, TIFF, PNG and NPY files, made deterministically from small valid
/// seeds (written by our own writers and libtiff, plus a few ../shared corpus files when they
/// are there): truncations at many offsets, byte flips in the header, extreme sizes, negative
/// fields, IFD loops, bad PNG chunks with valid CRCs, absurd NPY shapes. Opening each must
/// return images or throw a MicrographError — never crash, never take a second, and never
/// grow the process by more than the files could justify.
/// NANOFIND_LONG_TESTS=1 runs ten times as many files.
final class ReaderRobustnessFuzzTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try SharedFixtures.temporaryDirectory("fuzz") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    var count: Int { SharedFixtures.longTests ? 20_000 : 2_000 }

    /// Starts a new peak-memory measurement: on Linux the process's peak resident size (VmHWM)
    /// is reset to its current size (`/proc/self/clear_refs`), so the peak that follows is this
    /// test's own. Returns the resident bytes now. Elsewhere (or where the reset is refused) the
    /// all-time peak (`ru_maxrss`) stands in, which an earlier test's higher peak would hide.
    static func startPeakMeasurement() -> Int {
        if let h = FileHandle(forWritingAtPath: "/proc/self/clear_refs") {
            h.write(Data("5".utf8)); try? h.close()
            if let now = statusField("VmRSS:") { return now }
        }
        return maxResidentBytes()
    }

    /// The peak resident bytes since `startPeakMeasurement` (VmHWM on Linux, else ru_maxrss).
    static func maxResidentBytes() -> Int {
        if let hwm = statusField("VmHWM:") { return hwm }
        var usage = rusage()
        #if os(Linux)
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        return usage.ru_maxrss * 1024  // kilobytes
        #else
        getrusage(RUSAGE_SELF, &usage)
        return usage.ru_maxrss  // bytes on macOS
        #endif
    }

    /// A "… kB" field of /proc/self/status, in bytes.
    static func statusField(_ key: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key) }),
              let kB = Int(line.dropFirst(key.count).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "") else { return nil }
        return kB * 1024
    }

    /// Opens `count` mutants of `seeds`; `structural` makes the format-specific damage.
    /// `rejectedSeeds` are valid files the reader must refuse (unsupported compression).
    func fuzz(_ format: String, ext: String, seeds validSeeds: [[UInt8]], rejectedSeeds: [[UInt8]] = [], seed: UInt64,
              structural: (inout [UInt8], inout SeededRandom) -> Void) throws {
        XCTAssertFalse(validSeeds.isEmpty)
        let seeds = validSeeds + rejectedSeeds
        // The valid seeds themselves must open.
        for (k, s) in validSeeds.enumerated() {
            let url = dir.appendingPathComponent("seed\(k).\(ext)")
            try Data(s).write(to: url)
            XCTAssertNoThrow(try MicrographReader.open(url), "\(format) seed \(k) does not open")
        }
        // And the rejected ones are refused, naming the file (or the mutants made from them
        // would test nothing the valid seeds' do not).
        for (k, s) in rejectedSeeds.enumerated() {
            let url = dir.appendingPathComponent("rejected\(k).\(ext)")
            try Data(s).write(to: url)
            XCTAssertThrowsError(try MicrographReader.open(url), "\(format) rejected seed \(k) opens") { error in
                XCTAssertEqual((error as? MicrographError)?.file, url.path, "\(format) rejected seed \(k): \(error)")
            }
        }
        var rng = SeededRandom(seed: seed)
        var opened = 0, rejected = 0, slowest = 0.0
        let residentBefore = Self.startPeakMeasurement()
        let started = Date()
        let url = dir.appendingPathComponent("mutant.\(ext)")
        for i in 0..<count {
            let seedBytes = seeds[i % seeds.count]
            var b = seedBytes
            switch (i / seeds.count) % 6 {
            case 0: FuzzMutations.truncate(&b, at: (i * 7919) % max(1, b.count))
            case 1: FuzzMutations.flipBytes(&b, &rng)
            case 2: FuzzMutations.extremeField(&b, &rng)
            case 3: structural(&b, &rng)
            case 4: FuzzMutations.splice(&b, &rng); FuzzMutations.flipBytes(&b, window: b.count, &rng)
            default:
                structural(&b, &rng)
                FuzzMutations.truncate(&b, at: Int.random(in: 0...b.count, using: &rng))
            }
            try Data(b).write(to: url)
            let t0 = Date()
            do {
                let images = try MicrographReader.open(url)
                opened += 1
                for m in images {
                    XCTAssertEqual(m.data.count, m.width * m.height * m.frames * m.channels * m.pixelType.byteCount)
                }
            } catch let error as MicrographError {
                rejected += 1
                XCTAssertFalse(error.reason.isEmpty)
                XCTAssertEqual(error.file, url.path, "error does not name the file")
            } catch {
                XCTFail("\(format) mutant \(i): not a MicrographError: \(error)")
            }
            let seconds = Date().timeIntervalSince(t0)
            slowest = max(slowest, seconds)
            if seconds >= 1 {
                let keep = dir.deletingLastPathComponent().appendingPathComponent("slow-\(format)-\(i).\(ext)")
                try? Data(b).write(to: keep)
                XCTFail("\(format) mutant \(i) took \(seconds) s to open (kept as \(keep.path))")
            }
        }
        let grown = Self.maxResidentBytes() - residentBefore
        print(String(format: "fuzz %@: %d files (%d opened, %d rejected) in %.2f s, slowest %.1f ms, peak RSS +%d MiB",
                     format, count, opened, rejected, Date().timeIntervalSince(started), slowest * 1000, grown >> 20))
        XCTAssertLessThan(grown, 256 << 20, "\(format): opening damaged files grew the process by \(grown >> 20) MiB")
        XCTAssertGreaterThan(rejected, count / 4, "\(format): too few mutants were rejected, the mutations are too weak")
    }

    /// Small corpus files to add to the seeds when ../shared is present.
    func sharedSeeds(_ names: [String]) -> [[UInt8]] {
        guard let root = try? SharedFixtures.shared("reference/formats") else { return [] }
        return names.compactMap { try? [UInt8](Data(contentsOf: root.appendingPathComponent($0))) }
    }

    func fileBytes(_ write: (URL) throws -> Void) throws -> [UInt8] {
        let url = dir.appendingPathComponent("seed-\(UUID().uuidString)")
        try write(url)
        defer { try? FileManager.default.removeItem(at: url) }
        return [UInt8](try Data(contentsOf: url))
    }

    // MARK: MRC

    func mrcSeeds() throws -> [[UInt8]] {
        var seeds = [
            try MRCWriter.encode(TestImages.image(.int16, width: 16, height: 12)),
            try MRCWriter.encode(TestImages.image(.float32, width: 9, height: 5, frames: 3)),
            try MRCWriter.encode(TestImages.image(.int8, width: 7, height: 7, pixelSizeNM: nil)),
            try MRCWriter.encode(TestImages.image(.complex64, width: 8, height: 4)),
        ]
        // An FEI1 extended header (one 768-byte record) on our own seed.
        var fei = try MRCWriter.encode(TestImages.image(.uint16, width: 8, height: 8))
        var record = [UInt8](repeating: 0, count: 768)
        FuzzMutations.put32(&record, at: 0, 768, bigEndian: false)
        withUnsafeBytes(of: (300_000.0).bitPattern.littleEndian) { record.replaceSubrange(84..<92, with: $0) }
        fei.insert(contentsOf: record, at: 1024)
        FuzzMutations.put32(&fei, at: 92, 768, bigEndian: false)
        fei.replaceSubrange(104..<108, with: Array("FEI1".utf8))
        seeds.append(fei)
        seeds += sharedSeeds(["mrc/gen_fei1_exthdr_int16.mrc", "mrc/EMD-3197.map", "mrc/DE_Custom_movie.mrc"])
        return seeds
    }

    func testDamagedMRCFilesNeverCrash() throws {
        let seeds = try mrcSeeds()
        let fields = [0, 4, 8, 12, 28, 32, 36, 40, 44, 92, 152, 156, 1024]
        try fuzz("mrc", ext: "mrc", seeds: seeds, seed: 0x4D52_4301) { b, rng in
            let at = fields.randomElement(using: &rng)!
            let v = FuzzMutations.extreme32.randomElement(using: &rng)!
            FuzzMutations.put32(&b, at: at, Bool.random(using: &rng) ? v : UInt32(bitPattern: -Int32.random(in: 1...1000, using: &rng)), bigEndian: false)
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: if b.count > 213 { b[212] = [0x11, 0x44, 0x00, 0x22].randomElement(using: &rng)! }
            case 1: if b.count > 108 { b.replaceSubrange(104..<108, with: Array((Bool.random(using: &rng) ? "FEI1" : "FEI2").utf8)) }
            default: break
            }
        }
    }

    // MARK: TIFF

    /// A TIFF written by libtiff itself, for compressions and layouts our writer does not make.
    func libtiffSeed(compression: UInt16, tiled: Bool, bigEndian: Bool, predictor: UInt16 = 1, bits: UInt16 = 16) throws -> [UInt8] {
        let url = dir.appendingPathComponent("libtiff-\(compression)-\(tiled)-\(bigEndian)-\(bits).tif")
        var messages = nf_tiff_messages()
        let tif = try XCTUnwrap(nf_tiff_open(url.path, bigEndian ? "wb" : "wl", &messages, 0))
        let width: UInt32 = 40, height: UInt32 = 24
        _ = nf_tiff_set_u32(tif, UInt32(TIFFTAG_IMAGEWIDTH), width)
        _ = nf_tiff_set_u32(tif, UInt32(TIFFTAG_IMAGELENGTH), height)
        _ = nf_tiff_set_u16(tif, UInt32(TIFFTAG_BITSPERSAMPLE), bits)
        _ = nf_tiff_set_u16(tif, UInt32(TIFFTAG_SAMPLESPERPIXEL), 1)
        _ = nf_tiff_set_u16(tif, UInt32(TIFFTAG_PHOTOMETRIC), UInt16(PHOTOMETRIC_MINISBLACK))
        _ = nf_tiff_set_u16(tif, UInt32(TIFFTAG_PLANARCONFIG), UInt16(PLANARCONFIG_CONTIG))
        _ = nf_tiff_set_u16(tif, UInt32(TIFFTAG_SAMPLEFORMAT), UInt16(SAMPLEFORMAT_UINT))
        _ = nf_tiff_set_u16(tif, UInt32(TIFFTAG_COMPRESSION), compression)
        if predictor != 1 { _ = nf_tiff_set_u16(tif, UInt32(TIFFTAG_PREDICTOR), predictor) }
        var pixels = TestImages.samples(bits == 16 ? .uint16 : .uint8, count: Int(width * height))
        let rowBytes = Int(width) * Int(bits / 8)
        if tiled {
            _ = nf_tiff_set_u32(tif, UInt32(TIFFTAG_TILEWIDTH), 16)
            _ = nf_tiff_set_u32(tif, UInt32(TIFFTAG_TILELENGTH), 16)
            for ty in stride(from: 0, to: Int(height), by: 16) {
                for tx in stride(from: 0, to: Int(width), by: 16) {
                    var tile = [UInt8](repeating: 0, count: 16 * 16 * Int(bits / 8))
                    for r in 0..<min(16, Int(height) - ty) {
                        let n = min(16, Int(width) - tx) * Int(bits / 8)
                        let src = (ty + r) * rowBytes + tx * Int(bits / 8)
                        tile.replaceSubrange((r * 16 * Int(bits / 8))..<(r * 16 * Int(bits / 8) + n), with: pixels[src..<(src + n)])
                    }
                    let index = TIFFComputeTile(tif, UInt32(tx), UInt32(ty), 0, 0)
                    XCTAssertGreaterThanOrEqual(TIFFWriteEncodedTile(tif, index, &tile, tmsize_t(tile.count)), 0)
                }
            }
        } else {
            _ = nf_tiff_set_u32(tif, UInt32(TIFFTAG_ROWSPERSTRIP), 5)
            var strip: UInt32 = 0
            for row in stride(from: 0, to: Int(height), by: 5) {
                let n = min(5, Int(height) - row) * rowBytes
                let ok = pixels.withUnsafeMutableBytes { p in
                    TIFFWriteEncodedStrip(tif, strip, p.baseAddress! + row * rowBytes, tmsize_t(n))
                }
                XCTAssertGreaterThanOrEqual(ok, 0)
                strip += 1
            }
        }
        TIFFClose(tif)
        XCTAssertEqual(messages.count, 0, "libtiff: \(withUnsafeBytes(of: messages.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) })")
        defer { try? FileManager.default.removeItem(at: url) }
        let image = try XCTUnwrap(try MicrographReader.open(url).first)
        XCTAssertTrue(image.data == pixels, "libtiff seed \(compression) does not read back")
        return [UInt8](try Data(contentsOf: url))
    }

    func tiffSeeds() throws -> [[UInt8]] {
        var seeds = [
            try TIFFWriter.encode(TestImages.image(.uint8, width: 16, height: 10)),
            try TIFFWriter.encode(TestImages.image(.uint16, width: 9, height: 6, frames: 3)),
            try TIFFWriter.encode(TestImages.image(.float32, width: 12, height: 5, pixelSizeNM: nil)),
            try TIFFWriter.encode(TestImages.image(.uint8, width: 6, height: 4, channels: 3)),
            try libtiffSeed(compression: UInt16(COMPRESSION_LZW), tiled: false, bigEndian: false, predictor: 2),
            try libtiffSeed(compression: UInt16(COMPRESSION_ADOBE_DEFLATE), tiled: true, bigEndian: true),
            try libtiffSeed(compression: UInt16(COMPRESSION_PACKBITS), tiled: false, bigEndian: false, bits: 8),
        ]
        seeds += sharedSeeds(["tiff/DM_exported.tif", "tiff/ImageJ_micron.tif"])
        return seeds
    }

    func testDamagedTIFFFilesNeverCrash() throws {
        let seeds = try tiffSeeds()
        let unsupported = sharedSeeds(["tiff/gen_unsupported_jpegxl.tif"])
        try fuzz("tiff", ext: "tif", seeds: seeds, rejectedSeeds: unsupported, seed: 0x5449_4646) { b, rng in
            guard b.count >= 8 else { return }
            let big = b[0] == 0x4D
            let r = ByteReader(bytes: b, file: "", bigEndian: big)
            guard let ifd32 = try? r.u32(at: 4, "ifd"), let n16 = try? r.u16(at: Int(ifd32), "n") else {
                FuzzMutations.extremeField(&b, &rng); return
            }
            let ifd = Int(ifd32), n = Int(n16)
            let nextAt = ifd + 2 + 12 * n
            switch Int.random(in: 0..<5, using: &rng) {
            case 0:  // IFD loop: the next-IFD pointer points back at this IFD
                FuzzMutations.put32(&b, at: nextAt, UInt32(ifd), bigEndian: big)
            case 1:  // first IFD offset at the header, nowhere or past the end
                FuzzMutations.put32(&b, at: 4, [0, 4, 8, UInt32(b.count), UInt32(b.count - 2), 0xFFFF_FFF0].randomElement(using: &rng)!, bigEndian: big)
            case 2:  // an entry's count made extreme
                guard n > 0 else { return }
                let e = ifd + 2 + 12 * Int.random(in: 0..<n, using: &rng)
                FuzzMutations.put32(&b, at: e + 4, FuzzMutations.extreme32.randomElement(using: &rng)!, bigEndian: big)
            case 3:  // an entry's value or offset made extreme (width, strip offsets, tile size…)
                guard n > 0 else { return }
                let e = ifd + 2 + 12 * Int.random(in: 0..<n, using: &rng)
                let v = FuzzMutations.extreme32.randomElement(using: &rng)!
                if let type = try? r.u16(at: e + 2, "type"), type == 3, Bool.random(using: &rng) {
                    FuzzMutations.put16(&b, at: e + 8, UInt16(truncatingIfNeeded: v), bigEndian: big)
                } else {
                    FuzzMutations.put32(&b, at: e + 8, v, bigEndian: big)
                }
            default:  // a loop through a later page back to the first, or an entry's type changed
                if let next = try? r.u32(at: nextAt, "next"), next > 0, let m = try? r.u16(at: Int(next), "n") {
                    FuzzMutations.put32(&b, at: Int(next) + 2 + 12 * Int(m), UInt32(ifd), bigEndian: big)
                } else if n > 0 {
                    let e = ifd + 2 + 12 * Int.random(in: 0..<n, using: &rng)
                    FuzzMutations.put16(&b, at: e + 2, UInt16.random(in: 0...20, using: &rng), bigEndian: big)
                }
            }
        }
    }

    // MARK: PNG

    func pngSeeds() throws -> [[UInt8]] {
        var seeds = [
            try PNGWriter.encode(TestImages.image(.uint8, width: 16, height: 10, pixelSizeNM: nil)),
            try PNGWriter.encode(TestImages.image(.uint16, width: 9, height: 7, pixelSizeNM: nil)),
            try PNGWriter.encode(TestImages.image(.uint8, width: 8, height: 8, channels: 3, pixelSizeNM: nil)),
        ]
        seeds += sharedSeeds(["png/gen_grey16.png"])
        return seeds
    }

    func testDamagedPNGFilesNeverCrash() throws {
        let seeds = try pngSeeds()
        try fuzz("png", ext: "png", seeds: seeds, seed: 0x504E_4701) { b, rng in
            let chunks = FuzzMutations.pngChunks(b)
            switch Int.random(in: 0..<4, using: &rng) {
            case 0:  // IHDR width/height extreme, with a valid CRC
                FuzzMutations.put32(&b, at: 16 + 4 * Int.random(in: 0...1, using: &rng), FuzzMutations.extreme32.randomElement(using: &rng)!, bigEndian: true)
            case 1:  // IHDR bit depth / colour type / interlace changed, valid CRC
                if b.count > 28 {
                    b[24] = [1, 2, 4, 8, 16, 3, 0, 255].randomElement(using: &rng)!
                    b[25] = [0, 2, 3, 4, 6, 1, 7].randomElement(using: &rng)!
                    b[28] = UInt8.random(in: 0...2, using: &rng)
                }
            case 2:  // a chunk length made extreme
                if let c = chunks.randomElement(using: &rng) {
                    FuzzMutations.put32(&b, at: c.at, FuzzMutations.extreme32.randomElement(using: &rng)!, bigEndian: true)
                }
            default:  // compressed data damaged, CRC made valid so zlib sees it
                if let c = chunks.filter({ $0.length > 0 }).randomElement(using: &rng) {
                    for _ in 0..<Int.random(in: 1...4, using: &rng) {
                        b[c.at + 8 + Int.random(in: 0..<c.length, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                    }
                }
            }
            FuzzMutations.fixPNGCRCs(&b)
        }
    }

    // MARK: NPY

    func npySeeds() throws -> [[UInt8]] {
        var seeds: [[UInt8]] = []
        for (type, shape) in [(PixelType.float32, [6, 5]), (.int16, [3, 4, 5]), (.uint8, [7, 3]), (.complex64, [2, 4])] {
            let count = shape.reduce(1, *)
            seeds.append(try fileBytes { try NPYFile.write(data: TestImages.samples(type, count: count), dtype: type, shape: shape, to: $0) })
        }
        seeds += sharedSeeds(["npy/gen_int16_be.npy"])
        return seeds
    }

    func testDamagedNPYFilesNeverCrash() throws {
        let seeds = try npySeeds()
        let shapes = ["(4294967296, 4294967296)", "(-1, 5)", "()", "(3,)", "(1, 1, 1, 1, 1, 1, 1, 1, 1, 2)",
                      "(9223372036854775807, 2)", "(0, 5)", "(2, 3", "((2, 3))", "(3, 3)", "(5, 4294967295)"]
        let descrs = ["'<c32'", "'|O'", "'<U8'", "'>f8'", "'<i8'", "'?'", "''", "'<f2'"]
        try fuzz("npy", ext: "npy", seeds: seeds, seed: 0x4E50_5901) { b, rng in
            guard b.count > 12, let text = String(bytes: b[10..<min(b.count, 10 + 200)], encoding: .isoLatin1) else { return }
            var header = text
            switch Int.random(in: 0..<4, using: &rng) {
            case 0:
                if let r = header.range(of: #"\([^)]*\)"#, options: .regularExpression) {
                    header.replaceSubrange(r, with: shapes.randomElement(using: &rng)!)
                }
            case 1:
                if let r = header.range(of: #"'[<>|=][a-z][0-9]+'"#, options: .regularExpression) {
                    header.replaceSubrange(r, with: descrs.randomElement(using: &rng)!)
                }
            case 2:
                header = header.replacingOccurrences(of: "False", with: Bool.random(using: &rng) ? "True" : "Flase")
            default:  // header length or version made extreme
                FuzzMutations.put16(&b, at: 8, UInt16.random(in: 0...UInt16.max, using: &rng), bigEndian: false)
                b[6] = UInt8.random(in: 0...4, using: &rng)
                return
            }
            let replacement = Array(header.utf8.map { $0 })
            b.replaceSubrange(10..<min(b.count, 10 + 200), with: replacement)
        }
    }

    /// The seeds above as `make fuzz`'s corpus (see FuzzSeedCorpus).
    func testWriteFuzzSeeds() throws {
        _ = try FuzzSeedCorpus.folder("mrc")
        try FuzzSeedCorpus.write(try mrcSeeds(), target: "mrc", ext: "mrc")
        try FuzzSeedCorpus.write(try tiffSeeds(), target: "tiff", ext: "tif")
        try FuzzSeedCorpus.write(try pngSeeds(), target: "png", ext: "png")
        try FuzzSeedCorpus.write(try npySeeds(), target: "npy", ext: "npy")
    }
}

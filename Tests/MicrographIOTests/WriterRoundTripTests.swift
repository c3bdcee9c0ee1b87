import CTIFF
import Foundation
import MicrographIO
import NanoTensor
import XCTest

/// What the writers write reads back identically (pixels, type, shape, pixel size), and the
/// TIFF carries the tags Fiji uses for its scale.
final class WriterRoundTripTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try SharedFixtures.temporaryDirectory("writers") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func roundTrip(_ image: Micrograph, name: String, write: (Micrograph, URL) throws -> Void,
                   file: StaticString = #filePath, line: UInt = #line) throws -> Micrograph {
        let url = dir.appendingPathComponent(name)
        try write(image, url)
        let back = try MicrographReader.open(url)
        XCTAssertEqual(back.count, 1, name, file: file, line: line)
        let m = try XCTUnwrap(back.first)
        XCTAssertEqual(m.width, image.width, name, file: file, line: line)
        XCTAssertEqual(m.height, image.height, name, file: file, line: line)
        XCTAssertEqual(m.frames, image.frames, name, file: file, line: line)
        XCTAssertEqual(m.channels, image.channels, name, file: file, line: line)
        XCTAssertEqual(m.pixelType, image.pixelType, name, file: file, line: line)
        XCTAssertTrue(m.data == image.data, "\(name): pixels differ after the round trip", file: file, line: line)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".partial") }
        XCTAssertEqual(leftovers, [], "temporary files left behind", file: file, line: line)
        return m
    }

    func testTIFFFloat32Uint8Uint16KeepPixelsAndPixelSize() throws {
        for type in [PixelType.float32, .uint8, .uint16, .int16, .int32, .float64] {
            for frames in [1, 3] {
                let image = TestImages.image(type, frames: frames, pixelSizeNM: 0.04336)
                let m = try roundTrip(image, name: "\(type)-\(frames).tif", write: TIFFWriter.write)
                XCTAssertEqual(m.format, "tiff")
                let p = try XCTUnwrap(m.pixelSize, "\(type): calibration lost")
                assertRelativelyEqual(p.x, 0.04336, 1e-9, "\(type) x")
                assertRelativelyEqual(p.y, 0.04336, 1e-9, "\(type) y")
                XCTAssertEqual(m.storedCalibration?.unitX, "nm")
            }
        }
        let uncalibrated = try roundTrip(TestImages.image(.uint8, pixelSizeNM: nil), name: "plain.tif", write: TIFFWriter.write)
        XCTAssertNil(uncalibrated.pixelSize)
        _ = try roundTrip(TestImages.image(.uint8, channels: 3), name: "rgb.tif", write: TIFFWriter.write)
    }

    /// Masks and labels are written deflated with the horizontal predictor: libtiff (an
    /// independent reader) gets the same pixels back, including wrap-around differences (255 → 0,
    /// 65535 → 1), every page of a stack, and a mask of long runs shrinks far below its raw size.
    func testDeflatedTIFFRoundTripsAndShrinksMasks() throws {
        for type in [PixelType.uint8, .uint16, .int16, .int8] {
            for frames in [1, 3] {
                let image = TestImages.image(type, width: 37, height: 11, frames: frames, pixelSizeNM: 0.05)
                let m = try roundTrip(image, name: "deflated-\(type)-\(frames).tif") { try TIFFWriter.write($0, to: $1, deflated: true) }
                XCTAssertEqual(m.pixelSize?.x ?? .nan, 0.05, accuracy: 1e-9)
            }
        }
        // Pages of several bands of rows (the deflater is fed 256 kB at a time), two of them.
        let banded = TestImages.image(.uint16, width: 700, height: 500, frames: 2, pixelSizeNM: nil)
        _ = try roundTrip(banded, name: "banded.tif") { try TIFFWriter.write($0, to: $1, deflated: true) }
        let wrap = Micrograph(width: 4, height: 2, pixelType: .uint16, data: [255, 255, 0, 0, 1, 0, 255, 255, 0, 0, 0, 0, 7, 0, 0, 0],
                              pixelSize: nil, format: "tiff")
        _ = try roundTrip(wrap, name: "wrap.tif") { try TIFFWriter.write($0, to: $1, deflated: true) }
        // A 1024² mask with a disc: tags say deflate + predictor, and the file is tiny.
        let side = 1024
        var mask = [UInt8](repeating: 0, count: side * side)
        for y in 0..<side { for x in 0..<side where (x - 500) * (x - 500) + (y - 400) * (y - 400) < 200 * 200 { mask[y * side + x] = 255 } }
        let url = dir.appendingPathComponent("mask.tif")
        try TIFFWriter.write(Micrograph(width: side, height: side, pixelType: .uint8, data: mask, pixelSize: nil, format: "tiff"),
                             to: url, deflated: true)
        let bytes = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int)
        XCTAssertLessThan(bytes, side * side / 50, "a deflated mask of one disc should be tiny, it is \(bytes) bytes")
        XCTAssertTrue(try MicrographReader.open(url)[0].data == mask)
        var messages = nf_tiff_messages()
        let tif = try XCTUnwrap(nf_tiff_open(url.path, "r", &messages, 0))
        defer { TIFFClose(tif) }
        var compression: UInt16 = 0, predictor: UInt16 = 0
        XCTAssertEqual(nf_tiff_get_u16(tif, UInt32(TIFFTAG_COMPRESSION), &compression), 1)
        XCTAssertEqual(nf_tiff_get_u16(tif, UInt32(TIFFTAG_PREDICTOR), &predictor), 1)
        XCTAssertEqual(Int32(compression), COMPRESSION_ADOBE_DEFLATE)
        XCTAssertEqual(Int32(predictor), PREDICTOR_HORIZONTAL)
        XCTAssertThrowsError(try TIFFWriter.write(TestImages.image(.float32), to: dir.appendingPathComponent("f.tif"), deflated: true))
    }

    /// Label ids written band by band (`writeDeflatedUInt16`, from Int32) give the same file,
    /// byte for byte, as the uint16 image written deflated whole.
    func testDeflatedUInt16FromRowsEqualsTheWholeImagesWrite() throws {
        // 1000 wide: 131 rows a band, so 300 rows are three bands, the last one short.
        for (w, h) in [(1000, 300), (37, 11), (1, 1)] {
            var rng = SplitMix64(seed: 21)
            let ids = (0..<(w * h)).map { i -> Int32 in i % 7 == 0 ? Int32.random(in: 0...65535, using: &rng) : Int32(i / 50 % 300) }
            var bytes = [UInt8]()
            for v in ids { bytes += [UInt8(v & 0xff), UInt8(v >> 8)] }
            let whole = dir.appendingPathComponent("whole-\(w).tif"), rows = dir.appendingPathComponent("rows-\(w).tif")
            try TIFFWriter.write(Micrograph(width: w, height: h, pixelType: .uint16, data: bytes, pixelSize: PixelSize(isotropic: 0.07), format: "tiff"),
                                 to: whole, deflated: true)
            var bands: [Range<Int>] = []
            try TIFFWriter.writeDeflatedUInt16(width: w, height: h, pixelSize: PixelSize(isotropic: 0.07), to: rows) { y0, y1, to in
                bands.append(y0..<y1)
                for i in 0..<((y1 - y0) * w) { to[i] = UInt16(truncatingIfNeeded: ids[y0 * w + i]).littleEndian }
            }
            XCTAssertEqual(bands.first?.lowerBound, 0)
            XCTAssertEqual(bands.last?.upperBound, h)
            XCTAssertEqual(zip(bands, bands.dropFirst()).filter { $0.upperBound != $1.lowerBound }.count, 0, "bands must follow each other")
            if w == 1000 { XCTAssertEqual(bands.count, 3) }
            XCTAssertEqual(try Data(contentsOf: rows), try Data(contentsOf: whole), "\(w)×\(h)")
        }
    }

    /// A set written together is all new or all as it was: a writer that fails (a full disk)
    /// leaves every earlier file and no hidden one, said of the file's own name; a folder at a
    /// path is refused before anything is written; otherwise every file is replaced.
    func testFilesWrittenTogetherAreAllNewOrAllAsTheyWere() throws {
        let names = ["a.csv", "b.json", "c.png"].map { dir.appendingPathComponent($0) }
        try writeTogether(names.map { ($0, Array("old \($0.lastPathComponent)".utf8)) })
        func contents() throws -> [String] { try names.map { try String(contentsOf: $0, encoding: .utf8) } }
        let old = try contents()
        struct DiskFull: Error, LocalizedError { var errorDescription: String? { "No space left on device" } }
        for failing in 0..<3 {
            XCTAssertThrowsError(try writeTogether(names.enumerated().map { k, url in
                (url, { hidden in
                    if k == failing { throw DiskFull() }
                    try writeAtomically(Array("new".utf8), to: hidden)
                })
            })) { error in
                XCTAssertEqual("\(error)", "\(names[failing].path): cannot be written (No space left on device)")
            }
            XCTAssertEqual(try contents(), old, "writer \(failing) failed")
        }
        // A writer's own error about its (hidden) file is said of the file's name.
        XCTAssertThrowsError(try writeTogether([(names[0], { throw MicrographError(url: $0, reason: "cannot be written (EIO)") })])) { error in
            XCTAssertEqual("\(error)", "\(names[0].path): cannot be written (EIO)")
        }
        let folder = dir.appendingPathComponent("d.html")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        XCTAssertThrowsError(try writeTogether((names + [folder]).map { ($0, Array("new".utf8)) })) { error in
            XCTAssertTrue("\(error)".hasPrefix("\(folder.path): is a folder"), "\(error)")
        }
        XCTAssertEqual(try contents(), old)
        try writeTogether(names.map { ($0, Array("new".utf8)) })
        XCTAssertEqual(try contents(), ["new", "new", "new"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }, [])
    }

    /// Files of a MiB and more go around the page cache (`O_DIRECT`, in whole 4 KiB blocks
    /// through a 4 MiB staging buffer, the last block padded and the file cut back): every
    /// length around those boundaries reads back exactly, head, body and tail in order.
    func testLargeFilesWrittenDirectlyReadBackExactly() throws {
        let block = 4096, staging = DirectWrite.stagingBytes, smallest = DirectWrite.smallestFile
        var rng = SplitMix64(seed: 21)
        let head = (0..<8).map { _ in UInt8.random(in: 0...255, using: &rng) }, tail = (0..<37).map { _ in UInt8.random(in: 0...255, using: &rng) }
        var direct = 0
        for total in [smallest - 1, smallest, smallest + 1, staging - 1, staging, staging + block + 1, 2 * staging + 45, 9_000_001] {
            let body = (0..<(total - head.count - tail.count)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
            let url = dir.appendingPathComponent("big-\(total).bin")
            try body.withUnsafeBytes { try writeAtomically(head, $0, tail, to: url) }
            XCTAssertEqual(try Data(contentsOf: url), Data(head + body + tail), "\(total) bytes")
            // The direct path itself, where this platform and folder take it.
            let again = dir.appendingPathComponent("direct-\(total).bin")
            let ran = try head.withUnsafeBytes { h in try body.withUnsafeBytes { b in try tail.withUnsafeBytes { t in
                try DirectWrite.attempt([h, b, t], to: again)
            } } }
            if ran {
                direct += 1
                XCTAssertEqual(try Data(contentsOf: again), Data(head + body + tail), "\(total) bytes, direct")
            }
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".partial") }
        XCTAssertEqual(leftovers, [])
        if direct == 0 { print("note: \(dir.path) takes no direct writes here; only the buffered fallback was checked") }
    }

    func testTIFFPixelSizesOverManyDecadesSurviveTheRational() throws {
        for p in [1e-4, 0.0100127, 0.04336, 1.0, 3.3724e3, 2.5e6] {
            let m = try roundTrip(TestImages.image(.float32, pixelSizeNM: p), name: "p\(p).tif", write: TIFFWriter.write)
            assertRelativelyEqual(m.pixelSize?.x ?? .nan, p, 1e-9, "pixel size \(p)")
        }
    }

    /// The display range ImageJ reads (min=, max=) of a float map, taken 16 values at a time by
    /// `writeFloat32`, is the plain scan's that a float32 `Micrograph` goes through: NaNs left
    /// out, no range with an infinity, and a zero extreme with the sign the scan met first.
    func testFloatMapDisplayRangeIsThePlainScans() throws {
        func description(_ url: URL) throws -> String {
            var messages = nf_tiff_messages()
            let tif = try XCTUnwrap(nf_tiff_open(url.path, "r", &messages, 0), "libtiff cannot open \(url.lastPathComponent)")
            defer { TIFFClose(tif) }
            var text: UnsafePointer<CChar>?
            _ = nf_tiff_get_string(tif, UInt32(TIFFTAG_IMAGEDESCRIPTION), &text)
            return text.map { String(cString: $0) } ?? ""
        }
        var rng = SplitMix64(seed: 21)
        let random = (0..<203).map { _ in Float.random(in: -5...7, using: &rng) }
        var cases: [(String, [Float], Int, Int)] = [("random", random, 29, 7), ("short", Array(random.prefix(9)), 3, 3)]
        var nans = random; nans[0] = .nan; nans[17] = .nan; nans[202] = .nan
        cases.append(("nans", nans, 29, 7))
        var infinite = random; infinite[40] = .infinity
        cases.append(("infinite", infinite, 29, 7))
        cases.append(("allNaN", [Float](repeating: .nan, count: 48), 8, 6))
        var zeros = random.map { abs($0) }; zeros[5] = -0.0; zeros[100] = 0.0  // −0 met first: min=-0.0
        cases.append(("zeros", zeros, 29, 7))
        // Zero extremes met in either order, in different lanes of the 16-value scan: whichever
        // way its lanes break ties, one order of each would print the wrong sign without the
        // first-zero rule.
        var plusFirst = random.map { abs($0) + 1 }; plusFirst[5] = 0.0; plusFirst[100] = -0.0
        cases.append(("plusFirst", plusFirst, 29, 7))
        var maxMinusFirst = random.map { -abs($0) - 1 }; maxMinusFirst[5] = -0.0; maxMinusFirst[100] = 0.0
        cases.append(("maxMinusFirst", maxMinusFirst, 29, 7))
        var maxPlusFirst = random.map { -abs($0) - 1 }; maxPlusFirst[5] = 0.0; maxPlusFirst[100] = -0.0; maxPlusFirst[202] = -0.0
        cases.append(("maxPlusFirst", maxPlusFirst, 29, 7))
        for (name, values, w, h) in cases {
            let fast = dir.appendingPathComponent("\(name)-fast.tif"), plain = dir.appendingPathComponent("\(name)-plain.tif")
            try TIFFWriter.writeFloat32(values, width: w, height: h, pixelSizeNM: nil, to: fast)
            let bytes = values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
            try TIFFWriter.write(Micrograph(width: w, height: h, pixelType: .float32, data: bytes, format: "tiff"), to: plain)
            let d = try description(fast)
            XCTAssertEqual(d, try description(plain), name)
            XCTAssertEqual(d.contains("min="), name != "infinite" && name != "allNaN", "\(name): \(d)")
            if name == "zeros" { XCTAssertTrue(d.contains("min=-0.0\n"), d) }
            if name == "plusFirst" { XCTAssertTrue(d.contains("min=0.0\n"), d) }
            if name == "maxMinusFirst" { XCTAssertTrue(d.contains("max=-0.0\n"), d) }
            if name == "maxPlusFirst" { XCTAssertTrue(d.contains("max=0.0\n"), d) }
        }
    }

    /// Fiji reads the scale from ImageDescription (ImageJ=, unit=) and XResolution/YResolution.
    func testTIFFHasTheTagsFijiReadsForItsScale() throws {
        let url = dir.appendingPathComponent("fiji.tif")
        try TIFFWriter.writeFloat32((0..<(20 * 10)).map { Float($0) / 3 }, width: 20, height: 10, pixelSizeNM: 0.04336, to: url)
        var messages = nf_tiff_messages()
        let tif = try XCTUnwrap(nf_tiff_open(url.path, "r", &messages, 0), "libtiff cannot open our TIFF")
        defer { TIFFClose(tif) }
        var text: UnsafePointer<CChar>?
        XCTAssertEqual(nf_tiff_get_string(tif, UInt32(TIFFTAG_IMAGEDESCRIPTION), &text), 1)
        let description = text.map { String(cString: $0) } ?? ""
        XCTAssertTrue(description.hasPrefix("ImageJ="), description)
        XCTAssertTrue(description.contains("\nunit=nm\n"), description)
        var xres: Float = 0, yres: Float = 0
        XCTAssertEqual(nf_tiff_get_float(tif, UInt32(TIFFTAG_XRESOLUTION), &xres), 1)
        XCTAssertEqual(nf_tiff_get_float(tif, UInt32(TIFFTAG_YRESOLUTION), &yres), 1)
        assertRelativelyEqual(Double(xres), 1 / 0.04336, 1e-6, "XResolution")
        assertRelativelyEqual(Double(yres), 1 / 0.04336, 1e-6, "YResolution")
        var unit: UInt16 = 0
        XCTAssertEqual(nf_tiff_get_u16(tif, UInt32(TIFFTAG_RESOLUTIONUNIT), &unit), 1)
        XCTAssertEqual(Int32(unit), RESUNIT_NONE)
        var format: UInt16 = 0, bits: UInt16 = 0
        _ = nf_tiff_get_u16(tif, UInt32(TIFFTAG_SAMPLEFORMAT), &format)
        _ = nf_tiff_get_u16(tif, UInt32(TIFFTAG_BITSPERSAMPLE), &bits)
        XCTAssertEqual(Int32(format), SAMPLEFORMAT_IEEEFP)
        XCTAssertEqual(bits, 32)
    }

    func testPNGGreyAndRGBRoundTrip() throws {
        _ = try roundTrip(TestImages.image(.uint8, pixelSizeNM: nil), name: "mask.png", write: PNGWriter.write)
        _ = try roundTrip(TestImages.image(.uint16, pixelSizeNM: nil), name: "labels.png", write: PNGWriter.write)
        _ = try roundTrip(TestImages.image(.uint8, channels: 3, pixelSizeNM: nil), name: "overlay.png", write: PNGWriter.write)
        // A label image of discs numbered past 255 (both bytes of a sample vary) and a 0/255
        // mask, 256 small discs: libpng reads them back, and both shrink below a tenth.
        let side = 512
        var labels = [UInt8](repeating: 0, count: 2 * side * side), mask = [UInt8](repeating: 0, count: side * side)
        for y in 0..<side { for x in 0..<side {
            let k = (y / 32) * 16 + x / 32, dx = x % 32 - 16, dy = y % 32 - 16
            guard dx * dx + dy * dy < 100 else { continue }
            let id = UInt16(200 + k)
            labels[2 * (y * side + x)] = UInt8(id & 0xFF); labels[2 * (y * side + x) + 1] = UInt8(id >> 8)
            mask[y * side + x] = 255
        } }
        for (name, image) in [("disc-labels.png", Micrograph(width: side, height: side, pixelType: .uint16, data: labels, format: "png")),
                              ("disc-mask.png", Micrograph(width: side, height: side, pixelType: .uint8, data: mask, format: "png"))] {
            _ = try roundTrip(image, name: name, write: PNGWriter.write)
            let bytes = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent(name).path)[.size] as? Int)
            XCTAssertLessThan(bytes, image.data.count / 10, "\(name): \(bytes) bytes")
        }
        XCTAssertThrowsError(try PNGWriter.write(TestImages.image(.float32), to: dir.appendingPathComponent("f.png")))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("f.png").path))
    }

    func testMRCRoundTripKeepsModeAndPixelSize() throws {
        for type in [PixelType.float32, .int16, .int8, .uint16, .float16, .complex64] {
            for frames in [1, 4] {
                let m = try roundTrip(TestImages.image(type, frames: frames, pixelSizeNM: 0.0100127),
                                      name: "\(type)-\(frames).mrc", write: MRCWriter.write)
                XCTAssertEqual(m.format, "mrc")
                assertRelativelyEqual(m.pixelSize?.x ?? .nan, 0.0100127, 1e-6, "\(type) pixel size")
            }
        }
        let plain = try roundTrip(TestImages.image(.float32, pixelSizeNM: nil), name: "plain.mrc", write: MRCWriter.write)
        XCTAssertNil(plain.pixelSize)
        XCTAssertThrowsError(try MRCWriter.write(TestImages.image(.uint32), to: dir.appendingPathComponent("u32.mrc")))
    }

    /// 32-bit float word k (from 0) of an MRC header.
    func mrcHeaderWord(_ header: [UInt8], _ k: Int) -> Float {
        Float(bitPattern: UInt32(header[4 * k]) | UInt32(header[4 * k + 1]) << 8 | UInt32(header[4 * k + 2]) << 16
              | UInt32(header[4 * k + 3]) << 24)
    }

    /// dmin, dmax, dmean (words 20–22) and rms (word 55) cover every frame of a stack: here the
    /// extremes are in the last frame, which a first-frame summary would miss.
    func testMRCHeaderStatisticsCoverTheWholeStack() throws {
        let values: [[Float]] = [[1, 2, 3, 4], [2, 2, 2, 2], [-5, 0, 0, 11]]
        var bytes: [UInt8] = []
        for v in values.joined() { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        let stack = Micrograph(width: 2, height: 2, frames: 3, pixelType: .float32, data: bytes, format: "t")
        let header = try MRCWriter.encode(stack)
        func word(_ k: Int) -> Float { mrcHeaderWord(header, k) }
        let all = values.joined().map(Double.init)
        let mean = all.reduce(0, +) / Double(all.count)
        let rms = (all.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(all.count)).squareRoot()
        XCTAssertEqual(word(19), -5)
        XCTAssertEqual(word(20), 11)
        XCTAssertEqual(Double(word(21)), mean, accuracy: 1e-6)
        XCTAssertEqual(Double(word(54)), rms, accuracy: 1e-5)
        XCTAssertEqual(Double(word(54)), 12.0.squareRoot(), accuracy: 1e-5)  // by hand: mean 2, Σ(x − 2)² = 144 over 12
    }

    /// A stack with no finite value: the header says "not determined" as MRC2014 defines it
    /// (dmax < dmin, dmean below both, rms < 0), never NaN.
    func testMRCHeaderStatisticsOfNoFiniteValueAreMarkedUndetermined() throws {
        var bytes: [UInt8] = []
        for v: Float in [.nan, .infinity, -.infinity, .nan] { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        let header = try MRCWriter.encode(Micrograph(width: 2, height: 2, pixelType: .float32, data: bytes, format: "t"))
        func word(_ k: Int) -> Float { mrcHeaderWord(header, k) }
        XCTAssertLessThan(word(20), word(19))
        XCTAssertLessThan(word(21), min(word(19), word(20)))
        XCTAssertLessThan(word(54), 0)
    }

    func testNPYRoundTrip() throws {
        let image = TestImages.image(.float32, frames: 2, pixelSizeNM: nil)
        _ = try roundTrip(image, name: "a.npy") { m, url in
            try NPYFile.write(data: m.data, dtype: m.pixelType, shape: [m.frames, m.height, m.width], to: url)
        }
    }

    func testFailedWriteLeavesNoFileAndReplacingIsAtomic() throws {
        let missing = dir.appendingPathComponent("no-such-dir/out.tif")
        XCTAssertThrowsError(try TIFFWriter.write(TestImages.image(.uint8), to: missing)) { e in
            XCTAssertTrue(e is MicrographError, "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing.path))
        let url = dir.appendingPathComponent("replace.tif")
        try TIFFWriter.write(TestImages.image(.uint8, width: 5, height: 5), to: url)
        try TIFFWriter.write(TestImages.image(.uint16, width: 9, height: 4), to: url)
        let m = try XCTUnwrap(try MicrographReader.open(url).first)
        XCTAssertEqual(m.pixelType, .uint16)
        XCTAssertEqual(m.width, 9)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["replace.tif"])
    }

    func testStatisticsAndChecksumFollowTheReferenceDefinitions() throws {
        // RGB: grey = 0.299 R + 0.587 G + 0.114 B, not rounded.
        let rgb = Micrograph(width: 2, height: 1, channels: 3, pixelType: .uint8, data: [255, 0, 0, 0, 0, 255], format: "t")
        let s = rgb.statistics(frame: 0)
        XCTAssertEqual(s.min, 0.114 * 255, accuracy: 1e-12)
        XCTAssertEqual(s.max, 0.299 * 255, accuracy: 1e-12)
        XCTAssertEqual(rgb.floatFrame(0).count, 2)
        // complex: modulus
        var bytes = [UInt8]()
        for v: Float in [3, 4, 0, -2] { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        let c = Micrograph(width: 2, height: 1, pixelType: .complex64, data: bytes, format: "t")
        XCTAssertEqual(c.floatFrame(0), [5, 2])
        // float16 1.0 and -2.0
        let h = Micrograph(width: 2, height: 1, pixelType: .float16, data: [0x00, 0x3C, 0x00, 0xC0], format: "t")
        XCTAssertEqual(h.floatFrame(0), [1, -2])
        // sha256 of the empty-string-free known vector: bytes "abc"
        let abc = Micrograph(width: 3, height: 1, pixelType: .uint8, data: Array("abc".utf8), format: "t")
        XCTAssertEqual(abc.sha256(frame: 0), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let stack = TestImages.image(.int16, frames: 2)
        XCTAssertNotEqual(stack.sha256(frame: 0), stack.sha256(frame: 1))
    }
}

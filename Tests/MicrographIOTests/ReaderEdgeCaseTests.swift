import Foundation
import MicrographIO
import XCTest

/// Files other tools write that the readers once got wrong (found in a review): each is made
/// here byte by byte.
final class ReaderEdgeCaseTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try SharedFixtures.temporaryDirectory("edge") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// A .npy header as numpy writes it (v1.0, padded to a multiple of 64 with a newline).
    func npy(_ header: String, _ data: [UInt8]) -> [UInt8] {
        var h = header
        while (10 + h.utf8.count + 1) % 64 != 0 { h += " " }
        h += "\n"
        let n = h.utf8.count
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(n & 0xff), UInt8(n >> 8)] + Array(h.utf8) + data
    }

    /// Fortran order (numpy's np.asfortranarray, or MATLAB exports) and Python 2's shape (6L, 7L).
    func testFortranOrderAndPython2Shapes() throws {
        let h = 3, w = 4
        // Element (y, x) = 10 y + x, stored column by column.
        var fortran: [UInt8] = []
        for x in 0..<w { for y in 0..<h { fortran.append(UInt8(10 * y + x)) } }
        let f = dir.appendingPathComponent("f.npy")
        try Data(npy("{'descr': '|u1', 'fortran_order': True, 'shape': (\(h), \(w)), }", fortran)).write(to: f)
        let m = try XCTUnwrap(MicrographReader.open(f).first)
        XCTAssertEqual([m.width, m.height], [w, h])
        XCTAssertEqual(m.data, (0..<(h * w)).map { UInt8(10 * ($0 / w) + $0 % w) })
        let p2 = dir.appendingPathComponent("p2.npy")
        try Data(npy("{'descr': '|u1', 'fortran_order': False, 'shape': (\(h)L, \(w)L), }", [UInt8](repeating: 7, count: h * w))).write(to: p2)
        XCTAssertEqual(try MicrographReader.open(p2).first?.width, w)
    }

    /// NumPy's RGB and RGBA pictures (H, W, 3|4), as `np.asarray(PIL.Image.open(...))` holds
    /// them, read as colour (the alpha dropped), not as H frames of W×3; a stack of 3 frames,
    /// (3, H, W), stays frames.
    func testNPYColourPictures() throws {
        let h = 8, w = 9
        let rgb = dir.appendingPathComponent("rgb.npy")
        try Data(npy("{'descr': '|u1', 'fortran_order': False, 'shape': (\(h), \(w), 3), }", (0..<(h * w * 3)).map { UInt8($0 % 251) })).write(to: rgb)
        let c = try XCTUnwrap(MicrographReader.open(rgb).first)
        XCTAssertEqual([c.width, c.height, c.frames, c.channels], [w, h, 1, 3])
        XCTAssertEqual(c.data, (0..<(h * w * 3)).map { UInt8($0 % 251) })
        let rgba = dir.appendingPathComponent("rgba.npy")
        try Data(npy("{'descr': '|u1', 'fortran_order': False, 'shape': (\(h), \(w), 4), }", (0..<(h * w * 4)).map { UInt8($0 % 4 == 3 ? 255 : $0 % 200) })).write(to: rgba)
        let a = try XCTUnwrap(MicrographReader.open(rgba).first)
        XCTAssertEqual([a.width, a.height, a.channels], [w, h, 3])
        XCTAssertEqual(a.data, (0..<(h * w * 4)).filter { $0 % 4 != 3 }.map { UInt8($0 % 200) })
        let stack = dir.appendingPathComponent("stack.npy")
        try Data(npy("{'descr': '|u1', 'fortran_order': False, 'shape': (3, \(h), \(w)), }", [UInt8](repeating: 1, count: 3 * h * w))).write(to: stack)
        let s = try XCTUnwrap(MicrographReader.open(stack).first)
        XCTAssertEqual([s.width, s.height, s.frames, s.channels], [w, h, 3, 1])
        // Float samples are no picture's: np.dstack of three micrographs stays frames (blended into
        // one grey image, three micrographs would be lost without a word).
        let dstack = dir.appendingPathComponent("dstack.npy")
        try Data(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (\(h), \(w), 3), }", [UInt8](repeating: 0, count: 4 * h * w * 3))).write(to: dstack)
        let d = try XCTUnwrap(MicrographReader.open(dstack).first)
        XCTAssertEqual([d.width, d.height, d.frames, d.channels], [3, w, h, 1])
    }

    /// A TIFF of `image` with its Photometric tag (262) set to `photometric` (little-endian, the
    /// first page's directory as TIFFWriter lays it out).
    func tiff(_ image: Micrograph, photometric: UInt16) throws -> URL {
        let url = dir.appendingPathComponent("photometric\(photometric)-\(image.pixelType.rawValue).tif")
        try TIFFWriter.write(image, to: url)
        var b = [UInt8](try Data(contentsOf: url))
        XCTAssertEqual(b[0], 0x49)  // "II"
        let ifd = Int(b[4]) | Int(b[5]) << 8 | Int(b[6]) << 16 | Int(b[7]) << 24, n = Int(b[ifd]) | Int(b[ifd + 1]) << 8
        var patched = false
        for e in 0..<n {
            let at = ifd + 2 + 12 * e
            if Int(b[at]) | Int(b[at + 1]) << 8 == 262 { b[at + 8] = UInt8(photometric & 0xff); b[at + 9] = UInt8(photometric >> 8); patched = true }
        }
        XCTAssertTrue(patched, "no Photometric tag to patch")
        try Data(b).write(to: url)
        return url
    }

    /// WhiteIsZero (Photometric 0) pages read as intensities, as Fiji shows them: the largest
    /// value minus each stored one; float samples, which have no largest value, are refused.
    func testWhiteIsZeroTIFFReadsAsIntensities() throws {
        let u8 = Micrograph(width: 4, height: 2, pixelType: .uint8, data: [0, 1, 2, 100, 200, 253, 254, 255], format: "TIFF")
        let inverted = try XCTUnwrap(MicrographReader.open(tiff(u8, photometric: 0)).first)
        XCTAssertEqual(inverted.data, [255, 254, 253, 155, 55, 2, 1, 0])
        XCTAssertEqual(inverted.metadata.extra["photometric"]?.hasPrefix("WhiteIsZero: read inverted"), true)
        let plain = try XCTUnwrap(MicrographReader.open(tiff(u8, photometric: 1)).first)
        XCTAssertEqual(plain.data, u8.data)
        XCTAssertNil(plain.metadata.extra["photometric"])
        let values: [UInt16] = [0, 1, 300, 65535]
        let u16 = Micrograph(width: 2, height: 2, pixelType: .uint16, data: values.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }, format: "TIFF")
        let read = try XCTUnwrap(MicrographReader.open(tiff(u16, photometric: 0)).first)
        XCTAssertEqual((0..<4).map { UInt16(read.data[2 * $0]) | UInt16(read.data[2 * $0 + 1]) << 8 }, values.map { 65535 - $0 })
        let f32 = Micrograph(width: 2, height: 1, pixelType: .float32, data: [UInt8](repeating: 0, count: 8), format: "TIFF")
        let url = try tiff(f32, photometric: 0)
        XCTAssertThrowsError(try MicrographReader.open(url)) { error in
            XCTAssertEqual((error as? MicrographError)?.file, url.path)
            XCTAssertTrue("\(error)".contains("Photometric 0 (WhiteIsZero)"), "\(error)")
        }
    }

    /// An uncompressed TIFF of `spp` samples of `bits` per pixel (Photometric `photometric`, the
    /// samples after the first colour ones an unassociated alpha, or with `extraSample` nil no
    /// ExtraSamples tag), built here tag by tag; `samples` are the bytes, little-endian.
    func tiff(width: Int, height: Int, spp: Int, photometric: UInt16, samples: [UInt8], extraSample: Int? = 2, bits: Int = 8) -> [UInt8] {
        var b: [UInt8] = [0x49, 0x49, 42, 0]
        func u16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8 & 0xff)] }
        func u32(_ v: Int) -> [UInt8] { u16(v & 0xffff) + u16(v >> 16) }
        let tags = extraSample == nil ? 9 : 10, ifd = 8, bpsAt = ifd + 2 + 12 * tags + 4, dataAt = bpsAt + 2 * spp
        b += u32(ifd)
        var entries: [(Int, Int, Int, [UInt8])] = [  // tag, type, count, value (inline, padded) or offset
            (256, 3, 1, u16(width) + [0, 0]), (257, 3, 1, u16(height) + [0, 0]),
            (258, 3, spp, spp <= 2 ? Array((0..<spp).flatMap { _ in u16(bits) } + [0, 0, 0, 0]).prefix(4).map { $0 } : u32(bpsAt)),
            (259, 3, 1, u16(1) + [0, 0]), (262, 3, 1, u16(Int(photometric)) + [0, 0]), (273, 4, 1, u32(dataAt)),
            (277, 3, 1, u16(spp) + [0, 0]), (278, 3, 1, u16(height) + [0, 0]), (279, 4, 1, u32(samples.count)),
        ]
        if let extraSample { entries.append((338, 3, 1, u16(extraSample) + [0, 0])) }
        entries.sort { $0.0 < $1.0 }
        b += u16(tags)
        for (tag, type, count, value) in entries { b += u16(tag) + u16(type) + u32(count) + value }
        b += u32(0)
        for _ in 0..<spp { b += u16(bits) }
        return b + samples
    }

    /// 16-bit RGB and RGBA TIFFs (a camera's colour export, a stitched overview) read as RGB of
    /// 16-bit samples, made grey as 8-bit RGB is; they were refused.
    func testSixteenBitRGBReads() throws {
        func bytes(_ v: [UInt16]) -> [UInt8] { v.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] } }
        let rgb = dir.appendingPathComponent("rgb16.tif")
        try Data(tiff(width: 2, height: 1, spp: 3, photometric: 2, samples: bytes([1000, 2000, 3000, 60000, 5, 6]), extraSample: nil, bits: 16)).write(to: rgb)
        let c = try XCTUnwrap(MicrographReader.open(rgb).first)
        XCTAssertEqual([c.width, c.height, c.channels], [2, 1, 3])
        XCTAssertEqual(c.pixelType, .uint16)
        XCTAssertEqual(c.data, bytes([1000, 2000, 3000, 60000, 5, 6]))
        XCTAssertEqual(c.floatFrame(0)[0], Float(0.299 * 1000 + 0.587 * 2000 + 0.114 * 3000), accuracy: 1e-3)
        let rgba = dir.appendingPathComponent("rgba16.tif")
        try Data(tiff(width: 2, height: 1, spp: 4, photometric: 2, samples: bytes([1, 2, 3, 65535, 4, 5, 6, 0]), bits: 16)).write(to: rgba)
        let a = try XCTUnwrap(MicrographReader.open(rgba).first)
        XCTAssertEqual([a.channels], [3])
        XCTAssertEqual(a.data, bytes([1, 2, 3, 4, 5, 6]))
    }

    /// Grey + alpha and RGBA TIFFs (ExtraSamples) read without their alpha, as PNGs are.
    func testTIFFAlphaIsDropped() throws {
        let grey = dir.appendingPathComponent("grey-alpha.tif")
        try Data(tiff(width: 3, height: 1, spp: 2, photometric: 1, samples: [10, 255, 20, 0, 30, 128])).write(to: grey)
        let g = try XCTUnwrap(MicrographReader.open(grey).first)
        XCTAssertEqual([g.width, g.height, g.channels], [3, 1, 1])
        XCTAssertEqual(g.data, [10, 20, 30])
        let rgba = dir.appendingPathComponent("rgba.tif")
        try Data(tiff(width: 2, height: 1, spp: 4, photometric: 2, samples: [1, 2, 3, 255, 4, 5, 6, 0])).write(to: rgba)
        let c = try XCTUnwrap(MicrographReader.open(rgba).first)
        XCTAssertEqual([c.width, c.height, c.channels], [2, 1, 3])
        XCTAssertEqual(c.data, [1, 2, 3, 4, 5, 6])
        // An extra sample of unspecified meaning (ExtraSamples 0: an imaginary part, say) is not
        // dropped unseen: refused, naming the layout.
        let unspecified = dir.appendingPathComponent("pairs.tif")
        try Data(tiff(width: 3, height: 1, spp: 2, photometric: 1, samples: [10, 1, 20, 2, 30, 3], extraSample: 0)).write(to: unspecified)
        XCTAssertThrowsError(try MicrographReader.open(unspecified)) { error in
            XCTAssertTrue("\(error)".contains("unsupported layout: SamplesPerPixel 2"), "\(error)")
        }
    }

    /// Mode 0 without IMOD's stamp: signed bytes (MRC2014), unless the header's range shows
    /// unsigned ones (dmin >= 0, dmax >= 128: older programs wrote 0-255 so; IMOD reads them so).
    func testMode0BytesUnsignedWhereTheHeaderRangeSaysSo() throws {
        let image = Micrograph(width: 4, height: 1, pixelType: .int8, data: [0, 100, 200, 255], format: "MRC")
        for (dmax, expected) in [(Float(255), PixelType.uint8), (Float(100), .int8)] {
            let url = dir.appendingPathComponent("mode0-\(Int(dmax)).mrc")
            try MRCWriter.write(image, to: url)
            var b = [UInt8](try Data(contentsOf: url))
            withUnsafeBytes(of: Float(0).bitPattern.littleEndian) { for k in 0..<4 { b[76 + k] = $0[k] } }
            withUnsafeBytes(of: dmax.bitPattern.littleEndian) { for k in 0..<4 { b[80 + k] = $0[k] } }
            for k in 152..<160 { b[k] = 0 }  // no IMOD stamp or flags
            try Data(b).write(to: url)
            let m = try XCTUnwrap(MicrographReader.open(url).first)
            XCTAssertEqual(m.pixelType, expected, "dmax \(dmax)")
            XCTAssertEqual(m.data, image.data)
        }
    }

    /// Old writers' files without a machine stamp: a big-endian mode 0 (which reads as mode 0 in
    /// either byte order) is told by its sizes; and IMOD's RGB mode 16 reads as 3 channels.
    func testUnstampedBigEndianBytesAndRGBMode() throws {
        let image = Micrograph(width: 512, height: 3, pixelType: .int8, data: (0..<1536).map { UInt8($0 % 100) },
                               pixelSize: PixelSize(isotropic: 0.2), format: "MRC")
        let url = dir.appendingPathComponent("bigendian.mrc")
        try MRCWriter.write(image, to: url)
        var b = [UInt8](try Data(contentsOf: url))
        for word in stride(from: 0, to: 104, by: 4) { b[word..<(word + 4)].reverse() }  // the numeric fields, big-endian
        for k in 212..<216 { b[k] = 0 }  // no machine stamp
        try Data(b).write(to: url)
        let m = try XCTUnwrap(MicrographReader.open(url).first)
        XCTAssertEqual([m.width, m.height], [512, 3])
        XCTAssertEqual(m.data, image.data)
        XCTAssertEqual(m.pixelSize?.x ?? 0, 0.2, accuracy: 1e-6)

        let rgb = dir.appendingPathComponent("rgb.mrc")
        var h = [UInt8](try Data(contentsOf: url).prefix(1024))
        for word in stride(from: 0, to: 104, by: 4) { h[word..<(word + 4)].reverse() }  // back to little-endian
        h[212] = 0x44; h[213] = 0x44
        h[0] = 2; h[1] = 0; h[4] = 1; h[5] = 0; h[8] = 1; h[9] = 0; h[12] = 16  // 2×1×1, mode 16
        try Data(h + [10, 20, 30, 40, 50, 60]).write(to: rgb)
        let c = try XCTUnwrap(MicrographReader.open(rgb).first)
        XCTAssertEqual([c.width, c.height, c.channels], [2, 1, 3])
        XCTAssertEqual(c.data, [10, 20, 30, 40, 50, 60])
        // 4-bit values two to a byte (IMOD's stamp with flag 16): refused, not read as half an image.
        let packed = dir.appendingPathComponent("packed.mrc")
        var p = h
        p[12] = 0
        withUnsafeBytes(of: UInt32(1_146_047_817).littleEndian) { for k in 0..<4 { p[152 + k] = $0[k] } }
        p[156] = 16 | 1
        try Data(p + [0x21, 0x43]).write(to: packed)
        XCTAssertThrowsError(try MicrographReader.open(packed)) { error in
            XCTAssertEqual((error as? MicrographError)?.file, packed.path)
            XCTAssertTrue("\(error)".contains("IMOD flag 16"), "\(error)")
        }
        // Mode 101 (SerialEM's 4-bit counting frames): two counts a byte, the left pixel in the
        // low 4 bits, read as bytes; 4×2 pixels in 4 bytes, 2 sections.
        let four = dir.appendingPathComponent("mode101.mrc")
        var f = h
        f[0] = 4; f[4] = 2; f[8] = 2; f[12] = 101
        try Data(f + [0x21, 0x43, 0x65, 0xf7, 0x00, 0x10, 0x0f, 0xff]).write(to: four)
        let counts = try XCTUnwrap(MicrographReader.open(four).first)
        XCTAssertEqual([counts.width, counts.height, counts.frames, counts.channels], [4, 2, 2, 1])
        XCTAssertEqual(counts.pixelType, .uint8)
        XCTAssertEqual(counts.data, [1, 2, 3, 4, 5, 6, 7, 15, 0, 0, 0, 1, 15, 0, 15, 15])
        // An odd width would end each row in half a byte: refused, naming it.
        f[0] = 3
        try Data(f + [UInt8](repeating: 0, count: 8)).write(to: four)
        XCTAssertThrowsError(try MicrographReader.open(four)) { error in
            XCTAssertTrue("\(error)".contains("mode 101 (4-bit) with an odd width nx = 3"), "\(error)")
        }
    }

    /// A calibration no micrograph can have (a SER step in metres without its EMI: 4e16 nm)
    /// reads as uncalibrated, not as a pixel size that would blow the image up.
    func testImplausiblePixelSizesReadAsUncalibrated() throws {
        let url = dir.appendingPathComponent("huge.mrc")
        let image = Micrograph(width: 8, height: 8, pixelType: .int16, data: [UInt8](repeating: 1, count: 128),
                               pixelSize: PixelSize(isotropic: 1e15), format: "MRC")
        try MRCWriter.write(image, to: url)
        XCTAssertNil(try MicrographReader.open(url).first?.pixelSize)
    }

    /// Header text typed for JSON (`inspect --json`): numbers and lists of them become numbers
    /// only where printing them gives the same text back.
    func testHeaderTextIsTypedOnlyWhereNothingIsLost() {
        func typed(_ t: String) -> Any { MicrographMetadata.typedValue(t) }
        XCTAssertEqual(typed("6") as? Int, 6)
        XCTAssertEqual(typed("-3") as? Int, -3)
        XCTAssertEqual(typed("908.6610107421875") as? Double, 908.6610107421875)
        XCTAssertEqual(typed("5.679131290012676e-09") as? Double, 5.679131290012676e-09)
        XCTAssertEqual(typed("16 16 1") as? [Int], [16, 16, 1])
        XCTAssertEqual((typed("908.5 908.5 0.0") as? [Any])?.count, 3)
        for text in ["0012", "nan", "inf", "1e-9", "+5", "1 2 x", "", " 1", "MAP", "little-endian", "27/08/2016 20:52:30"] {
            XCTAssertEqual(typed(text) as? String, text, "\(text) must stay text")
        }
    }
    /// Files read by ranges (`ReadableFile`, under every reader): the bytes asked for, a range
    /// past the end refused, a file that shrank since it was opened named as truncated (or read
    /// shorter where allowed), a folder and a FIFO refused before a byte is read.
    func testReadableFileReadsRangesAndRefusesWhatItCannot() throws {
        let f = dir.appendingPathComponent("bytes.bin")
        let content = (0..<5000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try Data(content).write(to: f)
        let file = try ReadableFile(f)
        XCTAssertEqual(file.size, 5000)
        XCTAssertEqual(try file.bytes(1000..<1010), Array(content[1000..<1010]))
        XCTAssertEqual(try file.bytes(0..<5000), content)
        XCTAssertEqual(try file.bytes(5000..<5000), [])
        XCTAssertThrowsError(try file.bytes(4990..<5001)) { XCTAssertTrue("\($0)".contains("bytes.bin"), "\($0)") }
        // Cut to 3000 bytes while open.
        XCTAssertEqual(truncate(f.path, 3000), 0)
        XCTAssertThrowsError(try file.bytes(2000..<4000)) { XCTAssertTrue("\($0)".contains("truncated while being read"), "\($0)") }
        XCTAssertEqual(try file.bytes(2000..<4000, shorter: true), Array(content[2000..<3000]))
        XCTAssertEqual(try readFileBytes(f), Array(content[0..<3000]))
        XCTAssertThrowsError(try ReadableFile(dir)) { XCTAssertTrue("\($0)".contains("is a directory"), "\($0)") }
        XCTAssertThrowsError(try ReadableFile(dir.appendingPathComponent("none.mrc"))) { XCTAssertTrue("\($0)".contains("no such file"), "\($0)") }
        let fifo = dir.appendingPathComponent("pipe.mrc")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        XCTAssertThrowsError(try ReadableFile(fifo)) { XCTAssertTrue("\($0)".contains("(a FIFO)"), "\($0)") }
    }
}

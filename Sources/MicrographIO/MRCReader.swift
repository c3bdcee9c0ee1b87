import Foundation

/// The fixed 1024-byte header of an MRC / MRC2014 file, decoded and validated.
struct MRCHeader {
    var nx: Int, ny: Int, nz: Int
    var mode: Int
    var mx: Int, my: Int, mz: Int
    var cella: (x: Double, y: Double, z: Double)
    var ispg: Int
    var nsymbt: Int
    var exttyp: String
    var nversion: Int
    var mapID: String
    var bigEndian: Bool
    var imodUnsignedBytes: Bool

    static let size = 1024

    /// Pixel type of an MRC mode (mode 0 is signed, as MRC2014 says; unsigned where IMOD's flag
    /// says so, or where a file without IMOD's stamp gives a maximum no signed byte reaches).
    static func pixelType(mode: Int, imodUnsignedBytes: Bool) -> PixelType? {
        switch mode {
        case 0: return imodUnsignedBytes ? .uint8 : .int8
        case 1: return .int16
        case 2: return .float32
        case 4: return .complex64
        case 6: return .uint16
        case 12: return .float16
        case 16: return .uint8  // IMOD's RGB: three bytes a pixel
        case 101: return .uint8  // 4-bit counts two to a byte, unpacked to a byte each
        default: return nil
        }
    }

    static let knownModes: Set<Int> = [0, 1, 2, 3, 4, 6, 12, 16, 101]

    /// True when the head of a file is plausibly an MRC header: the 'MAP ' ID at byte 208, or
    /// (older files) positive dimensions and a known mode in one of the two byte orders.
    static func looksLikeMRC(_ head: [UInt8]) -> Bool {
        guard head.count >= size else { return false }
        if Array(head[208..<212]) == Array("MAP ".utf8) { return true }
        for bigEndian in [false, true] {
            let r = ByteReader(bytes: head, file: "", bigEndian: bigEndian)
            guard let nx = try? r.i32(at: 0, "nx"), let ny = try? r.i32(at: 4, "ny"),
                  let nz = try? r.i32(at: 8, "nz"), let mode = try? r.i32(at: 12, "mode") else { continue }
            if nx > 0, ny > 0, nz > 0, nx <= 1 << 20, ny <= 1 << 20, knownModes.contains(Int(mode)) { return true }
        }
        return false
    }

    /// `bytes`: the file's first bytes (at least the header's, else it is too short), of a file
    /// of `fileSize` bytes.
    init(bytes: [UInt8], fileSize: Int, file: String) throws {
        var r = ByteReader(bytes: bytes, file: file)
        try r.require(0, MRCHeader.size, "MRC header")
        let machst = bytes[212]
        if machst == 0x44 {
            bigEndian = false
        } else if machst == 0x11 {
            bigEndian = true
        } else {
            // No valid machine stamp (old writers): the byte order in which the mode is known;
            // where it is known either way (mode 0 reads 0 both ways), the one whose sizes fit the
            // file (a 512 read in the wrong order is 131072), then the smaller sizes.
            func reading(_ be: Bool) throws -> (mode: Int, fits: Bool, largest: Int) {
                r.bigEndian = be
                let sizes = [try r.i32(at: 0, "nx"), try r.i32(at: 4, "ny"), try r.i32(at: 8, "nz")].map { Int($0) }
                let extended = Int(try r.i32(at: 92, "nsymbt"))
                let positive = sizes.allSatisfy { $0 > 0 }
                var pixels = 1, overflow = !positive
                for s in sizes where positive { let (m, o) = pixels.multipliedReportingOverflow(by: s); pixels = m; overflow = overflow || o }
                return (Int(try r.i32(at: 12, "mode")), !overflow && extended >= 0 && pixels <= fileSize - MRCHeader.size - extended,
                        positive ? sizes.max()! : Int.max)
            }
            let le = try reading(false), be = try reading(true)
            switch (MRCHeader.knownModes.contains(le.mode), MRCHeader.knownModes.contains(be.mode)) {
            case (false, true): bigEndian = true
            case (true, true): bigEndian = be.fits != le.fits ? be.fits : be.largest < le.largest
            default: bigEndian = false
            }
        }
        r.bigEndian = bigEndian
        nx = Int(try r.i32(at: 0, "nx")); ny = Int(try r.i32(at: 4, "ny")); nz = Int(try r.i32(at: 8, "nz"))
        mode = Int(try r.i32(at: 12, "mode"))
        mx = Int(try r.i32(at: 28, "mx")); my = Int(try r.i32(at: 32, "my")); mz = Int(try r.i32(at: 36, "mz"))
        cella = (Double(try r.f32(at: 40, "cella.x")), Double(try r.f32(at: 44, "cella.y")), Double(try r.f32(at: 48, "cella.z")))
        ispg = Int(try r.i32(at: 88, "ispg"))
        nsymbt = Int(try r.i32(at: 92, "nsymbt"))
        exttyp = MRCHeader.text(bytes[104..<108])
        nversion = Int(try r.i32(at: 108, "nversion"))
        mapID = MRCHeader.text(bytes[208..<212])
        let imodStamp = try r.i32(at: 152, "imodStamp")
        let imodFlags = try r.i32(at: 156, "imodFlags")
        // Mode 0 bytes are signed in MRC2014; IMOD's stamp and flag bit 0 say which. Without the
        // stamp, a header range of dmin >= 0 and dmax >= 128 can only be unsigned bytes (older
        // programs wrote them so; IMOD reads such files as unsigned too).
        let dmin = try r.f32(at: 76, "dmin"), dmax = try r.f32(at: 80, "dmax")
        imodUnsignedBytes = imodStamp == 1_146_047_817 ? (imodFlags & 1) == 0 : (dmin >= 0 && dmax >= 128 && dmax <= 255)

        // IMOD's flag 16: mode 0 holding 4-bit values two to a byte (nx is half the width).
        // Read as bytes they would be a half-width image of pairs: refused rather than that.
        if imodStamp == 1_146_047_817 && mode == 0 && (imodFlags & 16) != 0 {
            throw r.fail("4-bit values packed two to a byte (mode 0 with IMOD flag 16) are not supported")
        }
        guard nx > 0 else { throw r.fail("nx = \(nx) is not a positive width (corrupt MRC header)") }
        guard ny > 0 else { throw r.fail("ny = \(ny) is not a positive height (corrupt MRC header)") }
        guard nz > 0 else { throw r.fail("nz = \(nz) is not a positive number of sections (corrupt MRC header)") }
        guard nsymbt >= 0 else { throw r.fail("nsymbt = \(nsymbt) is negative (corrupt extended header size)") }
        guard nsymbt <= fileSize - MRCHeader.size else {
            throw r.fail("truncated: nsymbt = \(nsymbt) extended header bytes, but the file has only \(fileSize - MRCHeader.size) after the header")
        }
    }

    /// Printable ASCII of a fixed-size text field, trailing NULs and spaces removed.
    static func text(_ s: ArraySlice<UInt8>) -> String {
        let cut = s.prefix { $0 != 0 }
        return String(decoding: cut.filter { $0 >= 0x20 && $0 < 0x7f }, as: UTF8.self)
            .trimmingCharacters(in: .whitespaces)
    }
}

/// MRC2014 (and older MRC) images, stacks and volumes: modes 0 (int8; uint8 where IMOD's flag or
/// the header's range says so), 1 (int16), 2 (float32), 4 (complex64), 6 (uint16), 12 (float16),
/// 16 (IMOD's RGB, 3 channels) and 101 (4-bit counts, unpacked to uint8), either byte order.
/// Every section is a frame.
/// Pixel size = cella / mx in Å (uncalibrated when cella or mx ≤ 0). FEI1/FEI2 extended headers
/// give the acquisition metadata.
public enum MRCReader {
    /// The header read first, then the pixel data straight into the micrograph's array (not
    /// through a copy of the whole file: 32 MB less copied for a 4096² int16 image).
    public static func read(_ url: URL) throws -> [Micrograph] {
        let file = try ReadableFile(url)
        return [try parse(size: file.size, url: url) { try file.bytes($0) }]
    }

    public static func parse(_ bytes: [UInt8], url: URL) throws -> Micrograph {
        try parse(size: bytes.count, url: url) { [UInt8](bytes[$0]) }
    }

    /// A file of `size` bytes whose ranges `bytes` gives (each read once: the header, the
    /// extended header where its metadata is read, the data).
    static func parse(size: Int, url: URL, bytes: (Range<Int>) throws -> [UInt8]) throws -> Micrograph {
        let file = url.path
        let head = try bytes(0..<min(size, MRCHeader.size))
        let h = try MRCHeader(bytes: head, fileSize: size, file: file)
        let r = ByteReader(bytes: head, file: file, bigEndian: h.bigEndian)
        guard let type = MRCHeader.pixelType(mode: h.mode, imodUnsignedBytes: h.imodUnsignedBytes) else {
            switch h.mode {
            case 3: throw r.fail("mode 3 (complex int16) is not supported")
            default: throw r.fail("mode \(h.mode) is not an MRC pixel mode")
            }
        }
        let channels = h.mode == 16 ? 3 : 1
        // Mode 101 (SerialEM's counting-mode frames): two 4-bit counts a byte, the left pixel in
        // the low 4 bits. Rows of an odd width would end in half a byte, laid out as no document
        // says for sure: refused rather than guessed.
        let packed = h.mode == 101
        if packed && h.nx % 2 != 0 { throw r.fail("mode 101 (4-bit) with an odd width nx = \(h.nx) is not supported") }
        var count = packed ? h.nx / 2 : h.nx
        for (d, name) in [(h.ny, "ny"), (h.nz, "nz"), (type.byteCount * channels, "bytes per pixel")] {
            let (m, o) = count.multipliedReportingOverflow(by: d)
            guard !o else { throw r.fail("nx × ny × nz overflows (\(name) = \(d))") }
            count = m
        }
        let dataStart = MRCHeader.size + h.nsymbt
        guard count <= size - dataStart else {
            throw r.fail("truncated: \(h.nx)×\(h.ny)×\(h.nz) mode \(h.mode) needs \(count) data bytes after the header, file has \(size - dataStart)")
        }
        var data = try bytes(dataStart..<(dataStart + count))
        if packed {
            data = [UInt8](unsafeUninitializedCapacity: 2 * data.count) { out, initialised in
                for (k, byte) in data.enumerated() { out[2 * k] = byte & 0x0f; out[2 * k + 1] = byte >> 4 }
                initialised = 2 * data.count
            }
        }
        if h.bigEndian { swapSampleBytes(&data, sampleSize: type.isComplex ? type.byteCount / 2 : type.byteCount) }

        var pixelSize: PixelSize?
        var stored: StoredCalibration?
        if h.cella.x > 0, h.cella.y > 0, h.mx > 0, h.my > 0, h.cella.x.isFinite, h.cella.y.isFinite {
            let ax = h.cella.x / Double(h.mx), ay = h.cella.y / Double(h.my)
            stored = StoredCalibration(x: ax, y: ay, unitX: "Å", unitY: "Å")
            pixelSize = PixelSize(x: ax / 10, y: ay / 10)
        }
        var metadata = MicrographMetadata(extra: [
            "mode": String(h.mode), "nversion": String(h.nversion), "exttyp": h.exttyp,
            "nsymbt": String(h.nsymbt), "ispg": String(h.ispg), "map_id": h.mapID,
            "cella_A": "\(h.cella.x) \(h.cella.y) \(h.cella.z)", "mxyz": "\(h.mx) \(h.my) \(h.mz)",
            "byteorder": h.bigEndian ? "big-endian" : "little-endian",
        ])
        if h.exttyp == "FEI1" || h.exttyp == "FEI2" {
            readFEIExtendedHeader(try bytes(MRCHeader.size..<min(dataStart, MRCHeader.size + feiFieldsEnd)), into: &metadata)
        }
        return Micrograph(width: h.nx, height: h.ny, frames: h.nz, channels: channels, pixelType: type, data: data,
                          pixelSize: pixelSize, storedCalibration: stored, format: "mrc",
                          metadata: metadata, source: url)
    }

    /// Where the last field `readFEIExtendedHeader` reads ends: the extended header is read up
    /// to there (a stack's has a record per frame, megabytes, of which only the first's start is used).
    static let feiFieldsEnd = 451

    /// The first record of an FEI1/FEI2 extended header (always little-endian), from its first
    /// `feiFieldsEnd` bytes or fewer. Fields beyond the record's declared size or the bytes given
    /// are skipped, never read.
    static func readFEIExtendedHeader(_ bytes: [UInt8], into metadata: inout MicrographMetadata) {
        let r = ByteReader(bytes: bytes, file: "")
        guard let size32 = try? r.i32(at: 0, "metadata size") else { return }
        let recordSize = min(Int(size32), bytes.count)
        guard recordSize > 0 else { return }
        metadata.extra["ext_header_record_size"] = String(size32)
        func f64(_ at: Int) -> Double? {
            guard at + 8 <= recordSize, let v = try? r.f64(at: at, "") , v.isFinite else { return nil }
            return v
        }
        func str(_ at: Int) -> String? {
            guard at + 16 <= recordSize else { return nil }
            let s = MRCHeader.text(bytes[at..<(at + 16)])
            return s.isEmpty ? nil : s
        }
        if let t = f64(12), t != 0 { metadata.extra["timestamp_days_since_1900"] = String(t) }
        if let m = str(20) { metadata.microscope = m }
        if let ht = f64(84), ht.isFinite, ht > 0 { metadata.voltageKV = ht / 1000 }
        if let px = f64(156), px > 0 { metadata.extra["ext_pixel_size_x_m"] = String(px) }
        if let mag = f64(289), mag.isFinite, mag > 0 { metadata.magnification = mag }
        if let camera = str(435) { metadata.detector = camera }
    }
}

import CTIFF
import Foundation

/// TIFF and BigTIFF through libtiff: 8/16/32/64-bit integer and 16/32/64-bit float samples,
/// grey or RGB (any of those sample types; an alpha sample dropped), strips or tiles, either byte order, every compression libtiff was built
/// with. Pages of one shape and type form the frames of one image; pages of another shape
/// start a new image. Calibration: see `TIFFCalibration`.
///
/// libtiff never prints: its messages are captured per file and become the `MicrographError`
/// reason. Decoded sizes are checked before allocation: uncompressed pixels must fit in the
/// file, compressed ones may expand at most `maxCompressionRatio` times the file size.
public enum TIFFReader {
    /// Deflate tops out near 1032:1 and LZW near 2700:1; more than this is a decompression bomb.
    public static let maxCompressionRatio = 4096
    static let maxPages = 100_000

    struct Page {
        var width: Int, height: Int, channels: Int
        var type: PixelType
        var data: [UInt8]
        var compression: Int, predictor: Int, tiled: Bool
        var directoryIndex: Int
        /// Stored WhiteIsZero (Photometric 0): `data` holds the values inverted.
        var whiteIsZero = false

        /// Pages that stack as frames of one micrograph: one size and sample type, and stored the
        /// same way round (a WhiteIsZero page among others is a micrograph of its own, so that
        /// `Micrograph.storedValues` undoes exactly the pages inverted).
        func sameShape(_ o: Page) -> Bool {
            width == o.width && height == o.height && channels == o.channels && type == o.type && whiteIsZero == o.whiteIsZero
        }
    }

    public static func read(_ url: URL) throws -> [Micrograph] {
        let file = url.path
        let bytes = try readFileBytes(url)
        let fail = { (reason: String) in MicrographError(file: file, reason: reason) }
        guard bytes.count >= 8 else { throw fail("truncated: a TIFF header needs 8 bytes, file has \(bytes.count)") }
        let (budgetProduct, overflow) = bytes.count.multipliedReportingOverflow(by: maxCompressionRatio)
        var budget = overflow ? Int.max : budgetProduct

        let messages = UnsafeMutablePointer<nf_tiff_messages>.allocate(capacity: 1)
        messages.initialize(to: nf_tiff_messages())
        defer { messages.deinitialize(count: 1); messages.deallocate() }
        func libtiffReason() -> String {
            let text = withUnsafeBytes(of: messages.pointee.message) { raw -> String in
                let chars = raw.prefix { $0 != 0 }
                return String(decoding: chars, as: UTF8.self)
            }
            return text.isEmpty ? "libtiff reported no reason" : text
        }

        guard let tif = nf_tiff_open(file, "rm", messages, tmsize_t(min(budget, Int(Int64.max)))) else {
            throw fail("not a readable TIFF (\(libtiffReason()))")
        }
        defer { TIFFClose(tif) }

        var pages: [Page] = []
        var directory = 0
        while true {
            // A reduced-resolution page (NewSubfileType bit 0: a preview of the page before) is
            // not an image of its own, as tifffile's series have it.
            var subfile: UInt32 = 0
            let reduced = directory > 0 && nf_tiff_get_u32(tif, UInt32(TIFFTAG_SUBFILETYPE), &subfile) == 1 && subfile & 1 != 0
            if !reduced {
                pages.append(try decodePage(tif, directory: directory, fileSize: bytes.count, budget: &budget,
                                            fail: fail, reason: libtiffReason))
            }
            directory += 1
            guard directory < maxPages else { throw fail("more than \(maxPages) pages") }
            let errorsBefore = messages.pointee.count
            if TIFFReadDirectory(tif) != 1 {
                if messages.pointee.count > errorsBefore {
                    throw fail("page \(directory): corrupt directory (\(libtiffReason()))")
                }
                break
            }
        }

        // Runs of pages with the same shape and type become one image each.
        var runs: [[Page]] = []
        for p in pages {
            if let last = runs.last?.first, last.sameShape(p) { runs[runs.count - 1].append(p) } else { runs.append([p]) }
        }
        let byteOrder = bytes[0] == 0x4D ? ">" : "<"
        return runs.map { run in
            let first = run[0]
            var metadata = MicrographMetadata(extra: [
                "compression": String(first.compression), "predictor": String(first.predictor),
                "byteorder": byteOrder, "tiled": first.tiled ? "true" : "false", "pages": String(run.count),
                "first_page": String(first.directoryIndex),
            ])
            // Said where `inspect` shows it: Fiji keeps such values as stored and shows them through
            // an inverting table; NanoFind reads what is shown.
            if run.contains(where: \.whiteIsZero) { metadata.extra["photometric"] = "WhiteIsZero: read inverted (largest value minus each)" }
            var calibration = TIFFCalibration()
            if let dir = TIFFDirectory.directory(bytes, file: file, index: first.directoryIndex) {
                calibration = TIFFCalibration.find(dir, width: first.width, height: first.height, metadata: &metadata)
            }
            var data = first.data
            if run.count > 1 {
                data.reserveCapacity(first.data.count * run.count)
                for p in run.dropFirst() { data.append(contentsOf: p.data) }
            }
            return Micrograph(width: first.width, height: first.height, frames: run.count, channels: first.channels,
                              pixelType: first.type, data: data, pixelSize: calibration.pixelSize,
                              storedCalibration: calibration.stored, format: "tiff", metadata: metadata, source: url)
        }
    }

    static func compressionName(_ c: Int) -> String {
        switch c {
        case 1: return "none"
        case 5: return "LZW"
        case 7: return "JPEG"
        case 8, 32946: return "Deflate"
        case 32773: return "PackBits"
        case 34887: return "LERC"
        case 34925: return "LZMA"
        case 50000: return "ZSTD"
        case 50001: return "WebP"
        case 50002: return "JPEG XL"
        default: return "code \(c)"
        }
    }

    static func pixelType(bitsPerSample: Int, sampleFormat: Int) -> PixelType? {
        switch (bitsPerSample, sampleFormat) {
        case (8, 1): return .uint8
        case (8, 2): return .int8
        case (16, 1): return .uint16
        case (16, 2): return .int16
        case (32, 1): return .uint32
        case (32, 2): return .int32
        case (64, 1): return .uint64
        case (64, 2): return .int64
        case (16, 3): return .float16
        case (32, 3): return .float32
        case (64, 3): return .float64
        default: return nil
        }
    }

    static func decodePage(_ tif: OpaquePointer, directory: Int, fileSize: Int, budget: inout Int,
                           fail: (String) -> MicrographError, reason: () -> String) throws -> Page {
        func u16(_ tag: Int32) -> Int { var v: UInt16 = 0; return nf_tiff_get_u16(tif, UInt32(tag), &v) == 1 ? Int(v) : -1 }
        func u32(_ tag: Int32) -> Int { var v: UInt32 = 0; return nf_tiff_get_u32(tif, UInt32(tag), &v) == 1 ? Int(v) : -1 }
        let page = "page \(directory)"
        let width = u32(TIFFTAG_IMAGEWIDTH), height = u32(TIFFTAG_IMAGELENGTH)
        let bps = u16(TIFFTAG_BITSPERSAMPLE), spp = u16(TIFFTAG_SAMPLESPERPIXEL)
        let sampleFormat = u16(TIFFTAG_SAMPLEFORMAT), compression = u16(TIFFTAG_COMPRESSION)
        let planar = u16(TIFFTAG_PLANARCONFIG), photometric = u16(TIFFTAG_PHOTOMETRIC)
        let predictor = max(1, u16(TIFFTAG_PREDICTOR))
        guard width > 0 else { throw fail("\(page): ImageWidth is missing or 0") }
        guard height > 0 else { throw fail("\(page): ImageLength is missing or 0") }
        guard compression > 0, TIFFIsCODECConfigured(UInt16(compression)) == 1 else {
            throw fail("\(page): unsupported compression \(compression) (\(compressionName(compression))): this libtiff cannot decode it")
        }
        guard let type = pixelType(bitsPerSample: bps, sampleFormat: sampleFormat) else {
            throw fail("\(page): unsupported sample type: BitsPerSample \(bps), SampleFormat \(sampleFormat)")
        }
        // Grey with alpha and RGBA (an extra sample per pixel that ExtraSamples calls associated or
        // unassociated alpha) are read without the alpha, as the PNG reader reads them; an extra
        // sample of unspecified meaning (an imaginary part, say) is not dropped unseen.
        var extraSample: UInt16 = 0
        let alpha = spp > 1 && nf_tiff_get_extrasample(tif, &extraSample) == 1 && (extraSample == 1 || extraSample == 2)
        let channels: Int
        switch (spp, photometric) {
        case (1, _): channels = 1
        case (2, 0) where alpha, (2, 1) where alpha: channels = 1
        case (3, 2): channels = 3
        case (4, 2) where alpha: channels = 3
        default: throw fail("\(page): unsupported layout: SamplesPerPixel \(spp), Photometric \(photometric), BitsPerSample \(bps)")
        }
        // WhiteIsZero: 0 is shown white, the largest value black. Read as intensities (the image as
        // Fiji shows it), the largest value minus each, for unsigned samples; signed and float
        // samples have no largest value to count down from.
        let whiteIsZero = channels == 1 && photometric == 0
        if whiteIsZero && ![.uint8, .uint16, .uint32, .uint64].contains(type) {
            throw fail("\(page): Photometric 0 (WhiteIsZero) with \(type.rawValue) samples is not supported (only unsigned ones can be turned into intensities)")
        }
        if spp > 1 && planar != 1 {
            throw fail("\(page): PlanarConfiguration \(planar) (separate planes) is not supported for \(spp) samples per pixel")
        }
        let pixelBytes = spp * type.byteCount  // as stored; the alpha is dropped after decoding
        let (rowBytes, o1) = width.multipliedReportingOverflow(by: pixelBytes)
        let (pageBytes, o2) = rowBytes.multipliedReportingOverflow(by: height)
        guard !o1, !o2 else { throw fail("\(page): \(width)×\(height) pixels overflow") }
        if compression == 1 {
            guard pageBytes <= fileSize else {
                throw fail("truncated: \(page) is \(width)×\(height) uncompressed \(type.rawValue), needs \(pageBytes) bytes, file has \(fileSize)")
            }
        }
        guard pageBytes <= budget else {
            throw fail("\(page): \(width)×\(height) \(type.rawValue) needs \(pageBytes) bytes, more than \(maxCompressionRatio)× the file size (refused as a decompression bomb)")
        }
        budget -= pageBytes
        var data = [UInt8](repeating: 0, count: pageBytes)
        let tiled = TIFFIsTiled(tif) != 0
        try data.withUnsafeMutableBytes { out in
            guard let base = out.baseAddress else { return }
            if tiled {
                let tw = u32(TIFFTAG_TILEWIDTH), th = u32(TIFFTAG_TILELENGTH)
                guard tw > 0, th > 0 else { throw fail("\(page): TileWidth \(tw) / TileLength \(th) invalid") }
                let (tileRow, o3) = tw.multipliedReportingOverflow(by: pixelBytes)
                let (tileBytes, o4) = tileRow.multipliedReportingOverflow(by: th)
                guard !o3, !o4, tileBytes <= max(4 * pageBytes, 1 << 24) else {
                    throw fail("\(page): tile \(tw)×\(th) is implausible for a \(width)×\(height) image")
                }
                var tile = [UInt8](repeating: 0, count: tileBytes)
                try tile.withUnsafeMutableBytes { tbuf in
                    guard let tbase = tbuf.baseAddress else { return }
                    for ty in stride(from: 0, to: height, by: th) {
                        for tx in stride(from: 0, to: width, by: tw) {
                            let index = TIFFComputeTile(tif, UInt32(tx), UInt32(ty), 0, 0)
                            let n = TIFFReadEncodedTile(tif, index, tbase, tmsize_t(tileBytes))
                            guard n >= 0 else { throw fail("\(page): tile \(index) cannot be decoded (\(reason()))") }
                            let rows = min(th, height - ty), cols = min(tw, width - tx)
                            for r in 0..<rows {
                                memcpy(base + ((ty + r) * width + tx) * pixelBytes, tbase + r * tileRow, cols * pixelBytes)
                            }
                        }
                    }
                }
            } else {
                var rowsPerStrip = u32(TIFFTAG_ROWSPERSTRIP)
                if rowsPerStrip <= 0 || rowsPerStrip > height { rowsPerStrip = height }
                let strips = Int(TIFFNumberOfStrips(tif))
                let (covered, coverOverflow) = strips.multipliedReportingOverflow(by: rowsPerStrip)
                guard strips > 0, coverOverflow || covered >= height else {
                    throw fail("\(page): \(strips) strips of \(rowsPerStrip) rows do not cover \(height) rows")
                }
                for s in 0..<strips {
                    let row0 = s * rowsPerStrip
                    if row0 >= height { break }
                    let rows = min(rowsPerStrip, height - row0)
                    let want = rows * rowBytes
                    let n = TIFFReadEncodedStrip(tif, UInt32(s), base + row0 * rowBytes, tmsize_t(want))
                    guard n >= 0 else { throw fail("\(page): strip \(s) cannot be decoded (\(reason()))") }
                    guard n == want else {
                        throw fail("truncated: \(page) strip \(s) decodes to \(n) bytes, expected \(want)")
                    }
                }
            }
        }
        if spp != channels {
            let keep = channels * type.byteCount
            var kept = [UInt8](repeating: 0, count: width * height * keep)
            data.withUnsafeBytes { src in
                kept.withUnsafeMutableBytes { dst in
                    for p in 0..<(width * height) { memcpy(dst.baseAddress! + p * keep, src.baseAddress! + p * pixelBytes, keep) }
                }
            }
            data = kept
        }
        // Every bit flipped is (2^bits − 1) − v for each unsigned sample, whatever its byte order.
        if whiteIsZero { for i in data.indices { data[i] = ~data[i] } }
        return Page(width: width, height: height, channels: channels, type: type, data: data,
                    compression: compression, predictor: predictor, tiled: tiled, directoryIndex: directory, whiteIsZero: whiteIsZero)
    }
}

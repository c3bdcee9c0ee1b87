import Foundation

/// Writes uncompressed little-endian TIFFs with ImageJ calibration, so Fiji shows the scale in
/// nm: ImageDescription "ImageJ=1.11a\nunit=nm\n…", XResolution/YResolution = 1 / pixel size
/// (pixels per nm) and ResolutionUnit none. Frames become pages whose pixel data is contiguous,
/// as ImageJ expects of a stack. Meant for float32 maps, uint8 masks and uint16 labels; any
/// integer or float type and 8-bit RGB are accepted. The write is atomic.
///
/// Masks and label images can be written `deflated`: each page one zlib stream (compression 8,
/// Adobe deflate, run-length matches: `RunDeflater`) of its rows with the horizontal-difference
/// predictor (2), which turns a run of one particle id into zeros. Fiji, libtiff and tifffile
/// read it; a 4096² mask of 95 particles shrinks from 16 MB to 0.09 MB, its labels from 32 MB
/// to 0.12 MB.
public enum TIFFWriter {
    public static func write(_ image: Micrograph, to url: URL) throws {
        try write(image, to: url, deflated: false)
    }

    public static func write(_ image: Micrograph, to url: URL, deflated: Bool) throws {
        if deflated {
            guard image.channels == 1, [.uint8, .uint16, .int8, .int16].contains(image.pixelType) else {
                throw MicrographError(url: url, reason: "deflated TIFFs are written for 8/16-bit grey images, not \(image.channels) channels of \(image.pixelType.rawValue)")
            }
            let pages = (0..<max(1, image.frames)).map { deflatedPage(image, frame: $0) }
            try writeCompressed(Layout(image), pages: pages, to: url)
            return
        }
        let (head, tail) = try parts(Layout(image), file: url.path)
        try image.data.withUnsafeBytes { data in try writeAtomically(head, data, tail, to: url) }
    }

    /// A one-page 16-bit grey image, deflated as `write(_:to:deflated:)` does, whose rows the
    /// caller fills a band at a time (`fill(y0, y1, into)`: rows y0..<y1, one after the other,
    /// little-endian): label ids kept as Int32 reach the file without a 16-bit copy of the whole
    /// image (32 MB for 4096², fresh memory on every image).
    public static func writeDeflatedUInt16(width: Int, height: Int, pixelSize: PixelSize?, to url: URL,
                                           rows fill: (_ y0: Int, _ y1: Int, _ into: UnsafeMutablePointer<UInt16>) -> Void) throws {
        let rowBytes = 2 * width, band = bandRows(height: height, rowBytes: rowBytes)
        let scratch = UnsafeMutablePointer<UInt16>.allocate(capacity: max(1, band * width))
        defer { scratch.deallocate() }
        let page = deflatedPage(width: width, height: height, bytes: 2) { y0, y1, body in
            fill(y0, y1, scratch)
            body(UnsafeRawPointer(scratch))
        }
        try writeCompressed(Layout(width: width, height: height, frames: 1, channels: 1, pixelType: .uint16, pixelSize: pixelSize,
                                   dataCount: 0, range: nil), pages: [page], to: url)
    }

    /// A file of deflated pages (`deflatedPage`), one per frame of `layout`.
    static func writeCompressed(_ layout: Layout, pages: [[UInt8]], to url: URL) throws {
        var layout = layout
        layout.compressedPages = pages.map(\.count)
        layout.dataCount = pages.reduce(0) { $0 + $1.count }
        let (head, tail) = try parts(layout, file: url.path)
        let data = pages.count == 1 ? pages[0] : Array(pages.joined())
        try data.withUnsafeBytes { data in try writeAtomically(head, data, tail, to: url) }
    }

    /// Rows in a band the deflater takes at once: about 256 KiB.
    static func bandRows(height: Int, rowBytes: Int) -> Int { max(1, min(height, (256 << 10) / max(1, rowBytes))) }

    /// One page of a `Micrograph`, deflated (`deflatedPage(width:height:bytes:rows:)`) straight
    /// from its bytes.
    static func deflatedPage(_ image: Micrograph, frame: Int) -> [UInt8] {
        let rowBytes = image.width * image.pixelType.byteCount, pageBytes = rowBytes * image.height
        return image.data.withUnsafeBytes { all in
            precondition(all.count >= (frame + 1) * pageBytes)
            return deflatedPage(width: image.width, height: image.height, bytes: image.pixelType.byteCount) { y0, _, body in
                body(all.baseAddress! + frame * pageBytes + y0 * rowBytes)
            }
        }
    }

    /// One page's rows with the horizontal predictor (each sample minus the one before it in its
    /// row, modulo 2⁸ or 2¹⁶, little-endian), deflated (`RunDeflater`) a band of rows at a time
    /// (no copy of the whole page). `rows(y0, y1, body)` calls `body` with rows y0..<y1 of
    /// `bytes`-byte little-endian samples, one after the other.
    static func deflatedPage(width w: Int, height h: Int, bytes: Int,
                             rows: (_ y0: Int, _ y1: Int, _ body: (UnsafeRawPointer) -> Void) -> Void) -> [UInt8] {
        let rowBytes = w * bytes
        let band = bandRows(height: h, rowBytes: rowBytes)
        var deflater = RunDeflater()
        var differences = [UInt8](repeating: 0, count: band * rowBytes)
        var y0 = 0
        while y0 < h {
            let y1 = min(h, y0 + band)
            rows(y0, y1) { inBase in
                differences.withUnsafeMutableBytes { out in
                    // Each difference from two loads (no value carried from one column to the
                    // next), through raw pointers into this band's rows: loops the compiler
                    // vectorises.
                    guard w > 0, let outBase = out.baseAddress else { return }
                    for r in 0..<(y1 - y0) {
                        let i = inBase + r * rowBytes, o = outBase + r * rowBytes
                        if bytes == 1 {
                            o.storeBytes(of: i.load(as: UInt8.self), as: UInt8.self)
                            for x in 1..<w {
                                o.storeBytes(of: i.load(fromByteOffset: x, as: UInt8.self) &- i.load(fromByteOffset: x - 1, as: UInt8.self),
                                             toByteOffset: x, as: UInt8.self)
                            }
                        } else {
                            func sample(_ x: Int) -> UInt16 { UInt16(littleEndian: i.loadUnaligned(fromByteOffset: 2 * x, as: UInt16.self)) }
                            o.storeBytes(of: sample(0).littleEndian, as: UInt16.self)
                            for x in 1..<w {
                                o.storeBytes(of: (sample(x) &- sample(x - 1)).littleEndian, toByteOffset: 2 * x, as: UInt16.self)
                            }
                        }
                    }
                    deflater.feed(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(out)[..<((y1 - y0) * rowBytes)]))
                }
            }
            y0 = y1
        }
        return deflater.finish()
    }

    /// Writes a float32 map (row-major) with an optional pixel size in nm, straight from the
    /// values (no copy of the pixels on a little-endian host). The display range ImageJ shows is
    /// `displayRange`, or the values' own (a pass over them) when nil.
    public static func writeFloat32(_ values: [Float], width: Int, height: Int, pixelSizeNM: Double?,
                                    displayRange: (min: Double, max: Double)? = nil, to url: URL) throws {
        precondition(values.count == width * height, "\(values.count) values for \(width)x\(height)")
        let range = displayRange.map { ($0.min, $0.max) } ?? values.withUnsafeBufferPointer { Layout.displayRange($0) }
        let layout = Layout(width: width, height: height, frames: 1, channels: 1, pixelType: .float32,
                            pixelSize: pixelSizeNM.map { PixelSize(isotropic: $0) }, dataCount: 4 * values.count, range: range)
        let (head, tail) = try parts(layout, file: url.path)
        if UInt32(1).littleEndian == 1 {
            try values.withUnsafeBytes { data in try writeAtomically(head, data, tail, to: url) }
        } else {  // big-endian host: swap to the little-endian the writer stores
            let swapped = values.map { $0.bitPattern.littleEndian }
            try swapped.withUnsafeBytes { data in try writeAtomically(head, data, tail, to: url) }
        }
    }

    /// The whole file in memory.
    public static func encode(_ image: Micrograph, file: String = "") throws -> [UInt8] {
        let (head, tail) = try parts(Layout(image), file: file)
        return head + image.data + tail
    }

    /// What the header and the directories need to know of an image: everything but its pixels.
    struct Layout {
        let width: Int, height: Int, frames: Int, channels: Int
        let pixelType: PixelType
        let pixelSize: PixelSize?
        /// Bytes of pixel data, all frames.
        var dataCount: Int
        /// The display range ImageJ reads from the description (float images).
        let range: (Double, Double)?
        /// Each page's deflated size (predictor 2), or nil for uncompressed pages.
        var compressedPages: [Int]? = nil
        var samplesPerFrame: Int { width * height * channels }

        init(width: Int, height: Int, frames: Int, channels: Int, pixelType: PixelType, pixelSize: PixelSize?, dataCount: Int,
             range: (Double, Double)?) {
            self.width = width; self.height = height; self.frames = frames; self.channels = channels
            self.pixelType = pixelType; self.pixelSize = pixelSize; self.dataCount = dataCount; self.range = range
        }

        /// The minimum and maximum of `count` float values (the first frame's), nil when not finite.
        @inline(__always)
        static func displayRange(count: Int, _ value: (Int) -> Float) -> (Double, Double)? {
            var lo = Float.infinity, hi = -Float.infinity
            for k in 0..<count { let v = value(k); if v < lo { lo = v }; if v > hi { hi = v } }
            return lo.isFinite && hi.isFinite ? (Double(lo), Double(hi)) : nil
        }

        /// The same for a float buffer, 16 values at a time (the scalar loop above keeps its two
        /// comparisons in sequence: about 20 ms per 4096² map). Equal to the scalar loop's result
        /// bit for bit: a NaN is never taken, and extremes other than zero have one bit pattern.
        /// A zero extreme (a minimum of 0 is common: clamped or cleared probabilities, label maps)
        /// is the scalar loop's first zero, +0 or −0: found by a scan that stops there.
        static func displayRange(_ v: UnsafeBufferPointer<Float>) -> (Double, Double)? {
            guard let base = v.baseAddress else { return nil }
            var lo = SIMD16<Float>(repeating: .infinity), hi = SIMD16<Float>(repeating: -.infinity)
            var k = 0
            while k + 16 <= v.count {
                let x = UnsafeRawPointer(base + k).loadUnaligned(as: SIMD16<Float>.self)
                lo.replace(with: x, where: x .< lo)
                hi.replace(with: x, where: x .> hi)
                k += 16
            }
            var l = lo.min(), h = hi.max()
            while k < v.count { let x = v[k]; if x < l { l = x }; if x > h { h = x }; k += 1 }
            if l == 0 || h == 0 {
                // Every value before the first zero is above a zero minimum (below a zero
                // maximum), so the scalar loop takes that zero and keeps it.
                var i = 0
                while i + 16 <= v.count && !any(UnsafeRawPointer(base + i).loadUnaligned(as: SIMD16<Float>.self) .== 0) { i += 16 }
                while v[i] != 0 { i += 1 }
                if l == 0 { l = v[i] }
                if h == 0 { h = v[i] }
            }
            return l.isFinite && h.isFinite ? (Double(l), Double(h)) : nil
        }

        init(_ image: Micrograph) {
            var range: (Double, Double)? = nil
            if image.pixelType == .float32 {
                range = image.data.withUnsafeBytes { raw in
                    Layout.displayRange(count: image.samplesPerFrame) {
                        Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)))
                    }
                }
            } else if image.pixelType == .float64 || image.pixelType == .float16 {
                let s = image.statistics(frame: 0)
                if s.min.isFinite && s.max.isFinite { range = (s.min, s.max) }
            }
            self.init(width: image.width, height: image.height, frames: image.frames, channels: image.channels,
                      pixelType: image.pixelType, pixelSize: image.pixelSize, dataCount: image.data.count, range: range)
        }
    }

    /// The bytes before the pixel data (the 8-byte header) and after it (padding, then one
    /// directory per frame with its payloads).
    static func parts(_ image: Layout, file: String) throws -> (head: [UInt8], tail: [UInt8]) {
        let fail = { (reason: String) in MicrographError(file: file, reason: reason) }
        let sampleFormat: UInt16
        switch image.pixelType {
        case .uint8, .uint16, .uint32, .uint64, .bool: sampleFormat = 1
        case .int8, .int16, .int32, .int64: sampleFormat = 2
        case .float16, .float32, .float64: sampleFormat = 3
        case .complex64, .complex128: throw fail("TIFF writer does not store complex pixels")
        }
        guard image.channels == 1 || (image.channels == 3 && image.pixelType == .uint8) else {
            throw fail("TIFF writer takes grey images or 8-bit RGB, not \(image.channels) channels of \(image.pixelType.rawValue)")
        }
        let frameBytes = image.samplesPerFrame * image.pixelType.byteCount
        let dataStart = 8
        let ifdStart = dataStart + image.dataCount + (image.dataCount & 1)
        guard ifdStart < Int(UInt32.max) - 4096 - 256 * image.frames else {
            throw fail("image of \(image.dataCount) bytes is too large for a classic TIFF")
        }

        var description = "ImageJ=1.11a\n"
        if image.frames > 1 { description += "images=\(image.frames)\nslices=\(image.frames)\n" }
        if image.pixelSize != nil { description += "unit=nm\n" }
        if let (lo, hi) = image.range { description += "min=\(lo)\nmax=\(hi)\n" }
        if image.frames > 1 { description += "loop=false\n" }
        let descriptionBytes = Array(description.utf8) + [0]

        var head = [UInt8](repeating: 0, count: 8)
        head[0] = 0x49; head[1] = 0x49; head[2] = 42
        for k in 0..<4 { head[4 + k] = UInt8((UInt32(ifdStart) >> (8 * UInt32(k))) & 0xff) }
        // The tail's bytes sit at file offset `base` + index (after one padding byte if odd).
        var out = [UInt8]()
        if image.dataCount & 1 == 1 { out.append(0) }
        let base = ifdStart - out.count
        func put16(_ v: UInt16, at: Int) { out[at - base] = UInt8(v & 0xff); out[at - base + 1] = UInt8(v >> 8) }
        func put32(_ v: UInt32, at: Int) { for k in 0..<4 { out[at - base + k] = UInt8((v >> (8 * UInt32(k))) & 0xff) } }

        let resolution = image.pixelSize.map { (x: rational(1 / $0.x), y: rational(1 / $0.y)) }
        for frame in 0..<image.frames {
            // (tag, type, count, value or nil + payload)
            var entries: [(tag: UInt16, type: UInt16, count: UInt32, inline: UInt32?, payload: [UInt8])] = []
            func short(_ tag: UInt16, _ v: UInt16) { entries.append((tag, 3, 1, UInt32(v), [])) }
            func long(_ tag: UInt16, _ v: UInt32) { entries.append((tag, 4, 1, v, [])) }
            func ratio(_ tag: UInt16, _ r: (UInt32, UInt32)) {
                var p: [UInt8] = []
                for v in [r.0, r.1] { for k in 0..<4 { p.append(UInt8((v >> (8 * UInt32(k))) & 0xff)) } }
                entries.append((tag, 5, 1, nil, p))
            }
            if image.frames > 1 { long(254, 2) } else { long(254, 0) }
            long(256, UInt32(image.width))
            long(257, UInt32(image.height))
            if image.channels == 3 {
                var p: [UInt8] = []
                for _ in 0..<3 { p += [8, 0] }
                entries.append((258, 3, 3, nil, p))
            } else {
                short(258, UInt16(image.pixelType.byteCount * 8))
            }
            short(259, image.compressedPages == nil ? 1 : 8)
            short(262, image.channels == 3 ? 2 : 1)
            if frame == 0 {
                entries.append((270, 2, UInt32(descriptionBytes.count), nil, descriptionBytes))
            }
            let pageOffset = image.compressedPages.map { $0[..<frame].reduce(0, +) } ?? frame * frameBytes
            long(273, UInt32(dataStart + pageOffset))
            short(277, UInt16(image.channels))
            long(278, UInt32(image.height))
            long(279, UInt32(image.compressedPages?[frame] ?? frameBytes))
            if let resolution {
                ratio(282, resolution.x)
                ratio(283, resolution.y)
                short(296, 1)
            }
            if image.compressedPages != nil { short(317, 2) }
            if image.channels == 3 {
                entries.append((339, 3, 3, nil, [UInt8](repeating: 0, count: 6).enumerated().map { $0.offset % 2 == 0 ? UInt8(sampleFormat) : 0 }))
            } else {
                short(339, sampleFormat)
            }
            if image.channels == 1 && image.pixelType == .bool { }  // stored as 0/1 bytes

            let ifdOffset = base + out.count
            let ifdSize = 2 + 12 * entries.count + 4
            var payloadAt = ifdOffset + ifdSize
            out.append(contentsOf: [UInt8](repeating: 0, count: ifdSize))
            put16(UInt16(entries.count), at: ifdOffset)
            for (k, e) in entries.enumerated() {
                let at = ifdOffset + 2 + 12 * k
                put16(e.tag, at: at); put16(e.type, at: at + 2); put32(e.count, at: at + 4)
                if let v = e.inline {
                    if e.type == 3 { put16(UInt16(v), at: at + 8) } else { put32(v, at: at + 8) }
                } else if e.payload.count <= 4 {
                    for (j, b) in e.payload.enumerated() { out[at - base + 8 + j] = b }
                } else {
                    put32(UInt32(payloadAt), at: at + 8)
                    out.append(contentsOf: e.payload)
                    if e.payload.count & 1 == 1 { out.append(0) }
                    payloadAt = base + out.count
                }
            }
            let next = frame + 1 < image.frames ? UInt32(base + out.count) : 0
            put32(next, at: ifdOffset + 2 + 12 * entries.count)
        }
        return (head, out)
    }

    /// The closest fraction n/d to `value` with n, d < 2^32 (continued fractions), for RATIONAL tags.
    static func rational(_ value: Double) -> (UInt32, UInt32) {
        guard value.isFinite, value > 0 else { return (0, 1) }
        let limit = Double(UInt32.max)
        if value >= limit { return (UInt32.max, 1) }
        if value <= 1 / limit { return (1, UInt32.max) }
        var (h0, h1) = (0.0, 1.0), (k0, k1) = (1.0, 0.0)
        var x = value
        var best = (Double(1), Double(1))
        for _ in 0..<64 {
            let a = x.rounded(.down)
            let h2 = a * h1 + h0, k2 = a * k1 + k0
            if h2 > limit || k2 > limit { break }
            best = (h2, k2)
            (h0, h1) = (h1, h2); (k0, k1) = (k1, k2)
            let frac = x - a
            if frac < 1e-15 { break }
            x = 1 / frac
        }
        if best.1 == 0 { best.1 = 1 }
        return (UInt32(best.0), UInt32(best.1))
    }
}

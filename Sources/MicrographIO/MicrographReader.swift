import Foundation

/// The file formats NanoFind recognises, as detected from a file's content.
public enum DetectedFormat: String, Sendable, CaseIterable {
    case mrc, tiff, png, npy, dm3, dm4, ser, emd
}

/// Opens any supported micrograph file. The reader is chosen by the file's content (magic
/// bytes), not by its extension; only MRC, which has no magic number, falls back on header
/// plausibility and finally on the extension.
public enum MicrographReader {
    /// Every image the file holds (several for a multi-image file), pixels in native type.
    public static func open(_ url: URL) throws -> [Micrograph] {
        let head = try readFileHead(url, count: 1024)
        guard let format = detectFormat(head: head, fileExtension: url.pathExtension) else {
            throw MicrographError(url: url, reason: "unknown file format (not MRC, TIFF, DM3/DM4, SER, EMD, PNG or NPY)")
        }
        let images: [Micrograph]
        switch format {
        case .mrc: images = try MRCReader.read(url)
        case .tiff: images = try TIFFReader.read(url)
        case .png: images = [try PNGReader.read(url)]
        case .npy: images = [try NPYFile.readMicrograph(url)]
        case .dm3, .dm4: images = try DMReader.read(url)
        case .ser: images = try SERReader.read(url)
        case .emd: images = try EMDReader.read(url)
        }
        return images.map(plausiblyCalibrated)
    }

    /// Pixel sizes (nm) a micrograph can have: from a picometre-scale sampling to a 10 mm field
    /// per pixel. Outside them the calibration is a misread or a default (a SER file without
    /// its EMI states its step in metres: 4e16 nm) and the image counts as uncalibrated; the
    /// stored calibration keeps what the file says.
    public static let plausiblePixelSizeNm: ClosedRange<Double> = 1e-6...1e7

    static func plausiblyCalibrated(_ m: Micrograph) -> Micrograph {
        guard let p = m.pixelSize, !(plausiblePixelSizeNm.contains(p.x) && plausiblePixelSizeNm.contains(p.y)) else { return m }
        var out = m
        out.pixelSize = nil
        return out
    }

    /// The format of a file whose first bytes (up to 1024) are `head`; nil when none fits.
    public static func detectFormat(head: [UInt8], fileExtension: String) -> DetectedFormat? {
        func starts(_ magic: [UInt8]) -> Bool { head.count >= magic.count && Array(head[0..<magic.count]) == magic }
        func be32(_ at: Int) -> UInt32? {
            guard head.count >= at + 4 else { return nil }
            return head[at..<(at + 4)].reduce(0) { ($0 << 8) | UInt32($1) }
        }
        if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A])
            || starts([0x49, 0x49, 0x2B, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2B]) {
            return .tiff
        }
        if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if NPYFile.isNPY(head) { return .npy }
        if starts([0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]) { return .emd }
        // SER: byte order 0x4949 ("II") then series ID 0x0197, both little-endian.
        if starts([0x49, 0x49, 0x97, 0x01]) { return .ser }
        // DM3: big-endian version 3, file size, byte order 0/1. DM4: version 4, 8-byte size, order.
        if be32(0) == 3, let order = be32(8), order <= 1 { return .dm3 }
        if be32(0) == 4, let order = be32(12), order <= 1 { return .dm4 }
        if MRCHeader.looksLikeMRC(head) { return .mrc }
        switch fileExtension.lowercased() {
        case "mrc", "mrcs", "map", "st", "ali", "rec", "preali": return .mrc
        default: return nil
        }
    }

    /// A file's first `count` bytes (fewer if it is shorter), with `ReadableFile`'s checks and errors.
    public static func readFileHead(_ url: URL, count: Int) throws -> [UInt8] {
        let file = try ReadableFile(url)
        return try file.bytes(0..<min(file.size, count), shorter: true)
    }
}

/// Refuses inputs that are not regular files before they are opened: reading a FIFO blocks until
/// a writer comes, a device can be endless.
public func requireRegularFile(_ url: URL) throws {
    var st = stat()
    guard stat(url.path, &st) == 0 else {
        throw MicrographError(url: url, reason: errno == ENOENT ? MicrographError.missing(url.path) : errno == EACCES ? "permission denied" : "cannot be read")
    }
    if let problem = notRegularFile(mode: st.st_mode) { throw MicrographError(url: url, reason: problem) }
}

/// What a file of mode `mode` is, in an error's words, when it is not a regular file (nil when it is).
func notRegularFile(mode: mode_t) -> String? {
    switch mode & S_IFMT {
    case S_IFREG: return nil
    case S_IFDIR: return "is a directory, not a file"
    case S_IFIFO: return "is not a regular file (a FIFO)"
    case S_IFSOCK: return "is not a regular file (a socket)"
    case S_IFCHR, S_IFBLK: return "is not a regular file (a device)"
    default: return "is not a regular file"
    }
}

import MicrographIO

/// A label image: one particle id per pixel, 0 for background, as `segment` writes
/// `<name>_labels.tif` (uint16, or float32 past 65535 particles) and as Fiji, scikit-image or
/// CellProfiler write theirs. Ids are read exactly (never through a rounding), so touching
/// particles stay apart however the file numbers them.
public struct LabelImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// `width * height` ids, row-major, row 0 at the top; 0 is background.
    public var values: [UInt32]

    public init(width: Int, height: Int, values: [UInt32]) {
        require(width >= 0 && height >= 0 && values.count == width * height,
                "LabelImage: \(values.count) values for a \(width)x\(height) image")
        self.width = width; self.height = height; self.values = values
    }

    /// Frame `frame` of `m` as labels. Throws, naming the file, where a pixel is not a whole
    /// number from 0 to 2³² − 1 (NaN counts as background, as in a mask) or the image has more
    /// than one channel, except 8-bit colour: each colour an id (R·65536 + G·256 + B, black the
    /// background), as MorphoLibJ's "Labels to RGB" and other viewers export labels.
    public init(_ m: Micrograph, frame: Int = 0) throws {
        let name = m.source?.path ?? "micrograph"
        if m.channels == 3 && m.pixelType == .uint8 && frame >= 0 && frame < m.frames {
            let samples = m.sampleValues(frame: frame)
            var values = [UInt32](repeating: 0, count: m.width * m.height)
            for p in values.indices {
                let r = UInt32(samples[3 * p]), g = UInt32(samples[3 * p + 1]), b = UInt32(samples[3 * p + 2])
                values[p] = r << 16 | g << 8 | b
            }
            self.init(width: m.width, height: m.height, values: values)
            return
        }
        guard m.channels == 1 else {
            throw MicrographError(file: name, reason: "a label image has one channel (or 8-bit colours, one a particle); this one has \(m.channels) of \(m.pixelType.rawValue)")
        }
        guard !m.pixelType.isComplex else {
            throw MicrographError(file: name, reason: "complex pixels (\(m.pixelType.rawValue)) are not labels")
        }
        guard frame >= 0 && frame < m.frames else {
            throw MicrographError(file: name, reason: "frame \(frame) out of range 0..<\(m.frames)")
        }
        var bad: String? = nil, badIndex = 0
        func label<T: BinaryFloatingPoint>(_ v: T, _ i: Int) -> UInt32 {
            if v.isNaN { return 0 }
            if let label = UInt32(exactly: v) { return label }  // whole, 0 ... 2³² − 1 (not 2³², to which a Float rounds UInt32.max)
            if bad == nil { bad = "\(v)"; badIndex = i }
            return 0
        }
        let values: [UInt32]
        switch m.pixelType {
        case .int32, .uint32, .int64, .uint64, .float64:  // not all of them held exactly by a Float
            values = m.doubleFrame(frame).enumerated().map { label($0.element, $0.offset) }
        default:
            values = m.floatFrame(frame).enumerated().map { label($0.element, $0.offset) }
        }
        if let bad {
            let place = (m.frames > 1 ? "in image \(frame), " : "") + "at column \(badIndex % max(1, m.width)), row \(badIndex / max(1, m.width))"
            throw MicrographError(file: name, reason: "pixel value \(bad) \(place) is not a label (a whole number from 0 to \(UInt32.max))")
        }
        self.init(width: m.width, height: m.height, values: values)
    }
}

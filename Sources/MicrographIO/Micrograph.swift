import Foundation

/// The pixel type a file stores, named as NumPy names it (so results compare with Python readers).
public enum PixelType: String, Sendable, CaseIterable, Codable {
    case int8, uint8, int16, uint16, int32, uint32, int64, uint64
    case float16, float32, float64, complex64, complex128, bool

    /// Bytes per sample (complex: both parts).
    public var byteCount: Int {
        switch self {
        case .int8, .uint8, .bool: return 1
        case .int16, .uint16, .float16: return 2
        case .int32, .uint32, .float32: return 4
        case .int64, .uint64, .float64, .complex64: return 8
        case .complex128: return 16
        }
    }

    public var isComplex: Bool { self == .complex64 || self == .complex128 }
}

/// Pixel size in nanometres per axis (x = columns, y = rows).
public struct PixelSize: Sendable, Equatable, Codable {
    public var x: Double
    public var y: Double
    public init(x: Double, y: Double) { self.x = x; self.y = y }
    public init(isotropic nm: Double) { self.init(x: nm, y: nm) }
}

/// The calibration exactly as the file stores it (before conversion to nm).
public struct StoredCalibration: Sendable, Equatable, Codable {
    public var x: Double
    public var y: Double
    public var unitX: String
    public var unitY: String
    public init(x: Double, y: Double, unitX: String, unitY: String) {
        self.x = x; self.y = y; self.unitX = unitX; self.unitY = unitY
    }
}

/// What a user wants to know about an acquisition, where the file records it.
public struct MicrographMetadata: Sendable, Equatable, Codable {
    public var voltageKV: Double?
    public var magnification: Double?
    public var acquisitionDate: String?
    public var detector: String?
    public var microscope: String?
    public var mode: String?
    /// Format-specific facts (header fields, compression, calibration source...).
    public var extra: [String: String]
    public init(voltageKV: Double? = nil, magnification: Double? = nil, acquisitionDate: String? = nil,
                detector: String? = nil, microscope: String? = nil, mode: String? = nil,
                extra: [String: String] = [:]) {
        self.voltageKV = voltageKV; self.magnification = magnification
        self.acquisitionDate = acquisitionDate; self.detector = detector
        self.microscope = microscope; self.mode = mode; self.extra = extra
    }

    /// An `extra` value in its JSON type: a whole or decimal number as Int or Double, a
    /// space-separated list of them as an array, anything else as the text itself. A value is a
    /// number only if that number prints back as the same text, so nothing is lost: `0012` (a
    /// serial number), `1e-9` or `nan` stay text.
    public static func typedValue(_ text: String) -> Any {
        func number(_ t: Substring) -> Any? {
            if let i = Int(t), String(i) == t { return i }
            if let d = Double(t), d.isFinite, String(d) == t { return d }
            return nil
        }
        let parts = text.split(separator: " ", omittingEmptySubsequences: false)
        let numbers = parts.compactMap(number)
        guard numbers.count == parts.count else { return text }
        return parts.count == 1 ? numbers[0] : numbers
    }
}

/// One image (or stack of frames) as a microscope file stores it.
///
/// Pixels keep their native type: `data` holds `frames × height × width × channels` samples in
/// the native type, little-endian, row-major, converted from the file's byte order. Row 0 is the
/// top row as the format shows it (TIFF, PNG, DM, SER (flipped from its bottom-up storage),
/// EMD); for MRC it is the file's first row, as mrcfile and Fiji take it (shown at the top),
/// which IMOD's 3dmod shows at the bottom: a mirror image either way, no change to any size.
public struct Micrograph: Sendable {
    public var width: Int
    public var height: Int
    public var frames: Int
    /// 1 for grey images; 3 for RGB (PNG colour images).
    public var channels: Int
    public var pixelType: PixelType
    public var data: [UInt8]
    /// nm per pixel, nil when the file has no real-space calibration.
    public var pixelSize: PixelSize?
    /// The calibration in the file's own units (also for reciprocal calibrations), nil if none.
    public var storedCalibration: StoredCalibration?
    /// `mrc`, `tiff`, `dm3`, `dm4`, `ser`, `emd-velox`, `emd-berkeley`, `png`, `npy`.
    public var format: String
    public var metadata: MicrographMetadata
    /// Where it came from (for error messages and output names).
    public var source: URL?

    public init(width: Int, height: Int, frames: Int = 1, channels: Int = 1, pixelType: PixelType,
                data: [UInt8], pixelSize: PixelSize? = nil, storedCalibration: StoredCalibration? = nil,
                format: String, metadata: MicrographMetadata = MicrographMetadata(), source: URL? = nil) {
        precondition(data.count == width * height * frames * channels * pixelType.byteCount,
                     "Micrograph data size does not match its shape")
        self.width = width; self.height = height; self.frames = frames; self.channels = channels
        self.pixelType = pixelType; self.data = data; self.pixelSize = pixelSize
        self.storedCalibration = storedCalibration; self.format = format
        self.metadata = metadata; self.source = source
    }

    /// Number of samples in one frame (all channels).
    public var samplesPerFrame: Int { width * height * channels }

    /// The native little-endian bytes of one frame.
    public func frameBytes(_ frame: Int = 0) -> ArraySlice<UInt8> {
        let n = samplesPerFrame * pixelType.byteCount
        return data[(frame * n)..<((frame + 1) * n)]
    }
}

extension Micrograph {
    /// The one pixel size (nm) that lengths and areas are measured in: the calibration's when its
    /// pixels are square (x and y within 1 %), nil when there is none. Pixels that are not square
    /// are an error (a size in nm would be wrong along one axis); `--pixel-size` overrides.
    /// `file` names the file in the error (default: where the micrograph was read from).
    public func squarePixelSizeNm(file: String? = nil) throws -> Double? {
        guard let p = pixelSize, p.x > 0, p.x.isFinite else { return nil }
        guard p.y > 0, p.y.isFinite, abs(p.y / p.x - 1) <= 0.01 else {
            throw MicrographError(file: file ?? source?.path ?? format, reason: String(
                format: "pixels are %.4g × %.4g nm, not square: sizes in nm would be wrong along one axis (give --pixel-size NM to measure in square pixels of that size)",
                p.x, p.y))
        }
        return p.x
    }
}

extension Micrograph {
    /// Whether a reader turned the file's samples into intensities by inverting them (a TIFF
    /// stored WhiteIsZero, Photometric 0: the largest value minus each).
    public var readInverted: Bool { metadata.extra["photometric"]?.hasPrefix("WhiteIsZero") == true }

    /// The samples as the file stores them: a WhiteIsZero TIFF's inversion undone. What a mask
    /// or a label image means: Fiji saves a binary mask made with "Black background" off (an
    /// inverting LUT) WhiteIsZero, 255 the particle shown black, and its ids as stored; read as
    /// intensities, such a mask measured inside out.
    public var storedValues: Micrograph {
        guard readInverted, [.uint8, .uint16, .uint32, .uint64].contains(pixelType) else { return self }
        var m = self
        for i in m.data.indices { m.data[i] = ~m.data[i] }  // every bit flipped back, as the reader flipped it
        m.metadata.extra["photometric"] = "WhiteIsZero: values as stored"
        return m
    }
}

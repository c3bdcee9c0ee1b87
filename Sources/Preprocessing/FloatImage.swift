import MicrographIO

/// A single-channel image of `Float` samples, row-major, row 0 at the top.
///
/// `pixels[y * width + x]` is column `x` (0 = left) of row `y` (0 = top). Intensities carry no
/// unit of their own: they are whatever the detector or the previous step produced (counts,
/// normalised [0, 1] values, probabilities).
public struct FloatImage: Equatable, Sendable {
    public var width: Int
    public var height: Int
    /// `width * height` samples, row-major, row 0 at the top.
    public var pixels: [Float]

    /// Wraps `pixels` (row-major, row 0 at the top); `pixels.count` must be `width * height`.
    public init(width: Int, height: Int, pixels: [Float]) {
        require(width >= 0 && height >= 0, "FloatImage: negative size \(width)x\(height)")
        require(pixels.count == width * height,
                "FloatImage: \(pixels.count) pixels for a \(width)x\(height) image")
        self.width = width; self.height = height; self.pixels = pixels
    }

    /// An image with every sample equal to `value`.
    public init(width: Int, height: Int, repeating value: Float = 0) {
        self.init(width: width, height: height, pixels: [Float](repeating: value, count: width * height))
    }

    /// Builds an image from rows (row 0 = top); every row must have the same length.
    public init(rows: [[Float]]) {
        let w = rows.first?.count ?? 0
        require(rows.allSatisfy { $0.count == w }, "FloatImage(rows:): rows differ in length")
        self.init(width: w, height: rows.count, pixels: rows.flatMap { $0 })
    }

    /// The sample at column `x`, row `y` (no bounds check beyond the array's own).
    @inlinable
    public subscript(x x: Int, y y: Int) -> Float {
        get { pixels[y * width + x] }
        set { pixels[y * width + x] = newValue }
    }

    /// Number of samples (`width * height`).
    @inlinable public var count: Int { width * height }

    /// The rows as arrays (row 0 first); handy for tests and printing small images.
    public var rows: [[Float]] {
        (0..<height).map { Array(pixels[($0 * width)..<(($0 + 1) * width)]) }
    }

    /// Smallest and largest sample; `(0, 0)` for an empty image. NaNs are ignored.
    public func minMax() -> (min: Float, max: Float) {
        guard !pixels.isEmpty else { return (0, 0) }
        return pixels.withUnsafeBufferPointer { p in
            var lo = Float.infinity, hi = -Float.infinity
            for v in p {
                lo = v < lo ? v : lo
                hi = v > hi ? v : hi
            }
            return lo <= hi ? (lo, hi) : (0, 0)
        }
    }

    /// Applies `transform` to every sample.
    public func map(_ transform: (Float) -> Float) -> FloatImage {
        FloatImage(width: width, height: height, pixels: pixels.map(transform))
    }
}

extension FloatImage {
    /// Converts one frame of a micrograph to `Float`, keeping the stored values (no scaling):
    /// an int16 MRC pixel of -123 becomes -123.0. RGB images become grey
    /// (0.299 R + 0.587 G + 0.114 B, as `Micrograph.floatFrame`); `bool` becomes 0/1. Complex data is refused (take a magnitude first).
    /// `parallel`: how a grey frame's pieces are decoded (the same values either way).
    public init(_ micrograph: Micrograph, frame: Int = 0, parallel: ParallelFor = serially) throws {
        self.init(width: micrograph.width, height: micrograph.height,
                  pixels: try decodeFrame(micrograph, frame: frame, parallel: parallel))
    }
}

/// A binary segmentation mask: `values[y * width + x]` is 1 for particle, 0 for background.
///
/// Masks are kept as bytes holding exactly 0 or 1 (never soft labels); every operation in this
/// module that moves mask pixels (flips, rotation, zoom, tiling) samples by nearest neighbour, so
/// the invariant holds through augmentation.
public struct BinaryMask: Equatable, Sendable {
    public var width: Int
    public var height: Int
    /// `width * height` bytes, each 0 (background) or 1 (particle), row-major, row 0 at the top.
    public var values: [UInt8]

    /// Wraps `values`, which must hold only 0 and 1 (checked).
    public init(width: Int, height: Int, values: [UInt8]) {
        require(width >= 0 && height >= 0, "BinaryMask: negative size \(width)x\(height)")
        require(values.count == width * height,
                "BinaryMask: \(values.count) values for a \(width)x\(height) mask")
        require(values.allSatisfy { $0 <= 1 }, "BinaryMask: values must be 0 or 1")
        self.width = width; self.height = height; self.values = values
    }

    /// A mask of values made 0 or 1 by their maker (a threshold's), not checked again: no pass
    /// over them. The size is checked.
    package init(width: Int, height: Int, zeroOrOne values: [UInt8]) {
        require(width >= 0 && height >= 0 && values.count == width * height,
                "BinaryMask: \(values.count) values for a \(width)x\(height) mask")
        self.width = width; self.height = height; self.values = values
    }

    /// The mask as image files show it: 0 for background, 255 for particle (any non-zero value).
    public var bytes255: [UInt8] { bytes255Counted.bytes }

    /// `bytes255`, and how many of them are 255 (the particle pixels), in one pass.
    public var bytes255Counted: (bytes: [UInt8], particlePixels: Int) {
        var particlePixels = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: values.count) { out, count in
            values.withUnsafeBufferPointer { v in
                var n = 0
                for i in 0..<v.count { let b: UInt8 = v[i] == 0 ? 0 : 255; out[i] = b; n &+= Int(b & 1) }
                particlePixels = n
            }
            count = values.count
        }
        return (bytes, particlePixels)
    }

    /// An all-background mask.
    public init(width: Int, height: Int) {
        self.width = width; self.height = height
        self.values = [UInt8](repeating: 0, count: width * height)
    }

    /// Builds a mask from rows of 0/1 (row 0 = top).
    public init(rows: [[UInt8]]) {
        let w = rows.first?.count ?? 0
        require(rows.allSatisfy { $0.count == w }, "BinaryMask(rows:): rows differ in length")
        self.init(width: w, height: rows.count, values: rows.flatMap { $0 })
    }

    /// 1 where `image` is strictly greater than `threshold`, 0 elsewhere (e.g. a probability map
    /// thresholded at 0.5, or a 0/255 label image thresholded at 127). `parallel` runs it in
    /// pieces, each writing (and first touching) its own part of the mask.
    public init(_ image: FloatImage, threshold: Float = 0.5, parallel: ParallelFor = serially) {
        self.width = image.width; self.height = image.height
        let n = image.count, parts = pieces(n)
        self.values = [UInt8](unsafeUninitializedCapacity: n) { v, initialised in
            image.pixels.withUnsafeBufferPointer { p in
                parallel(parts.count) { piece in
                    for i in parts.range(piece) { v[i] = p[i] > threshold ? 1 : 0 }
                }
            }
            initialised = n
        }
    }

    /// Reads a mask (e.g. sim-v1's `_mask.png`, 0/255): every non-zero pixel is particle,
    /// negative ones too (a 0/255 mask stored as signed bytes reads as 0/−1), NaN never; except
    /// a mask with graded edges (`read`), in which the pixels at least half covered are.
    public init(_ micrograph: Micrograph, frame: Int = 0) throws {
        self = try BinaryMask.read(micrograph, frame: frame).mask
    }

    /// The same, and whether the mask has graded edges: more than one non-zero |value|, most
    /// non-zero pixels at the largest, and nearly all the others (90 %) beside one at the
    /// largest (a shape drawn anti-aliased or resampled: a solid inside, a rim of partial
    /// values). There the particle is where |value| is at least half the largest: every non-zero
    /// pixel made such a disc's area 5–11 % too large. A label image's ids or a map of classes
    /// (regions of other values apart from the largest's) keep every non-zero pixel.
    public static func read(_ micrograph: Micrograph, frame: Int = 0) throws -> (mask: BinaryMask, graded: Bool) {
        let image = try FloatImage(micrograph, frame: frame)
        var largest: Float = 0, nonZero = 0, atLargest = 0, levels = Set<Float>()
        for v in image.pixels where !v.isNaN && v != 0 {
            let a = abs(v)
            nonZero += 1
            if levels.count < 2 { levels.insert(a) }
            if a > largest { largest = a; atLargest = 1 } else if a == largest { atLargest += 1 }
        }
        var graded = levels.count > 1 && 2 * atLargest > nonZero
        if graded {
            // The partial values form a rim: each beside (8 neighbours) a pixel at the largest.
            let w = image.width, h = image.height, p = image.pixels
            var partial = 0, rim = 0
            for y in 0..<h { for x in 0..<w {
                let a = abs(p[y * w + x])
                guard !a.isNaN, a != 0, a != largest else { continue }
                partial += 1
                search: for dy in -1...1 { for dx in -1...1 where (dx != 0 || dy != 0) {
                    let yy = y + dy, xx = x + dx
                    if yy >= 0, yy < h, xx >= 0, xx < w, abs(p[yy * w + xx]) == largest { rim += 1; break search }
                } }
            } }
            graded = 10 * rim >= 9 * partial
        }
        let floor = graded ? largest / 2 : 0
        let mask = BinaryMask(width: image.width, height: image.height,
                              values: image.pixels.map { v in !v.isNaN && v != 0 && abs(v) >= floor ? 1 : 0 })
        return (mask, graded)
    }

    /// The label at column `x`, row `y`. Setting stores 1 for any non-zero value, so the mask
    /// stays binary.
    @inlinable
    public subscript(x x: Int, y y: Int) -> UInt8 {
        get { values[y * width + x] }
        set { values[y * width + x] = newValue == 0 ? 0 : 1 }
    }

    /// Number of particle pixels.
    public var foregroundCount: Int { BinaryMask.nonZeroCount(values) }

    /// How many of `bytes` are not 0: 8 at a time, each byte's bits or-ed into its lowest, the
    /// flags summed bytewise for up to 255 steps (a 4096² mask in 2.2–3.1 ms, where a `reduce`
    /// took 8.5–11; Intel Xeon fam 6 mod 207).
    public static func nonZeroCount(_ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBytes { raw in
            let n = raw.count
            var total = 0, i = 0
            while i + 8 <= n {
                var flags: UInt64 = 0
                let end = min(n - 7, i + 255 * 8)
                while i < end {
                    var x = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                    x |= x >> 4; x |= x >> 2; x |= x >> 1  // each byte's lowest bit: the or of its bits (what a shift brings in from the byte above lands in bits masked off)
                    flags &+= x & 0x0101_0101_0101_0101
                    i += 8
                }
                let pairs = (flags & 0x00FF_00FF_00FF_00FF) &+ (flags >> 8 & 0x00FF_00FF_00FF_00FF)
                total += Int((pairs &* 0x0001_0001_0001_0001) >> 48)
            }
            while i < n { total += raw[i] != 0 ? 1 : 0; i += 1 }
            return total
        }
    }

    /// Whether every value is 0 or 1 (true unless `values` was edited directly).
    public var isBinary: Bool { values.allSatisfy { $0 <= 1 } }

    /// The mask as a 0.0/1.0 image (the network's target).
    public var floatImage: FloatImage {
        FloatImage(width: width, height: height, pixels: values.map { Float($0) })
    }

    /// The rows as arrays (row 0 first).
    public var rows: [[UInt8]] {
        (0..<height).map { Array(values[($0 * width)..<(($0 + 1) * width)]) }
    }
}

extension FloatImage {
    /// The NaN and ±∞ pixels (nil when every pixel is finite), and the smallest and largest
    /// pixel (of the finite ones when the mask is nil): one pass over the image, in pieces, in
    /// the common case that all are finite. (`segment` fills them with `fillLikeOthers`.)
    public func nonFinitePixels(parallel: ParallelFor = serially) -> (mask: BinaryMask?, min: Float, max: Float) {
        let scans = scanPieces(parallel)
        let lo = scans.map(\.min).min() ?? .infinity, hi = scans.map(\.max).max() ?? -.infinity
        guard !scans.allSatisfy(\.finite) else { return (nil, lo, hi) }
        var mask = BinaryMask(width: width, height: height)
        for i in 0..<count where !pixels[i].isFinite { mask.values[i] = 1 }
        return (mask, lo, hi)
    }

    /// The smallest and largest pixel (NaN left out; +∞ and −∞ for an image of NaN only).
    public func extremes(parallel: ParallelFor = serially) -> (min: Float, max: Float) {
        let scans = scanPieces(parallel)
        return (scans.map(\.min).min() ?? .infinity, scans.map(\.max).max() ?? -.infinity)
    }

    /// `scanExtremes` of each of the image's pieces, side by side.
    private func scanPieces(_ parallel: ParallelFor) -> [(min: Float, max: Float, finite: Bool)] {
        let parts = pieces(count)
        var out = [(min: Float, max: Float, finite: Bool)](repeating: (.infinity, -.infinity, true), count: parts.count)
        pixels.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in parallel(parts.count) { k in o[k] = scanExtremes(p.baseAddress!, parts.range(k)) } }
        }
        return out
    }
}

/// The smallest and largest of values[range] (NaN passed over; +∞ and −∞ when there are none)
/// and whether all are finite, in one vectorised pass: a compare and a blend per vector for the
/// extremes, and x − x summed, which is 0 for finite x and NaN as soon as a NaN or ±∞ is met.
func scanExtremes(_ values: UnsafePointer<Float>, _ range: Range<Int>) -> (min: Float, max: Float, finite: Bool) {
    var a = SIMD16<Float>(repeating: .infinity), b = SIMD16<Float>(repeating: -.infinity), z = SIMD16<Float>()
    var i = range.lowerBound
    while i + 16 <= range.upperBound {
        let v = UnsafeRawPointer(values + i).loadUnaligned(as: SIMD16<Float>.self)
        a.replace(with: v, where: v .< a); b.replace(with: v, where: v .> b); z += v - v; i += 16
    }
    var lo = Float.infinity, hi = -Float.infinity, finite = z.sum().isFinite
    for j in 0..<16 { if a[j] < lo { lo = a[j] }; if b[j] > hi { hi = b[j] } }
    while i < range.upperBound {
        let x = values[i]
        if x < lo { lo = x }
        if x > hi { hi = x }
        finite = finite && x.isFinite; i += 1
    }
    return (lo, hi, finite)
}

/// Decodes one frame of native little-endian samples to Float, averaging channels.
private func decodeFrame(_ m: Micrograph, frame: Int, parallel: ParallelFor) throws -> [Float] {
    let name = m.source?.path ?? "micrograph"
    guard frame >= 0 && frame < m.frames else {
        throw MicrographError(file: name, reason: "frame \(frame) out of range 0..<\(m.frames)")
    }
    guard !m.pixelType.isComplex else {
        throw MicrographError(file: name, reason: "complex pixels (\(m.pixelType.rawValue)) cannot become a real image")
    }
    // One conversion for the whole app: RGB becomes grey = 0.299 R + 0.587 G + 0.114 B.
    return m.floatFrame(frame, parallel: parallel)
}

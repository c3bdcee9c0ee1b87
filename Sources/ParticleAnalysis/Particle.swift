import CNanoSupport

/// One particle's measurements. Pixel coordinates use the pixel-centre convention: pixel
/// (column, row) covers [column, column + 1) × [row, row + 1), so its centre is (column + 0.5,
/// row + 0.5). Lengths and areas in nm are nil when the pixel size is unknown.
public struct Particle: Sendable, Equatable, Codable {
    public var id: Int
    public var centroidX: Double
    public var centroidY: Double
    public var areaPx: Int
    /// Major and minor axis lengths of the ellipse with the same second moments (px), the moments
    /// of the pixel squares (MATLAB regionprops' convention: each pixel's own extent adds 1/12 to
    /// the variances, so one pixel gives 1.15 px; scikit-image takes the centres only, 0 px).
    public var majorAxisPx: Double
    public var minorAxisPx: Double
    /// Angle of the major axis from the +x (column) axis towards +y (down), degrees in (−90, 90].
    public var orientationDeg: Double
    /// Boundary length (px), estimated as scikit-image's `perimeter` (4-connected boundary with
    /// weights for straight, diagonal and corner steps).
    public var perimeterPx: Double
    /// 4πA/P² with scikit-image's perimeter: lower for elongated or ragged outlines. That
    /// perimeter overestimates a digital circle's by a few per cent, so a disc of radius 10–80 px
    /// gives 0.97–0.91, and small discs more than 1 (radius 3: 1.21).
    public var circularity: Double
    /// Of the moment ellipse: 0 for a circle, towards 1 for a line.
    public var eccentricity: Double
    /// Area over the pixels of its convex hull image, as scikit-image's regionprops: the pixels
    /// whose centres lie in or on the hull of the particle's pixels' edge midpoints.
    public var solidity: Double
    /// Bounding box: first and one-past-last column and row.
    public var boundingBox: (x0: Int, y0: Int, x1: Int, y1: Int)
    /// The particle reaches the image border, or pixels that show no specimen (padding, NaN
    /// pixels, an SEM's information bar), so it may be cut.
    public var touchesBorder: Bool
    /// Mean particle probability over its pixels (nil without a probability map).
    public var meanProbability: Double?
    /// nm per pixel used for the nm columns.
    public var pixelSizeNm: Double?

    public var areaNm2: Double? { pixelSizeNm.map { Double(areaPx) * $0 * $0 } }
    /// Diameter of the disc with the same area.
    public var equivalentDiameterPx: Double { 2 * (Double(areaPx) / Double.pi).squareRoot() }
    public var equivalentDiameterNm: Double? { pixelSizeNm.map { equivalentDiameterPx * $0 } }
    public var centroidXNm: Double? { pixelSizeNm.map { centroidX * $0 } }
    public var centroidYNm: Double? { pixelSizeNm.map { centroidY * $0 } }
    public var majorAxisNm: Double? { pixelSizeNm.map { majorAxisPx * $0 } }
    public var minorAxisNm: Double? { pixelSizeNm.map { minorAxisPx * $0 } }
    public var perimeterNm: Double? { pixelSizeNm.map { perimeterPx * $0 } }

    enum CodingKeys: String, CodingKey {
        case id, centroidX, centroidY, areaPx, majorAxisPx, minorAxisPx, orientationDeg, perimeterPx, circularity,
             eccentricity, solidity, x0, y0, x1, y1, touchesBorder, meanProbability, pixelSizeNm
    }

    public init(id: Int, centroidX: Double, centroidY: Double, areaPx: Int, majorAxisPx: Double, minorAxisPx: Double,
                orientationDeg: Double, perimeterPx: Double, circularity: Double, eccentricity: Double, solidity: Double,
                boundingBox: (x0: Int, y0: Int, x1: Int, y1: Int), touchesBorder: Bool, meanProbability: Double?,
                pixelSizeNm: Double?) {
        self.id = id; self.centroidX = centroidX; self.centroidY = centroidY; self.areaPx = areaPx
        self.majorAxisPx = majorAxisPx; self.minorAxisPx = minorAxisPx; self.orientationDeg = orientationDeg
        self.perimeterPx = perimeterPx; self.circularity = circularity; self.eccentricity = eccentricity
        self.solidity = solidity; self.boundingBox = boundingBox; self.touchesBorder = touchesBorder
        self.meanProbability = meanProbability; self.pixelSizeNm = pixelSizeNm
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(Int.self, forKey: .id)
        centroidX = try c.decode(Double.self, forKey: .centroidX); centroidY = try c.decode(Double.self, forKey: .centroidY)
        areaPx = try c.decode(Int.self, forKey: .areaPx)
        majorAxisPx = try c.decode(Double.self, forKey: .majorAxisPx); minorAxisPx = try c.decode(Double.self, forKey: .minorAxisPx)
        orientationDeg = try c.decode(Double.self, forKey: .orientationDeg)
        perimeterPx = try c.decode(Double.self, forKey: .perimeterPx); circularity = try c.decode(Double.self, forKey: .circularity)
        eccentricity = try c.decode(Double.self, forKey: .eccentricity); solidity = try c.decode(Double.self, forKey: .solidity)
        boundingBox = (try c.decode(Int.self, forKey: .x0), try c.decode(Int.self, forKey: .y0),
                       try c.decode(Int.self, forKey: .x1), try c.decode(Int.self, forKey: .y1))
        touchesBorder = try c.decode(Bool.self, forKey: .touchesBorder)
        meanProbability = try c.decodeIfPresent(Double.self, forKey: .meanProbability)
        pixelSizeNm = try c.decodeIfPresent(Double.self, forKey: .pixelSizeNm)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id); try c.encode(centroidX, forKey: .centroidX); try c.encode(centroidY, forKey: .centroidY)
        try c.encode(areaPx, forKey: .areaPx); try c.encode(majorAxisPx, forKey: .majorAxisPx)
        try c.encode(minorAxisPx, forKey: .minorAxisPx); try c.encode(orientationDeg, forKey: .orientationDeg)
        try c.encode(perimeterPx, forKey: .perimeterPx); try c.encode(circularity, forKey: .circularity)
        try c.encode(eccentricity, forKey: .eccentricity); try c.encode(solidity, forKey: .solidity)
        try c.encode(boundingBox.x0, forKey: .x0); try c.encode(boundingBox.y0, forKey: .y0)
        try c.encode(boundingBox.x1, forKey: .x1); try c.encode(boundingBox.y1, forKey: .y1)
        try c.encode(touchesBorder, forKey: .touchesBorder)
        try c.encodeIfPresent(meanProbability, forKey: .meanProbability); try c.encodeIfPresent(pixelSizeNm, forKey: .pixelSizeNm)
    }

    public static func == (a: Particle, b: Particle) -> Bool {
        a.id == b.id && a.centroidX == b.centroidX && a.centroidY == b.centroidY && a.areaPx == b.areaPx
            && a.boundingBox == b.boundingBox && a.perimeterPx == b.perimeterPx && a.solidity == b.solidity
            && a.touchesBorder == b.touchesBorder && a.meanProbability == b.meanProbability && a.pixelSizeNm == b.pixelSizeNm
    }

    /// CSV columns, units in the names: every length in pixels, and in nm where the pixel size is
    /// known (the nm columns are empty for an uncalibrated image).
    public static let csvHeader = ["id", "centroid_x_px", "centroid_y_px", "centroid_x_nm", "centroid_y_nm", "area_px", "area_nm2",
                                   "eq_diameter_nm", "eq_diameter_px", "major_axis_nm", "minor_axis_nm", "major_axis_px",
                                   "minor_axis_px", "orientation_deg", "perimeter_nm", "perimeter_px", "circularity", "eccentricity",
                                   "solidity", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "touches_border", "mean_probability"]

    public var csvFields: [String] {
        func f(_ v: Double?, _ digits: Int = 4) -> String { v.map { Particle.fixed($0, digits: digits) } ?? "" }
        return [String(id), f(centroidX, 2), f(centroidY, 2), f(centroidXNm), f(centroidYNm), String(areaPx), f(areaNm2),
                f(equivalentDiameterNm), f(equivalentDiameterPx, 2), f(majorAxisNm), f(minorAxisNm), f(majorAxisPx, 2),
                f(minorAxisPx, 2), f(orientationDeg, 2), f(perimeterNm), f(perimeterPx, 2), f(circularity), f(eccentricity),
                f(solidity), String(boundingBox.x0), String(boundingBox.y0), String(boundingBox.x1), String(boundingBox.y1),
                touchesBorder ? "1" : "0", f(meanProbability)]
    }
}

extension Particle {
    /// `v` with `digits` decimals, as `String(format: "%.<digits>f", v)` writes it (C's
    /// formatting, "." for the decimal point whatever locale the process has set), by
    /// `nf_format_fixed` (snprintf) into a buffer on the stack: Foundation's `String(format:)`
    /// took about 2 µs a number (5.7-6.1 ms for a 4096² image's 271 particles; AMD EPYC fam 26
    /// mod 2).
    package static func fixed(_ v: Double, digits: Int) -> String {
        precondition((0...17).contains(digits))
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 350) { buffer in
            let n = nf_format_fixed(buffer.baseAddress, buffer.count, v, Int32(digits))
            precondition(n >= 0 && n < buffer.count)
            return String(decoding: UnsafeRawBufferPointer(start: buffer.baseAddress, count: Int(n)), as: UTF8.self)
        }
    }
}

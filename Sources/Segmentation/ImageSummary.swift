import Foundation
import ParticleAnalysis

/// What `segment` found in one image: the line `summary.json` holds for it.
public struct ImageSummary: Codable, Sendable, Equatable {
    /// Output name (`<stem>`, or `<stem>_<k>` for the k-th image of a multi-image file).
    public var image: String
    public var input: String
    public var width: Int
    public var height: Int
    public var particles: Int
    /// Fraction of the image's pixels in particles.
    public var areaFraction: Double
    public var meanEqDiameterNm: Double?
    public var medianEqDiameterNm: Double?
    public var meanEqDiameterPx: Double?
    public var model: String
    public var threshold: Float
    public var pixelSizeNm: Double?
    /// `file`, `--pixel-size` or `none`.
    public var pixelSizeSource: String
    /// Network pixels per image pixel (resampling to the model's pixel size).
    public var scale: Double
    public var seconds: Double
    public var timings: [String: Double]

    enum CodingKeys: String, CodingKey {
        case image, input, width, height, particles, areaFraction = "area_fraction", meanEqDiameterNm = "mean_eq_diameter_nm",
             medianEqDiameterNm = "median_eq_diameter_nm", meanEqDiameterPx = "mean_eq_diameter_px", model, threshold,
             pixelSizeNm = "pixel_size_nm", pixelSizeSource = "pixel_size_source", scale, seconds, timings
    }

    public init(image: String, input: String, width: Int, height: Int, particles: [Particle], mask: [UInt8], model: String,
                threshold: Float, pixelSizeNm: Double?, pixelSizeSource: String, scale: Double, seconds: Double,
                timings: [String: Double]) {
        self.image = image; self.input = input; self.width = width; self.height = height
        self.particles = particles.count
        areaFraction = Double(mask.reduce(0) { $0 + ($1 == 0 ? 0 : 1) }) / Double(max(1, mask.count))
        let nm = particles.compactMap(\.equivalentDiameterNm).sorted()
        meanEqDiameterNm = nm.isEmpty ? nil : nm.reduce(0, +) / Double(nm.count)
        medianEqDiameterNm = nm.isEmpty ? nil : (nm[(nm.count - 1) / 2] + nm[nm.count / 2]) / 2
        meanEqDiameterPx = particles.isEmpty ? nil : particles.map(\.equivalentDiameterPx).reduce(0, +) / Double(particles.count)
        self.model = model; self.threshold = threshold; self.pixelSizeNm = pixelSizeNm; self.pixelSizeSource = pixelSizeSource
        self.scale = scale; self.seconds = seconds; self.timings = timings
    }
}

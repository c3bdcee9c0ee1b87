import Foundation
import ParticleAnalysis
import Preprocessing

/// What `segment` found in one image: the line `summary.json` holds for it.
public struct ImageSummary: Codable, Sendable, Equatable {
    /// Output name (`<stem>`, or `<stem>_<k>` for the k-th image of a multi-image file).
    public var image: String
    public var input: String
    /// The input as it was read (`BatchSegmentation.inputSignature`: its size and modification
    /// time) and how many images it held: a re-run redoes it when either differs (a file
    /// replaced by an older-dated one, a stack whose frame's outputs were deleted). Nil in
    /// summaries written before they were recorded.
    public var inputSignature: String?
    public var imagesInInput: Int?
    public var width: Int
    public var height: Int
    public var particles: Int
    /// Fraction of the specimen's pixels in the particles reported (holes filled, objects below
    /// the smallest area dropped). The specimen is the image less what shows none: its flat
    /// padding, NaN pixels and an SEM's information bar.
    public var areaFraction: Double
    /// Fraction of the specimen's pixels above the threshold (the mask files), before holes are
    /// filled and small objects dropped. Nil in summaries written before it was recorded.
    public var maskFraction: Double?
    /// How many of `particles` touch the image's border or pixels that show no specimen
    /// (`touches_border`): counted and in the area fractions, but left out of the sizes below,
    /// since a cut particle's area is not its size. Nil in summaries written before.
    public var particlesCut: Int?
    /// Mean and median equivalent diameters of the particles not cut (nil when there are none).
    public var meanEqDiameterNm: Double?
    public var medianEqDiameterNm: Double?
    public var meanEqDiameterPx: Double?
    public var medianEqDiameterPx: Double?
    public var model: String
    public var threshold: Float
    public var pixelSizeNm: Double?
    /// `file`, `--pixel-size` or `none`.
    public var pixelSizeSource: String
    /// Network pixels per image pixel (resampling to the model's pixel size).
    public var scale: Double
    public var seconds: Double
    public var timings: [String: Double]
    /// The settings besides model, threshold and pixel size that shaped the result (splitting,
    /// smallest particle, input preparation, TTA), so that a re-run with others redoes the
    /// image. Nil in summaries written before it was recorded.
    public var segmentation: String?
    /// What the user should know about the image's result, one line each (its padding, NaN
    /// pixels, a blank scan), as `segment` warned of them. Nil in summaries written before they
    /// were recorded.
    public var notes: [String]?

    enum CodingKeys: String, CodingKey {
        case image, input, inputSignature = "input_signature", imagesInInput = "images_in_input", width, height, particles, areaFraction = "area_fraction", maskFraction = "mask_fraction",
             particlesCut = "particles_cut", meanEqDiameterNm = "mean_eq_diameter_nm", medianEqDiameterNm = "median_eq_diameter_nm",
             meanEqDiameterPx = "mean_eq_diameter_px", medianEqDiameterPx = "median_eq_diameter_px", model, threshold,
             pixelSizeNm = "pixel_size_nm", pixelSizeSource = "pixel_size_source", scale, seconds, timings, segmentation, notes
    }

    /// Every field, those without a value as null (an uncalibrated image's nm fields), so that a
    /// reader finds the same keys in every entry.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(image, forKey: .image); try c.encode(input, forKey: .input)
        try c.encode(inputSignature, forKey: .inputSignature); try c.encode(imagesInInput, forKey: .imagesInInput)
        try c.encode(width, forKey: .width); try c.encode(height, forKey: .height); try c.encode(particles, forKey: .particles)
        try c.encode(areaFraction, forKey: .areaFraction); try c.encode(maskFraction, forKey: .maskFraction)
        try c.encode(particlesCut, forKey: .particlesCut)
        try c.encode(meanEqDiameterNm, forKey: .meanEqDiameterNm); try c.encode(medianEqDiameterNm, forKey: .medianEqDiameterNm)
        try c.encode(meanEqDiameterPx, forKey: .meanEqDiameterPx); try c.encode(medianEqDiameterPx, forKey: .medianEqDiameterPx)
        try c.encode(model, forKey: .model); try c.encode(threshold, forKey: .threshold)
        try c.encode(pixelSizeNm, forKey: .pixelSizeNm); try c.encode(pixelSizeSource, forKey: .pixelSizeSource)
        try c.encode(scale, forKey: .scale); try c.encode(seconds, forKey: .seconds); try c.encode(timings, forKey: .timings)
        try c.encode(segmentation, forKey: .segmentation)
        try c.encode(notes, forKey: .notes)
    }

    /// `maskPixels`: the mask's particle pixels (`BinaryMask.foregroundCount`; `segment` counts
    /// them as it makes the mask's bytes). `specimenPixels`: how many of the image's pixels show
    /// specimen (nil: all of them); the mask is empty elsewhere.
    public init(image: String, input: String, width: Int, height: Int, particles: [Particle],
                maskPixels: Int, specimenPixels: Int? = nil, model: String,
                threshold: Float, pixelSizeNm: Double?, pixelSizeSource: String, scale: Double, seconds: Double,
                timings: [String: Double], segmentation: String? = nil, notes: [String] = [],
                inputSignature: String? = nil, imagesInInput: Int? = nil) {
        self.image = image; self.input = input; self.width = width; self.height = height; self.segmentation = segmentation
        self.inputSignature = inputSignature; self.imagesInInput = imagesInInput
        self.notes = notes
        self.particles = particles.count
        let specimen = Double(max(1, specimenPixels ?? width * height))
        areaFraction = Double(particles.reduce(0) { $0 + $1.areaPx }) / specimen
        maskFraction = Double(maskPixels) / specimen
        func median(_ v: [Double]) -> Double? { v.isEmpty ? nil : (v[(v.count - 1) / 2] + v[v.count / 2]) / 2 }
        let whole = particles.filter { !$0.touchesBorder }
        particlesCut = particles.count - whole.count
        let nm = whole.compactMap(\.equivalentDiameterNm).sorted(), px = whole.map(\.equivalentDiameterPx).sorted()
        meanEqDiameterNm = nm.isEmpty ? nil : nm.reduce(0, +) / Double(nm.count)
        medianEqDiameterNm = median(nm)
        meanEqDiameterPx = px.isEmpty ? nil : px.reduce(0, +) / Double(px.count)
        medianEqDiameterPx = median(px)
        self.model = model; self.threshold = threshold; self.pixelSizeNm = pixelSizeNm; self.pixelSizeSource = pixelSizeSource
        self.scale = scale; self.seconds = seconds; self.timings = timings
    }
}

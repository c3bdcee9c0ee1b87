/// How a micrograph is turned into the network's input, recorded in every model file so that
/// `segment` prepares images exactly as the model saw them in training. Pure data; the
/// `Segmentation` layer applies it.
public struct InputRecipe: Codable, Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Intensity scaling, per image, after the optional median filter.
    public enum Scaling: String, Codable, Sendable, CaseIterable {
        /// Pixels as they are.
        case none
        /// `(x − min) / (max − min)`: pyNanoFind's per-image scaling.
        case minMax = "min-max"
        /// The lower and upper percentiles map to 0 and 1, clipped: robust to hot pixels.
        case percentile
        /// `(x − median) / (1.4826 · MAD)`, not clipped.
        case medianMAD = "median-mad"
    }

    /// A 3×3 median filter first (pyNanoFind's denoising).
    public var medianFilter: Bool
    public var scaling: Scaling
    /// Percentiles (0...100) for `.percentile`.
    public var lowerPercentile: Float
    public var upperPercentile: Float

    public init(medianFilter: Bool, scaling: Scaling, lowerPercentile: Float = 0.5, upperPercentile: Float = 99.5) {
        self.medianFilter = medianFilter; self.scaling = scaling
        self.lowerPercentile = lowerPercentile; self.upperPercentile = upperPercentile
    }

    /// The published pyNanoFind models' input: 3×3 median, then per-image min-max to [0, 1].
    public static let pyNanoFind = InputRecipe(medianFilter: true, scaling: .minMax)
    /// NanoFind's default for new models: 3×3 median, then the 0.5 %–99.5 % percentiles to [0, 1].
    public static let robust = InputRecipe(medianFilter: true, scaling: .percentile)
    /// Pixels fed as they are.
    public static let none = InputRecipe(medianFilter: false, scaling: .none)

    /// Why this recipe cannot be applied, or nil.
    public var problem: String? {
        guard scaling == .percentile else { return nil }
        guard lowerPercentile.isFinite, upperPercentile.isFinite, 0 <= lowerPercentile, lowerPercentile < upperPercentile,
              upperPercentile <= 100 else {
            return "percentiles \(lowerPercentile) and \(upperPercentile) must satisfy 0 <= lower < upper <= 100"
        }
        return nil
    }

    public var description: String {
        var parts: [String] = medianFilter ? ["median3"] : []
        switch scaling {
        case .none: break
        case .percentile: parts.append("percentile(\(lowerPercentile), \(upperPercentile))")
        default: parts.append(scaling.rawValue)
        }
        return parts.isEmpty ? "none" : parts.joined(separator: "+")
    }

    enum CodingKeys: String, CodingKey { case medianFilter, scaling, lowerPercentile, upperPercentile }

    /// Also reads the string form of older model files ("median3+max", "none").
    public init(from decoder: Decoder) throws {
        if let legacy = try? decoder.singleValueContainer().decode(String.self) {
            switch legacy {
            case "median3+max": self = .pyNanoFind
            case "none": self = .none
            default:
                throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                        debugDescription: "unknown preprocessing '\(legacy)'"))
            }
            return
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        medianFilter = try c.decode(Bool.self, forKey: .medianFilter)
        scaling = try c.decode(Scaling.self, forKey: .scaling)
        lowerPercentile = try c.decodeIfPresent(Float.self, forKey: .lowerPercentile) ?? 0.5
        upperPercentile = try c.decodeIfPresent(Float.self, forKey: .upperPercentile) ?? 99.5
    }
}

import NanoNet
import Preprocessing

extension InputRecipe {
    /// The network input for a micrograph frame, prepared as this recipe says.
    public func apply(_ image: FloatImage) -> FloatImage {
        let filtered = medianFilter ? medianFilter3x3(image) : image
        switch scaling {
        case .none: return filtered
        case .minMax: return minMaxNormalise(consume filtered)
        case .percentile: return percentileNormalise(consume filtered, lower: lowerPercentile, upper: upperPercentile)
        case .medianMAD: return medianMADStandardise(consume filtered)
        }
    }
}

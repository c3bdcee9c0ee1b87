import NanoNet
import NanoTensor
import Preprocessing

extension InputRecipe {
    /// The network input for a micrograph frame, prepared as this recipe says. With `pool`, the
    /// median filter and the percentile scaling run on its threads (the same values).
    public func apply(_ image: FloatImage, pool: ThreadPool? = nil) -> FloatImage {
        let parallel = pool?.parallel ?? serially
        let filtered = medianFilter ? medianFilter3x3(image, parallel: parallel) : image
        switch scaling {
        case .none: return filtered
        case .minMax: return minMaxNormalise(consume filtered)
        case .percentile:
            return percentileNormalise(consume filtered, lower: lowerPercentile, upper: upperPercentile, parallel: parallel)
        case .medianMAD: return medianMADStandardise(consume filtered)
        }
    }
}

extension ThreadPool {
    /// This pool as `Preprocessing`'s way of running pieces side by side.
    public var parallel: ParallelFor { { count, piece in self.parallelFor(count) { i, _ in piece(i) } } }
}

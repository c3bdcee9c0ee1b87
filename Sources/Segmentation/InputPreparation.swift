import NanoNet
import NanoTensor
import Preprocessing

extension InputRecipe {
    /// The network input for a micrograph frame, prepared as this recipe says. With `pool`, the
    /// median filter and the percentile scaling run on its threads (the same values).
    public func apply(_ image: FloatImage, pool: ThreadPool? = nil) -> FloatImage {
        let parallel = pool?.parallel ?? serially
        return scaled(medianFilter ? medianFilter3x3(image, parallel: parallel) : image, parallel: parallel)
    }

    /// `apply`'s image and `rawZeroOffset`'s value from one median filter: what training keeps of
    /// each image, where the two calls filtered it twice (`rawZeroOffset` on one thread).
    public func prepare(_ image: FloatImage, pool: ThreadPool? = nil) -> (image: FloatImage, rawZero: Float) {
        let parallel = pool?.parallel ?? serially
        let filtered = medianFilter ? medianFilter3x3(image, parallel: parallel) : image
        let offset = rawZeroOffset(filtered: filtered, parallel: parallel)
        return (scaled(filtered, parallel: parallel), offset)
    }

    /// The recipe's scaling of an image already median-filtered where the recipe says.
    private func scaled(_ filtered: consuming FloatImage, parallel: ParallelFor) -> FloatImage {
        switch scaling {
        case .none: return filtered
        case .minMax: return minMaxNormalise(consume filtered)
        case .percentile:
            return percentileNormalise(consume filtered, lower: lowerPercentile, upper: upperPercentile, parallel: parallel)
        case .medianMAD: return medianMADStandardise(consume filtered)
        }
    }
}

extension InputRecipe {
    /// Where the raw image's zero lies in the prepared image's units: `o · s` for a scaling
    /// x' = (x − o) · s (the percentiles', the minimum's or the median's offset; 0 for none), so
    /// that light scaled by G on the raw image is x' → G · x' + (G − 1) · o · s on the prepared
    /// one. What training's illumination augmentation needs to give a low-contrast image (whose
    /// percentiles span a few % of its level) the large swing the same light gives it.
    public func rawZeroOffset(_ image: FloatImage) -> Float {
        rawZeroOffset(filtered: medianFilter ? medianFilter3x3(image) : image, parallel: serially)
    }

    private func rawZeroOffset(filtered: FloatImage, parallel: ParallelFor) -> Float {
        let offset = unguardedRawZeroOffset(filtered, parallel: parallel)
        return offset.isFinite ? offset : 0  // (a range of denormals, which `apply` rescales first: no light swing, rather than NaN crops)
    }

    private func unguardedRawZeroOffset(_ filtered: FloatImage, parallel: ParallelFor) -> Float {
        guard filtered.count > 0 else { return 0 }
        switch scaling {
        case .none: return 0
        case .minMax:
            let (lo, hi) = filtered.minMax()
            return hi > lo ? lo / (hi - lo) : 0
        case .percentile:
            let q = percentiles(filtered.pixels, [Double(lowerPercentile), Double(upperPercentile)], parallel: parallel)
            if q[1] > q[0] { return q[0] / (q[1] - q[0]) }
            let (lo, hi) = filtered.minMax()
            return hi > lo ? lo / (hi - lo) : 0
        case .medianMAD:
            let median = percentiles(filtered.pixels, [50])[0]
            let mad = percentiles(filtered.pixels.map { abs($0 - median) }, [50])[0]
            return mad > 0 ? median / (1.4826 * mad) : median
        }
    }
}

extension ThreadPool {
    /// This pool as `Preprocessing`'s way of running pieces side by side.
    public var parallel: ParallelFor { { count, piece in self.parallelFor(count) { i, _ in piece(i) } } }
}

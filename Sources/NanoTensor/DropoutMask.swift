/// Inverted dropout's keep/drop decision for every element, as a counter-based hash of
/// (seed, plane, index): nothing is stored, the forward and the backward pass recompute the same
/// mask wherever they need it, it does not depend on the thread count, and kernels can apply it
/// on the fly (batch norm + ReLU + dropout in one pass, and its gradient in another).
public struct DropoutMask: Sendable, Equatable {
    public let rate: Float
    public let seed: UInt64
    /// An element is dropped when its 32-bit hash is below this.
    let threshold: UInt32
    /// 1 / (1 − rate): what kept elements are multiplied by.
    public let keepScale: Float

    public init(rate: Float, seed: UInt64) {
        require(rate >= 0 && rate < 1, "dropout rate \(rate) outside [0, 1)")
        self.rate = rate; self.seed = seed
        threshold = UInt32(min(Double(rate) * 4_294_967_296.0, 4_294_967_295.0))
        keepScale = 1 / (1 - rate)
    }

    /// The key of plane `item` (image · channels + channel). Each element's decision is
    /// hash(hash(index) + key): with a single round, two planes whose keys differ by d would
    /// draw the same mask shifted by d.
    @inline(__always) public func planeKey(_ item: Int) -> UInt32 {
        var mix = SplitMix64(seed: seed ^ (UInt64(item) &* 0xD1B5_4A32_D192_ED03))
        return UInt32(truncatingIfNeeded: mix.next() >> 32)
    }

    /// A 32-bit integer hash with full avalanche (the "lowbias32" finaliser). Two of them per
    /// element, in every pass that applies the mask (the batch norm's forward and both passes of
    /// its backward): a batch-20 training step on 512² tiles with pyNanoFind's dropout took
    /// 1.012-1.015 of the time of one without (the AVX2 build) and 1.001-1.011 (AVX-512), AMD
    /// EPYC fam 25 mod 17, alternating in one process, 2 runs of 20 each: little to gain from a
    /// cheaper mask.
    @inline(__always) static func hash(_ v: UInt32) -> UInt32 {
        var x = v
        x ^= x >> 16; x &*= 0x7FEB_352D
        x ^= x >> 15; x &*= 0x846C_A68B
        x ^= x >> 16
        return x
    }

    @inline(__always) static func hash(_ v: IndexVector) -> IndexVector {
        var x = v
        x ^= x &>> 16; x &*= IndexVector(repeating: 0x7FEB_352D)
        x ^= x &>> 15; x &*= IndexVector(repeating: 0x846C_A68B)
        x ^= x &>> 16
        return x
    }

    /// Whether element `index` of the plane with `key` is kept.
    @inline(__always) public func keeps(key: UInt32, index: Int) -> Bool {
        DropoutMask.hash(DropoutMask.hash(UInt32(truncatingIfNeeded: index)) &+ key) >= threshold
    }

    /// The same for `vectorWidth` consecutive elements from `index`.
    @inline(__always) func keeps(key: UInt32, vectorAt index: Int) -> SIMDMask<IndexVector.MaskStorage> {
        let v = laneIndices &+ IndexVector(repeating: UInt32(truncatingIfNeeded: index))
        return DropoutMask.hash(DropoutMask.hash(v) &+ IndexVector(repeating: key)) .>= IndexVector(repeating: threshold)
    }

    /// x where kept, scaled by 1 / (1 − rate); 0 where dropped.
    @inline(__always) func apply(_ x: FloatVector, key: UInt32, vectorAt index: Int) -> FloatVector {
        let kept = keeps(key: key, vectorAt: index)
        return FloatVector.zero.replacing(with: x * FloatVector(repeating: keepScale),
                                          where: kept)
    }

    @inline(__always) func apply(_ x: Float, key: UInt32, index: Int) -> Float {
        keeps(key: key, index: index) ? x * keepScale : 0
    }
}

/// The gradient of a softmax cross-entropy with respect to the logits,
/// d_k = (p_k − [label = k]) · scale, kept as the probabilities, labels and scale it is made of
/// rather than laid out: the 1×1 head's backward evaluates it a piece at a time where it needs
/// it, so the logits' gradient is never written as a full-size map. `materialize()` lays it out
/// for any other consumer.
public struct CrossEntropyGradient: @unchecked Sendable {
    /// Softmax probabilities (n, classes, h, w).
    public let probabilities: Tensor
    /// Class indices as floats (n, 1, h, w).
    public let labels: Tensor
    public let scale: Float

    public init(probabilities: Tensor, labels: Tensor, scale: Float) {
        let s = probabilities.shape
        require(labels.shape == Shape(s.n, 1, s.h, s.w), "labels \(labels.shape) for probabilities \(s)")
        self.probabilities = probabilities; self.labels = labels; self.scale = scale
    }

    public var shape: Shape { probabilities.shape }

    /// Class `k` of image `i` at pixels start..<start + count of the plane, into `out`: the
    /// values `ChannelKernels.crossEntropyGradient` lays out (the same operations).
    @inline(__always)
    func evaluate(image i: Int, class k: Int, from start: Int, count: Int, into out: UnsafeMutablePointer<Float>) {
        let plane = probabilities.shape.plane
        let lp = labels.data + i * plane + start
        let pp = probabilities.data + (i * probabilities.shape.c + k) * plane + start
        let scaleV = FloatVector(repeating: scale)
        var x = 0
        while x + vectorWidth <= count {
            let hit = FloatVector.zero.replacing(with: 1, where: loadVector(lp + x) .== Float(k))
            storeVector((loadVector(pp + x) - hit) * scaleV, out + x)
            x += vectorWidth
        }
        while x < count { out[x] = (pp[x] - (lp[x] == Float(k) ? 1 : 0)) * scale; x += 1 }
    }

    /// The gradient laid out (`ChannelKernels.crossEntropyGradient`).
    public func materialize(pool: ThreadPool = .shared) -> Tensor {
        ChannelKernels.crossEntropyGradient(probabilities: probabilities, labels: labels, scale: scale, pool: pool)
    }
}

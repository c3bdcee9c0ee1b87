/// The gradient of a softmax cross-entropy with respect to the logits,
/// d_k = (p_k − [label = k]) · scale, optionally carried back through 1×1 convolutions: channel c
/// of the map it belongs to is g_c = Σ_k mix[c][k] · d_k. It is kept in this form rather than
/// laid out, because it costs only the probabilities and the labels to read: the 1×1 head's
/// backward and the batch norm before it evaluate it row by row where they need it, so neither
/// the logits' gradient nor the head input's gradient is ever written as a full-size map.
/// `materialize()` lays it out for any other consumer.
public struct CrossEntropyGradient: @unchecked Sendable {
    /// Softmax probabilities (n, classes, h, w).
    public let probabilities: Tensor
    /// Class indices as floats (n, 1, h, w).
    public let labels: Tensor
    public let scale: Float
    /// channels × classes, row-major; nil for the identity (the logits' own gradient).
    public let mix: [Float]?

    public init(probabilities: Tensor, labels: Tensor, scale: Float) {
        let s = probabilities.shape
        precondition(labels.shape == Shape(s.n, 1, s.h, s.w), "labels \(labels.shape) for probabilities \(s)")
        self.probabilities = probabilities; self.labels = labels; self.scale = scale; mix = nil
    }

    init(_ g: CrossEntropyGradient, mix: [Float]) {
        probabilities = g.probabilities; labels = g.labels; scale = g.scale; self.mix = mix
    }

    public var classes: Int { probabilities.shape.c }
    /// Channels of the map this is the gradient of.
    public var channels: Int { mix.map { $0.count / classes } ?? classes }
    public var shape: Shape { let s = probabilities.shape; return Shape(s.n, channels, s.h, s.w) }

    /// The gradient of a 1×1 convolution's input (`cin` channels) whose output this is the
    /// gradient of, for weights w[o · cin + c]: mix′[c][k] = Σ_o w[o][c] · mix[o][k].
    public func throughConv1x1(weights w: UnsafePointer<Float>, cin: Int) -> CrossEntropyGradient {
        let cout = channels, k = classes
        var m = [Float](repeating: 0, count: cin * k)
        for c in 0..<cin {
            for j in 0..<k {
                if let mix {
                    var t: Float = 0
                    for o in 0..<cout { t += w[o * cin + c] * mix[o * k + j] }
                    m[c * k + j] = t
                } else {
                    m[c * k + j] = w[j * cin + c]
                }
            }
        }
        return CrossEntropyGradient(self, mix: m)
    }

    /// Channel `c` of image `i` at pixels start..<start + count of the plane, into `out`. With the
    /// identity mix these are `ChannelKernels.crossEntropyGradient`'s values; through one 1×1
    /// convolution, `ChannelKernels.conv1x1Backward`'s (the same operations in the same order).
    @inline(__always)
    func evaluate(image i: Int, channel c: Int, from start: Int, count: Int, into out: UnsafeMutablePointer<Float>) {
        let k = classes, plane = probabilities.shape.plane
        let lp = labels.data + i * plane + start
        let pp = probabilities.data + i * k * plane + start
        let scaleV = FloatVector(repeating: scale)
        var x = 0
        while x + vectorWidth <= count {
            let t = loadVector(lp + x)
            @inline(__always) func d(_ j: Int) -> FloatVector {
                let hit = FloatVector.zero.replacing(with: 1, where: t .== Float(j))
                return (loadVector(pp + j * plane + x) - hit) * scaleV
            }
            if let mix {
                var a = FloatVector.zero
                for j in 0..<k { a = a.addingProduct(d(j), FloatVector(repeating: mix[c * k + j])) }
                storeVector(a, out + x)
            } else {
                storeVector(d(c), out + x)
            }
            x += vectorWidth
        }
        while x < count {
            @inline(__always) func d(_ j: Int) -> Float { (pp[j * plane + x] - (lp[x] == Float(j) ? 1 : 0)) * scale }
            if let mix {
                var a: Float = 0
                for j in 0..<k { a += mix[c * k + j] * d(j) }
                out[x] = a
            } else {
                out[x] = d(c)
            }
            x += 1
        }
    }

    /// The gradient laid out as a tensor of `shape`.
    public func materialize(pool: ThreadPool = .shared) -> Tensor {
        let s = shape
        let out = Tensor(s, zeroed: false)
        let (pieces, size) = ChannelKernels.pixelPieces(s.plane)
        pool.parallelFor(s.n * pieces) { item, _ in
            let i = item / pieces, lo = (item % pieces) * size, hi = min(s.plane, lo + size)
            if lo >= hi { return }
            for c in 0..<s.c { evaluate(image: i, channel: c, from: lo, count: hi - lo, into: out.plane(i, c) + lo) }
        }
        return out
    }
}

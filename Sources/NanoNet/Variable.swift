import NanoTensor

/// A value in the computation graph, with the gradient the tape accumulates for it.
///
/// An op whose only consumers are convolutions may produce its value directly as the padded
/// planes a convolution reads (`padded`); the plain NCHW `value` is then laid out only if
/// something asks for it.
public final class Variable: @unchecked Sendable {
    private var plain: Tensor?
    /// The value as a convolution's padded input, when the op that made it wrote it that way.
    public let padded: PaddedPlanes?
    private var laidOutGrad: Tensor?
    /// A cross-entropy gradient not laid out yet (`CrossEntropyGradient`); `grad` lays it out
    /// on first use, an op that can read it as it is (a 1×1 head) takes it with `lossGradientAlone`.
    private var lossGradient: CrossEntropyGradient?
    public var grad: Tensor? {
        get {
            if let l = lossGradient {
                lossGradient = nil
                accumulate(l.materialize())
            }
            return laidOutGrad
        }
        set { laidOutGrad = newValue; lossGradient = nil }
    }
    public let requiresGrad: Bool
    public let name: String
    public let shape: Shape

    public init(_ value: Tensor, requiresGrad: Bool = false, name: String = "") {
        plain = value; padded = nil; shape = value.shape
        self.requiresGrad = requiresGrad; self.name = name
    }

    /// A value held as padded planes.
    public init(padded: PaddedPlanes, requiresGrad: Bool = false, name: String = "") {
        plain = nil; self.padded = padded
        shape = Shape(padded.n, padded.channels, padded.height, padded.width)
        self.requiresGrad = requiresGrad; self.name = name
    }

    /// The value in plain NCHW layout (laid out from `padded` on first use, and then a copy:
    /// writing into it does not change `padded`). Like the tape, not for concurrent use.
    public var value: Tensor {
        if let plain { return plain }
        let t = padded!.interior()
        plain = t
        return t
    }

    /// Adds `g` into the gradient (taking ownership of `g` when there is none yet).
    func accumulate(_ g: Tensor) {
        require(g.shape.count == shape.count, "gradient shape \(g.shape) for \(shape)")
        if let existing = grad { ElementwiseKernels.addInPlace(existing, g) } else { laidOutGrad = g }
    }

    /// Adds a cross-entropy gradient, kept unlaid while it is the whole gradient.
    func accumulate(_ g: CrossEntropyGradient) {
        require(g.shape.count == shape.count, "gradient shape \(g.shape) for \(shape)")
        if laidOutGrad == nil && lossGradient == nil { lossGradient = g } else { accumulate(g.materialize()) }
    }

    /// The gradient when it is one cross-entropy gradient and nothing else.
    var lossGradientAlone: CrossEntropyGradient? { laidOutGrad == nil ? lossGradient : nil }

    public func zeroGrad() { grad = nil }
}

import NanoTensor

/// A value in the computation graph, with the gradient the tape accumulates for it.
public final class Variable: @unchecked Sendable {
    public var value: Tensor
    public var grad: Tensor?
    public let requiresGrad: Bool
    public let name: String

    public init(_ value: Tensor, requiresGrad: Bool = false, name: String = "") {
        self.value = value; self.requiresGrad = requiresGrad; self.name = name
    }

    public var shape: Shape { value.shape }

    /// Adds `g` into the gradient (taking ownership of `g` when there is none yet).
    func accumulate(_ g: Tensor) {
        precondition(g.shape.count == value.shape.count, "gradient shape \(g.shape) for \(value.shape)")
        if let existing = grad { ElementwiseKernels.addInPlace(existing, g) } else { grad = g }
    }

    public func zeroGrad() { grad = nil }
}

import NanoTensor

/// Records operations in forward order so `backward` can run their gradient closures in reverse
/// (reverse-mode automatic differentiation). One tape serves one forward/backward pass.
public final class Tape {
    private var backwardSteps: [() -> Void] = []
    public let pool: ThreadPool

    public init(pool: ThreadPool = .shared) { self.pool = pool }

    /// True when any input needs a gradient, so the op must record its backward step.
    func needsGrad(_ inputs: Variable...) -> Bool { inputs.contains { $0.requiresGrad } }

    func record(_ step: @escaping () -> Void) { backwardSteps.append(step) }

    /// Seeds d(loss)/d(loss) = 1 and propagates gradients to every variable that requires them.
    public func backward(_ loss: Variable) {
        require(loss.value.count == 1, "backward needs a scalar loss")
        loss.grad = Tensor(loss.value.shape, repeating: 1)
        for step in backwardSteps.reversed() { step() }
        backwardSteps.removeAll()
    }

    /// A variable computed by an op: it needs a gradient when any input does.
    func output(_ t: Tensor, _ inputs: Variable...) -> Variable {
        Variable(t, requiresGrad: inputs.contains { $0.requiresGrad })
    }
}

import Foundation
import NanoTensor

/// Adam as Keras implements it: lr_t = lr · sqrt(1 − β2ᵗ) / (1 − β1ᵗ);
/// m ← β1 m + (1 − β1) g; v ← β2 v + (1 − β2) g²; p ← p − lr_t · m / (sqrt(v) + ε).
public final class Adam {
    public var learningRate: Float
    public let beta1: Float, beta2: Float, epsilon: Float
    public private(set) var step = 0
    private var m: [ObjectIdentifier: Tensor] = [:]
    private var v: [ObjectIdentifier: Tensor] = [:]

    /// Keras defaults: β1 0.9, β2 0.999, ε 1e-7; pyNanoFind trained with lr 1e-4.
    public init(learningRate: Float = 1e-4, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-7) {
        self.learningRate = learningRate; self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon
    }

    /// Applies one update to every parameter that has a gradient, then clears the gradients.
    public func update(_ parameters: [Variable]) {
        step += 1
        let t = Float(step)
        let lrT = learningRate * (1 - powf(beta2, t)).squareRoot() / (1 - powf(beta1, t))
        for p in parameters {
            guard let g = p.grad else { continue }
            let key = ObjectIdentifier(p)
            let mt = m[key] ?? Tensor(p.shape)
            let vt = v[key] ?? Tensor(p.shape)
            m[key] = mt; v[key] = vt
            let n = p.value.count
            let pd = p.value.data, gd = g.data, md = mt.data, vd = vt.data
            for k in 0..<n {
                md[k] = beta1 * md[k] + (1 - beta1) * gd[k]
                vd[k] = beta2 * vd[k] + (1 - beta2) * gd[k] * gd[k]
                pd[k] -= lrT * md[k] / (vd[k].squareRoot() + epsilon)
            }
            p.zeroGrad()
        }
    }

    /// The moments of `parameters` (zeros for any not yet updated) and the step count: what a
    /// checkpoint needs to continue training exactly where it stopped.
    public func state(of parameters: [Variable]) -> (step: Int, m: [[Float]], v: [[Float]]) {
        (step, parameters.map { m[ObjectIdentifier($0)]?.array ?? [Float](repeating: 0, count: $0.value.count) },
         parameters.map { v[ObjectIdentifier($0)]?.array ?? [Float](repeating: 0, count: $0.value.count) })
    }

    /// Restores a `state(of:)` for the same parameters, in the same order.
    public func restore(step: Int, m ms: [[Float]], v vs: [[Float]], for parameters: [Variable]) {
        require(ms.count == parameters.count && vs.count == parameters.count,
                "\(ms.count) and \(vs.count) moments for \(parameters.count) parameters")
        self.step = step
        for (p, (mt, vt)) in zip(parameters, zip(ms, vs)) {
            require(mt.count == p.value.count && vt.count == p.value.count, "moments of \(mt.count) for \(p.shape)")
            m[ObjectIdentifier(p)] = Tensor(p.shape, values: mt)
            v[ObjectIdentifier(p)] = Tensor(p.shape, values: vt)
        }
    }
}

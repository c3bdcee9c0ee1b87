import Foundation
import NanoTensor

/// A convolution's parameters: weight (cout, cin, k, k) in OIHW and bias (1, 1, 1, cout).
public final class Conv2D: @unchecked Sendable {
    public let weight: Variable
    public let bias: Variable
    public let kernel: Int
    public var cin: Int { weight.shape.c }
    public var cout: Int { weight.shape.n }

    /// Glorot-uniform weights (Keras' default initialiser), zero bias.
    public init(cin: Int, cout: Int, kernel: Int, name: String, rng: inout SplitMix64) {
        require(kernel == 1 || kernel == 3, "kernel \(kernel) (only 1×1 and 3×3)")
        self.kernel = kernel
        let fanIn = Float(cin * kernel * kernel), fanOut = Float(cout * kernel * kernel)
        let limit = (6 / (fanIn + fanOut)).squareRoot()
        weight = Variable(Tensor.randomUniform(Shape(cout, cin, kernel, kernel), in: -limit...limit, rng: &rng),
                          requiresGrad: true, name: name + ".weight")
        bias = Variable(Tensor(Shape(1, 1, 1, cout)), requiresGrad: true, name: name + ".bias")
    }

    public func callAsFunction(_ x: Variable, tape: Tape) -> Variable {
        kernel == 3 ? tape.conv3x3(x, weight: weight, bias: bias) : tape.conv1x1(x, weight: weight, bias: bias)
    }
}

/// Batch normalisation parameters and running statistics.
public final class BatchNorm: @unchecked Sendable {
    public let gamma: Variable
    public let beta: Variable
    public let runningMean: Tensor
    public let runningVariance: Tensor
    public var epsilon: Float
    public var momentum: Float
    public var channels: Int { gamma.shape.count }

    public init(channels: Int, epsilon: Float, momentum: Float, name: String) {
        gamma = Variable(Tensor(Shape(1, 1, 1, channels), repeating: 1), requiresGrad: true, name: name + ".gamma")
        beta = Variable(Tensor(Shape(1, 1, 1, channels)), requiresGrad: true, name: name + ".beta")
        runningMean = Tensor(Shape(1, 1, 1, channels))
        runningVariance = Tensor(Shape(1, 1, 1, channels), repeating: 1)
        self.epsilon = epsilon; self.momentum = momentum
    }

    /// Per-channel (scale, shift) of the inference-mode transform y = scale · x + shift.
    public func inferenceAffine() -> (scale: [Float], shift: [Float]) {
        var scale = [Float](repeating: 0, count: channels), shift = scale
        for k in 0..<channels {
            scale[k] = gamma.value.data[k] / (runningVariance.data[k] + epsilon).squareRoot()
            shift[k] = beta.value.data[k] - runningMean.data[k] * scale[k]
        }
        return (scale, shift)
    }
}

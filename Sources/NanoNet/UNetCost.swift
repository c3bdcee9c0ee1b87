/// Analytic cost of a U-Net forward pass (multiply-adds of the convolutions count 2 FLOP each).
///
/// `flops` is the nominal count of a direct convolution, the figure the U-Net is usually quoted
/// by (1.307 GFLOP per 512² tile for the pyNanoFind widths, pinned by `UNetPlanTests`). The engine runs the upsampled part of each decoder
/// convolution on the map before upsampling (`UpsampledConv3x3`), so it executes fewer:
/// `executedFlops` counts those.
public struct ConvLayerCost: Sendable {
    public var name: String
    public var cin: Int, cout: Int, kernel: Int
    /// Side of the layer's feature map relative to the input (1, 1/2, 1/4, ...).
    public var scaleDivisor: Int
    /// Input channels that arrive 2× upsampled (the last part of a decoder convolution's input).
    public var upsampledInputs: Int = 0

    public func flops(height: Int, width: Int) -> Double {
        2 * Double(kernel * kernel * cin * cout) * pixels(height, width)
    }

    func pixels(_ height: Int, _ width: Int) -> Double { Double(height / scaleDivisor) * Double(width / scaleDivisor) }

    /// FLOPs of the forward pass as executed: 4 instead of 9 multiply-adds per upsampled channel.
    public func executedFlops(height: Int, width: Int) -> Double {
        let direct = Double(kernel * kernel * (cin - upsampledInputs)), phase = 4.0 * Double(upsampledInputs)
        return 2 * (direct + phase) * Double(cout) * pixels(height, width)
    }

    /// FLOPs of one training step's forward and backward for this layer as executed (`isFirst`:
    /// no input gradient). The upsampled part's forward takes 16 multiply-adds per
    /// low-resolution pixel (4 per output pixel); its input gradient and its weight gradient work
    /// on the output gradient's 2×2 box sums and take 9 each (2.25 per output pixel), per input
    /// and output channel (`UpsampledConv3x3.backwardData`, `backwardWeights`; the box sums
    /// themselves are additions, not counted).
    public func executedTrainingFlops(height: Int, width: Int, isFirst: Bool) -> Double {
        let cd = Double(cin - upsampledInputs), cu = Double(upsampledInputs), k2 = Double(kernel * kernel)
        let forward = k2 * cd + 4 * cu, data = isFirst ? 0 : k2 * cd + 2.25 * cu, weights = k2 * cd + 2.25 * cu
        return 2 * (forward + data + weights) * Double(cout) * pixels(height, width)
    }
}

extension UNet {
    /// Every convolution with its channel counts and resolution, in execution order.
    public var convCosts: [ConvLayerCost] {
        plan.convolutions.map {
            ConvLayerCost(name: $0.name, cin: $0.cin, cout: $0.cout, kernel: $0.kernel, scaleDivisor: $0.scaleDivisor,
                          upsampledInputs: $0.upsampledInputs)
        }
    }

    public func forwardFlops(height: Int, width: Int) -> Double {
        convCosts.reduce(0) { $0 + $1.flops(height: height, width: width) }
    }

    /// Forward FLOPs as the engine executes them (see `ConvLayerCost.executedFlops`).
    public func executedForwardFlops(height: Int, width: Int) -> Double {
        convCosts.reduce(0) { $0 + $1.executedFlops(height: height, width: width) }
    }

    /// FLOPs of one image's training step (forward, input and weight gradients) as executed.
    public func executedTrainingFlops(height: Int, width: Int) -> Double {
        convCosts.enumerated().reduce(0) { $0 + $1.element.executedTrainingFlops(height: height, width: width, isFirst: $1.offset == 0) }
    }
}

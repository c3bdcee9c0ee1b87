/// Analytic cost of a U-Net forward pass (multiply-adds of the convolutions count 2 FLOP each).
public struct ConvLayerCost: Sendable {
    public var name: String
    public var cin: Int, cout: Int, kernel: Int
    /// Side of the layer's feature map relative to the input (1, 1/2, 1/4, ...).
    public var scaleDivisor: Int
    public func flops(height: Int, width: Int) -> Double {
        let pixels = Double(height / scaleDivisor) * Double(width / scaleDivisor)
        return 2 * Double(kernel * kernel * cin * cout) * pixels
    }
}

extension UNet {
    /// Every convolution with its channel counts and resolution, in execution order.
    public var convCosts: [ConvLayerCost] {
        var out: [ConvLayerCost] = []
        var c = config.inputChannels
        for (k, w) in config.widths.enumerated() {
            out.append(ConvLayerCost(name: "down\(k + 1)_conv", cin: c, cout: w, kernel: 3, scaleDivisor: 1 << k)); c = w
        }
        let d = 1 << config.depth
        out.append(ConvLayerCost(name: "center1_conv", cin: c, cout: config.centreWidth, kernel: 3, scaleDivisor: d))
        out.append(ConvLayerCost(name: "center2_conv", cin: config.centreWidth, cout: config.centreWidth, kernel: 3, scaleDivisor: d))
        c = config.centreWidth
        for k in stride(from: config.depth - 1, through: 0, by: -1) {
            let w = config.widths[k]
            out.append(ConvLayerCost(name: "up\(k + 1)_conv1", cin: w + c, cout: w, kernel: 3, scaleDivisor: 1 << k))
            out.append(ConvLayerCost(name: "up\(k + 1)_conv2", cin: w, cout: w, kernel: 3, scaleDivisor: 1 << k))
            c = w
        }
        out.append(ConvLayerCost(name: "final_conv", cin: c, cout: config.classes, kernel: 1, scaleDivisor: 1))
        return out
    }

    public func forwardFlops(height: Int, width: Int) -> Double {
        convCosts.reduce(0) { $0 + $1.flops(height: height, width: width) }
    }
}

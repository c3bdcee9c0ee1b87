import Foundation
import NanoTensor

/// The shape of a pyNanoFind-family U-Net.
public struct UNetConfig: Codable, Equatable, Sendable {
    /// Encoder widths, top to bottom; pyNanoFind: [4, 8, 16, 32].
    public var widths: [Int]
    /// Width of the two centre convolutions; pyNanoFind: 32.
    public var centreWidth: Int
    public var inputChannels: Int
    public var classes: Int
    /// Dropout after the first convolution of each decoder stage; pyNanoFind: 0.2.
    public var dropout: Float
    /// pyNanoFind's batch norms use epsilon 1e-4 (not Keras' default 1e-3).
    public var bnEpsilon: Float
    public var bnMomentum: Float

    public init(widths: [Int] = [4, 8, 16, 32], centreWidth: Int = 32, inputChannels: Int = 1, classes: Int = 2,
                dropout: Float = 0.2, bnEpsilon: Float = 1e-4, bnMomentum: Float = 0.99) {
        self.widths = widths; self.centreWidth = centreWidth; self.inputChannels = inputChannels
        self.classes = classes; self.dropout = dropout; self.bnEpsilon = bnEpsilon; self.bnMomentum = bnMomentum
    }

    /// The published pyNanoFind network.
    public static let pyNanoFind = UNetConfig()

    public var depth: Int { widths.count }

    /// Learned and running-statistic floats of the network, or nil when that overflows.
    public var parameterCount: Int? {
        let limit = 1 << 24  // larger widths could overflow the plan's own channel sums
        guard ([centreWidth, inputChannels, classes] + widths).allSatisfy({ (0...limit).contains($0) }) else { return nil }
        var total = 0
        for c in UNetPlan(self).convolutions {
            let (a, o1) = c.cin.multipliedReportingOverflow(by: c.cout)
            let (w, o2) = a.multipliedReportingOverflow(by: c.kernel * c.kernel)
            let (t, o3) = total.addingReportingOverflow(w + c.cout * (c.normName == nil ? 1 : 5))
            if o1 || o2 || o3 { return nil }
            total = t
        }
        return total
    }

    /// Why this configuration cannot be a network NanoFind runs, or nil when it can. Model files
    /// are checked with this before anything is allocated for them.
    public var problem: String? {
        if !(1...8).contains(depth) { return "depth \(depth) is outside 1...8" }
        if !widths.allSatisfy({ (1...4096).contains($0) }) { return "widths \(widths) must each be in 1...4096" }
        if !(1...4096).contains(centreWidth) { return "centre width \(centreWidth) is outside 1...4096" }
        if !(1...64).contains(inputChannels) { return "\(inputChannels) input channels is outside 1...64" }
        if !(2...64).contains(classes) { return "\(classes) classes is outside 2...64" }
        if !(dropout >= 0 && dropout < 1) { return "dropout \(dropout) is outside [0, 1)" }
        if !(bnEpsilon > 0 && bnEpsilon.isFinite) { return "batch-norm epsilon \(bnEpsilon) must be positive" }
        if !(bnMomentum >= 0 && bnMomentum <= 1) { return "batch-norm momentum \(bnMomentum) is outside [0, 1]" }
        guard let n = parameterCount, n <= 50_000_000 else { return "the network would have more than 50 million parameters" }
        return nil
    }
    /// Input sides must be divisible by this (one 2×2 pooling per encoder stage).
    public var sizeMultiple: Int { 1 << depth }
}

/// A U-Net: `depth` encoder stages (conv 3×3 → BN; the skip is ReLU(BN), the main path max-pools
/// the pre-ReLU BN output), two centre conv-BN-ReLU, `depth` decoder stages (upsample, concat
/// with the skip first, conv-BN-ReLU, dropout, conv-BN-ReLU) and a 1×1 head with a softmax.
/// Its layers are those of its `UNetPlan`, in the plan's order.
public final class UNet: @unchecked Sendable {
    public let config: UNetConfig
    public let plan: UNetPlan
    /// One convolution per `plan.convolutions` entry, same order.
    public let layers: [Conv2D]
    /// The batch norm after each convolution (nil for the head), same order.
    public let layerNorms: [BatchNorm?]

    public init(config: UNetConfig = .pyNanoFind, seed: UInt64 = 0) {
        self.config = config
        plan = UNetPlan(config)
        var rng = SplitMix64(seed: seed)
        var layers: [Conv2D] = [], norms: [BatchNorm?] = []
        for c in plan.convolutions {  // Glorot draws in Keras' layer order
            layers.append(Conv2D(cin: c.cin, cout: c.cout, kernel: c.kernel, name: c.name, rng: &rng))
            norms.append(c.normName.map { BatchNorm(channels: c.cout, epsilon: config.bnEpsilon, momentum: config.bnMomentum, name: $0) })
        }
        self.layers = layers
        layerNorms = norms
    }

    public func layer(_ c: UNetPlan.Convolution) -> Conv2D { layers[c.index] }

    /// The batch norm after a convolution of the plan; every convolution but the head has one.
    public func norm(_ c: UNetPlan.Convolution) -> BatchNorm {
        guard let bn = layerNorms[c.index] else { fatalError("UNet: \(c.name) has no batch norm") }
        return bn
    }

    /// Convolutions by layer name.
    public var convs: [String: Conv2D] {
        Dictionary(uniqueKeysWithValues: plan.convolutions.map { ($0.name, layers[$0.index]) })
    }
    /// Batch norms by layer name.
    public var norms: [String: BatchNorm] {
        Dictionary(uniqueKeysWithValues: plan.convolutions.compactMap { c in c.normName.map { ($0, norm(c)) } })
    }
    /// Weighted layers in Keras' topological order (the order of the published .h5 files).
    public var layerOrder: [String] { plan.weightedLayerNames }

    /// Every trainable variable and running statistic, by name (`<layer>.weight`, `.bias`,
    /// `.gamma`, `.beta`, `.moving_mean`, `.moving_variance`), in layer order.
    public var namedTensors: [(String, Tensor)] {
        plan.convolutions.flatMap { c -> [(String, Tensor)] in
            let cv = layers[c.index]
            var out = [(c.name + ".weight", cv.weight.value), (c.name + ".bias", cv.bias.value)]
            if let bn = layerNorms[c.index], let n = c.normName {
                out += [(n + ".gamma", bn.gamma.value), (n + ".beta", bn.beta.value),
                        (n + ".moving_mean", bn.runningMean), (n + ".moving_variance", bn.runningVariance)]
            }
            return out
        }
    }

    /// The trainable variables (convolution weights and biases, BN γ and β).
    public var parameters: [Variable] {
        plan.convolutions.flatMap { c -> [Variable] in
            let cv = layers[c.index]
            guard let bn = layerNorms[c.index] else { return [cv.weight, cv.bias] }
            return [cv.weight, cv.bias, bn.gamma, bn.beta]
        }
    }

    public var parameterCount: Int { namedTensors.reduce(0) { $0 + $1.1.count } }

    /// Checks that an input can go through the network.
    public func validateInput(_ s: Shape) -> String? {
        if s.c != config.inputChannels { return "the model expects \(config.inputChannels) channel(s), got \(s.c)" }
        let m = config.sizeMultiple
        if s.h % m != 0 || s.w % m != 0 || s.h == 0 || s.w == 0 {
            return "image is \(s.w)×\(s.h) pixels; both sides must be positive multiples of \(m)"
        }
        return nil
    }

    /// The differentiable forward pass, returning logits (n, classes, h, w).
    /// `observe` receives every named activation (used to compare with TensorFlow layer by layer).
    ///
    /// In training each convolution runs through the fused op its plan entry names
    /// (`UNetPlan.TrainingOp`); when observed or in inference mode, as separate ops (conv, BN,
    /// ReLU, dropout, pooling), which is also the reference the fused ops are tested against.
    /// Each layer's ops are a stage of the tape named after the layer (`Tape.beginStage`; the
    /// last block fused with the head: both names joined by "+").
    public func forward(_ x: Variable, tape: Tape, training: Bool, dropoutSeed: UInt64 = 0,
                        observe: ((String, Tensor) -> Void)? = nil) -> Variable {
        if let problem = validateInput(x.shape) { fatalError("UNet.forward: input \(x.shape): \(problem)") }
        let fuse = training && observe == nil
        // Each skip with the transform that the decoder's convolution reads it through.
        var skips: [(Variable, PaddedPlanes.Transform)] = []
        var h = x
        for c in plan.encoders {
            tape.beginStage(c.name)
            if fuse {
                let (skip, pooled) = tape.convBatchNormPooled([(h, .copy)], conv: layer(c), norm(c))
                skips.append((skip, .copy))  // already rectified
                h = pooled
            } else {
                let z = block(c, [(h, .copy)], tape: tape, training: training, fuse: false, observe: observe)
                skips.append((z, .relu))  // its ReLU is applied on the way into the decoder's convolution
                h = tape.maxPool2x2(z)
            }
        }
        for c in plan.centre {
            tape.beginStage(c.name)
            h = block(c, [(h, .copy)], tape: tape, training: training, fuse: fuse, padded: true, observe: observe)
        }
        for level in stride(from: config.depth - 1, through: 0, by: -1) {
            let (first, second) = plan.decoders[level]
            let dropout = training && config.dropout > 0
                ? DropoutMask(rate: config.dropout, seed: dropoutSeed &+ UInt64(level) &* 0x2545_F491_4F6C_DD1D) : nil
            // Skip first, then the upsampled map: concat and upsampling fused into the conv's input.
            tape.beginStage(first.name)
            h = block(first, [skips[level], (h, .upsample2x)], tape: tape, training: training, fuse: fuse,
                      dropout: dropout, padded: true, observe: observe)
            if fuse && second.trainingOp == .convBatchNormHead {
                // The last block and the 1×1 head as one op: the block's output is never stored.
                tape.beginStage(second.name + "+" + plan.head.name)
                return tape.convBatchNormHead([(h, .copy)], conv: layer(second), norm(second), head: layer(plan.head))
            }
            // The last one feeds the 1×1 head, which reads plain planes.
            tape.beginStage(second.name)
            h = block(second, [(h, .copy)], tape: tape, training: training, fuse: fuse, padded: level > 0, observe: observe)
        }
        tape.beginStage(plan.head.name)
        let logits = layer(plan.head)(h, tape: tape)
        observe?(plan.head.name, logits.value)
        return logits
    }

    /// conv → BN (→ ReLU, dropout) as one op when fused, else as separate ops. `padded`: the
    /// output feeds only convolutions, so it is written as their padded input.
    private func block(_ c: UNetPlan.Convolution, _ parts: [(Variable, PaddedPlanes.Transform)], tape: Tape, training: Bool,
                       fuse: Bool, dropout: DropoutMask? = nil, padded: Bool = false,
                       observe: ((String, Tensor) -> Void)?) -> Variable {
        let conv = layer(c), bn = norm(c)
        if fuse {
            return tape.convBatchNorm(parts, conv: conv, bn, relu: c.hasReLU, dropout: dropout, paddedOutput: padded)
        }
        let z = tape.conv3x3(parts, weight: conv.weight, bias: conv.bias)
        observe?(c.name, z.value)
        let y = tape.batchNorm(z, bn, training: training)
        if let n = c.normName { observe?(n, y.value) }
        let r = c.hasReLU ? tape.relu(y) : y
        guard let d = dropout else { return r }
        return tape.dropout(r, rate: d.rate, seed: d.seed)
    }
}

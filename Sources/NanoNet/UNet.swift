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
        var total = 0, c = inputChannels
        func add(_ x: Int) -> Bool { let (r, o) = total.addingReportingOverflow(x); total = r; return !o }
        func conv(_ cin: Int, _ cout: Int, _ k: Int) -> Bool {
            let (a, o1) = cin.multipliedReportingOverflow(by: cout * k * k)
            return !o1 && add(a) && add(cout)
        }
        for w in widths { guard conv(c, w, 3), add(4 * w) else { return nil }; c = w }
        guard conv(c, centreWidth, 3), add(4 * centreWidth), conv(centreWidth, centreWidth, 3), add(4 * centreWidth) else { return nil }
        c = centreWidth
        for w in widths.reversed() {
            guard conv(w + c, w, 3), add(4 * w), conv(w, w, 3), add(4 * w) else { return nil }
            c = w
        }
        guard conv(c, classes, 1) else { return nil }
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
/// Layer names follow ../shared/reference/pynanofind/fixtures/README.md.
public final class UNet: @unchecked Sendable {
    public let config: UNetConfig
    /// Weighted layers in Keras' topological order (the order of the published .h5 files).
    public private(set) var convs: [String: Conv2D] = [:]
    public private(set) var norms: [String: BatchNorm] = [:]
    public private(set) var layerOrder: [String] = []

    public init(config: UNetConfig = .pyNanoFind, seed: UInt64 = 0) {
        self.config = config
        var rng = SplitMix64(seed: seed)
        func addConv(_ name: String, _ cin: Int, _ cout: Int, kernel: Int = 3) {
            convs[name] = Conv2D(cin: cin, cout: cout, kernel: kernel, name: name, rng: &rng)
            layerOrder.append(name)
        }
        func addBN(_ name: String, _ c: Int) {
            norms[name] = BatchNorm(channels: c, epsilon: config.bnEpsilon, momentum: config.bnMomentum, name: name)
            layerOrder.append(name)
        }
        var c = config.inputChannels
        for (k, w) in config.widths.enumerated() {
            addConv("down\(k + 1)_conv", c, w); addBN("down\(k + 1)_bn", w); c = w
        }
        addConv("center1_conv", c, config.centreWidth); addBN("center1_bn", config.centreWidth)
        addConv("center2_conv", config.centreWidth, config.centreWidth); addBN("center2_bn", config.centreWidth)
        c = config.centreWidth
        for k in stride(from: config.depth - 1, through: 0, by: -1) {
            let w = config.widths[k], s = "up\(k + 1)"
            addConv("\(s)_conv1", w + c, w); addBN("\(s)_bn1", w)
            addConv("\(s)_conv2", w, w); addBN("\(s)_bn2", w)
            c = w
        }
        addConv("final_conv", c, config.classes, kernel: 1)
    }

    /// Every trainable variable and running statistic, by name (`<layer>.weight`, `.bias`,
    /// `.gamma`, `.beta`, `.moving_mean`, `.moving_variance`), in layer order.
    public var namedTensors: [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for name in layerOrder {
            if let cv = convs[name] {
                out.append((name + ".weight", cv.weight.value)); out.append((name + ".bias", cv.bias.value))
            } else if let bn = norms[name] {
                out.append((name + ".gamma", bn.gamma.value)); out.append((name + ".beta", bn.beta.value))
                out.append((name + ".moving_mean", bn.runningMean)); out.append((name + ".moving_variance", bn.runningVariance))
            }
        }
        return out
    }

    /// The trainable variables (convolution weights and biases, BN γ and β).
    public var parameters: [Variable] {
        layerOrder.flatMap { name -> [Variable] in
            if let cv = convs[name] { return [cv.weight, cv.bias] }
            if let bn = norms[name] { return [bn.gamma, bn.beta] }
            return []
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
    public func forward(_ x: Variable, tape: Tape, training: Bool, dropoutSeed: UInt64 = 0,
                        observe: ((String, Tensor) -> Void)? = nil) -> Variable {
        precondition(validateInput(x.shape) == nil, validateInput(x.shape) ?? "")
        func conv(_ name: String, _ v: Variable) -> Variable {
            let y = convs[name]!(v, tape: tape); observe?(name, y.value); return y
        }
        func bn(_ name: String, _ v: Variable) -> Variable {
            let y = tape.batchNorm(v, norms[name]!, training: training); observe?(name, y.value); return y
        }
        // conv → BN (→ ReLU, dropout) as one op in training, and each encoder stage (conv → BN →
        // ReLU for the skip, max-pool of the pre-ReLU output for the next stage) as one op; as
        // separate ops when observed or in inference mode.
        let fuse = training && observe == nil
        // `padded`: the output feeds only convolutions, so it is written as their padded input.
        func block(_ convName: String, _ bnName: String, _ parts: [(Variable, PaddedPlanes.Transform)], relu: Bool,
                   dropout: DropoutMask? = nil, padded: Bool = false) -> Variable {
            let c = convs[convName]!
            if fuse {
                return tape.convBatchNorm(parts, conv: c, norms[bnName]!, relu: relu, dropout: dropout, paddedOutput: padded)
            }
            let z = tape.conv3x3(parts, weight: c.weight, bias: c.bias)
            observe?(convName, z.value)
            let y = bn(bnName, z)
            let r = relu ? tape.relu(y) : y
            guard let d = dropout else { return r }
            return tape.dropout(r, rate: d.rate, seed: d.seed)
        }
        // Each skip with the transform that the decoder's convolution reads it through.
        var skips: [(Variable, PaddedPlanes.Transform)] = []
        var h = x
        for k in 0..<config.depth {
            let convName = "down\(k + 1)_conv", bnName = "down\(k + 1)_bn"
            if fuse {
                let (skip, pooled) = tape.convBatchNormPooled([(h, .copy)], conv: convs[convName]!, norms[bnName]!)
                skips.append((skip, .copy))  // already rectified
                h = pooled
            } else {
                let z = block(convName, bnName, [(h, .copy)], relu: false)
                skips.append((z, .relu))  // its ReLU is applied on the way into the decoder's convolution
                h = tape.maxPool2x2(z)
            }
        }
        h = block("center1_conv", "center1_bn", [(h, .copy)], relu: true, padded: true)
        h = block("center2_conv", "center2_bn", [(h, .copy)], relu: true, padded: true)
        for k in stride(from: config.depth - 1, through: 0, by: -1) {
            let s = "up\(k + 1)"
            // Skip first, then the upsampled map: concat and upsampling fused into the conv's input.
            let dropout = training && config.dropout > 0
                ? DropoutMask(rate: config.dropout, seed: dropoutSeed &+ UInt64(k) &* 0x2545_F491_4F6C_DD1D) : nil
            h = block("\(s)_conv1", "\(s)_bn1", [skips[k], (h, .upsample2x)], relu: true, dropout: dropout, padded: true)
            if k == 0 && fuse {
                // The last block and the 1×1 head as one op: the block's output is never stored.
                return tape.convBatchNormHead([(h, .copy)], conv: convs["\(s)_conv2"]!, norms["\(s)_bn2"]!, head: convs["final_conv"]!)
            }
            // The last one feeds the 1×1 head, which reads plain planes.
            h = block("\(s)_conv2", "\(s)_bn2", [(h, .copy)], relu: true, padded: k > 0)
        }
        let logits = conv("final_conv", h)
        return logits
    }
}

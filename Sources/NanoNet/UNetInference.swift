import NanoTensor

/// The fast inference path of a `UNet`: batch norms folded into the convolutions, ReLUs fused into
/// the kernels, the skip ReLU, the upsampling and the concatenation fused into the copy that lays
/// out each convolution's padded input. Build it once per set of weights; it reads them at init.
public final class UNetInference: @unchecked Sendable {
    public let config: UNetConfig
    private var packed: [String: Conv3x3.PackedWeights] = [:]
    /// The decoder's first convolutions over their upsampled part (`packed` holds the skip part).
    private var phase: [String: UpsampledConv3x3.PhaseWeights] = [:]
    private let headWeight: Tensor
    private let headBias: Tensor
    private let model: UNet

    public init(_ model: UNet) {
        self.model = model
        config = model.config
        for (name, cv) in model.convs where cv.kernel == 3 {
            let bnName = name.replacingOccurrences(of: "_conv", with: "_bn")
            guard let bn = model.norms[bnName] else { continue }
            let (scale, shift) = bn.inferenceAffine()
            let cin = cv.cin, cout = cv.cout
            let w = cv.weight.value.copy()
            let b = Tensor(Shape(1, 1, 1, cout))
            for o in 0..<cout {
                for k in 0..<(cin * 9) { w.data[o * cin * 9 + k] *= scale[o] }
                b.data[o] = cv.bias.value.data[o] * scale[o] + shift[o]
            }
            if name.hasPrefix("up"), name.hasSuffix("_conv1"),
               let skip = model.convs[name.replacingOccurrences(of: "up", with: "down").replacingOccurrences(of: "_conv1", with: "_conv")] {
                // Skip channels first, then the upsampled map: a direct convolution of the skip
                // part and a phase-decomposed one of the map before upsampling.
                let cs = skip.cout
                packed[name] = Conv3x3.PackedWeights(oihw: w.data, bias: b.data, cout: cout, allInputs: cin, inputChannels: 0..<cs)
                phase[name] = UpsampledConv3x3.PhaseWeights(oihw: w.data, cout: cout, allInputs: cin, inputChannels: cs..<cin)
            } else {
                packed[name] = Conv3x3.PackedWeights(oihw: w.data, bias: b.data, cout: cout, cin: cin)
            }
        }
        let head = model.convs["final_conv"]!
        headWeight = head.weight.value.copy()
        headBias = head.bias.value.copy()
    }

    private func conv(_ name: String, _ input: PaddedPlanes, relu: Bool, pool: ThreadPool) -> Tensor {
        let w = packed[name]!
        let y = Tensor(Shape(input.n, w.cout, input.height, input.width), zeroed: false)
        Conv3x3.forward(input, w, into: y, relu: relu, pool: pool)
        return y
    }

    /// A convolution whose output is the next convolution's (padded) input.
    private func convPadded(_ name: String, _ input: PaddedPlanes, relu: Bool, pool: ThreadPool) -> PaddedPlanes {
        let w = packed[name]!
        let y = PaddedPlanes(n: input.n, channels: w.cout, height: input.height, width: input.width)
        Conv3x3.forward(input, w, into: y, relu: relu, pool: pool)
        return y
    }

    /// A decoder level's first convolution (BN folded, ReLU) of [ReLU(skip), upsample2x(low)]:
    /// the skip part directly, the upsampled part on `low` itself, so the upsampled map and the
    /// concatenation are never laid out.
    private func decoderConv1(_ k: Int, skip: Tensor, low: PaddedPlanes, pool: ThreadPool) -> PaddedPlanes {
        let name = "up\(k + 1)_conv1"
        let w = packed[name]!
        let skipPlanes = PaddedPlanes(n: skip.shape.n, channels: skip.shape.c, height: skip.shape.h, width: skip.shape.w)
        skipPlanes.fill(from: [.init(skip, .relu)], pool: pool)
        let t = PaddedPlanes(n: skip.shape.n, channels: w.cout, height: skip.shape.h, width: skip.shape.w)
        UpsampledConv3x3.forward(skip: skipPlanes, w, low: low, phase[name]!, into: t, relu: true, pool: pool)
        return t
    }

    /// Softmax probabilities (n, classes, h, w) for images (n, channels, h, w). A batch runs one
    /// image at a time: one 512² image's activations fit the L3 cache, a batch's do not.
    public func probabilities(_ x: Tensor, pool: ThreadPool = .shared) -> Tensor {
        let s = x.shape
        if s.n == 1 {
            return forward(x, fusedHead: config.classes == 2 && config.widths[0] <= 4, pool: pool)
        }
        let out = Tensor(Shape(s.n, config.classes, s.h, s.w), zeroed: false)
        let one = Tensor(Shape(1, s.c, s.h, s.w), zeroed: false)
        for i in 0..<s.n {
            one.data.update(from: x.plane(i, 0), count: s.c * s.plane)
            let p = probabilities(one, pool: pool)
            out.plane(i, 0).update(from: p.data, count: config.classes * s.plane)
        }
        return out
    }

    /// Logits (n, classes, h, w).
    public func logits(_ x: Tensor, pool: ThreadPool = .shared) -> Tensor {
        forward(x, fusedHead: false, logitsOnly: true, pool: pool)
    }

    /// The whole pass. With `fusedHead` the last convolution, the 1×1 head and the softmax run as
    /// one kernel; otherwise the head writes logits and, unless `logitsOnly`, a softmax follows.
    private func forward(_ x: Tensor, fusedHead: Bool, logitsOnly: Bool = false, pool: ThreadPool) -> Tensor {
        precondition(model.validateInput(x.shape) == nil, model.validateInput(x.shape) ?? "")
        var skips: [Tensor] = []
        var input = PaddedPlanes.from(x, pool: pool)
        for k in 0..<config.depth {
            let z = conv("down\(k + 1)_conv", input, relu: false, pool: pool)  // BN folded, pre-ReLU
            skips.append(z)
            input = PaddedPlanes(n: z.shape.n, channels: z.shape.c, height: z.shape.h / 2, width: z.shape.w / 2)
            input.fillMaxPool2x2(of: z, pool: pool)
        }
        let c1 = convPadded("center1_conv", input, relu: true, pool: pool)
        var low = convPadded("center2_conv", c1, relu: true, pool: pool)
        for k in stride(from: config.depth - 1, through: 1, by: -1) {
            low = convPadded("up\(k + 1)_conv2", decoderConv1(k, skip: skips[k], low: low, pool: pool), relu: true, pool: pool)
        }
        let t = decoderConv1(0, skip: skips[0], low: low, pool: pool)
        if fusedHead {
            let probs = Tensor(Shape(x.shape.n, 2, x.shape.h, x.shape.w), zeroed: false)
            Conv3x3.forwardWithSoftmaxHead(t, packed["up1_conv2"]!, head: headWeight.array + headBias.array,
                                           into: probs, pool: pool)
            return probs
        }
        let h = conv("up1_conv2", t, relu: true, pool: pool)
        let z = ChannelKernels.conv1x1(h, weights: headWeight.data, bias: headBias.data, cout: config.classes, pool: pool)
        if !logitsOnly { ChannelKernels.softmax(z, into: z, pool: pool) }
        return z
    }
}

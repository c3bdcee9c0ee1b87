import NanoTensor

/// The network described once. Built from a `UNetConfig`, it lists every convolution in
/// execution order (which is also Keras' topological order, the order of the published weight
/// files) with its channels, resolution, the part of its input that arrives upsampled, the batch
/// norm that follows it and the op that runs it. Everything else is derived from it: the layers
/// `UNet` allocates and their names, the Keras weight mapping, the parameter and FLOP counts,
/// the training and inference graphs, and the receptive field and alignment that exact tiling
/// needs. Any depth and any widths go through the same code.
public struct UNetPlan: Sendable, Equatable {
    /// Where a convolution sits in the U-Net.
    public enum Stage: Sendable, Equatable {
        /// conv → BN; the skip is ReLU(BN), the next stage max-pools the pre-ReLU BN output.
        case encoder(level: Int)
        /// conv → BN → ReLU at the lowest resolution (two of them).
        case centre(index: Int)
        /// [skip, upsample2×(map below)] → conv → BN → ReLU → dropout.
        case decoderFirst(level: Int)
        /// conv → BN → ReLU; at level 0 it feeds the head.
        case decoderSecond(level: Int)
        /// 1×1 convolution to the class logits, then softmax.
        case head
    }

    /// The op that runs a convolution (with its batch norm) in a training step.
    public enum TrainingOp: String, Sendable, Equatable {
        /// `Tape.convBatchNormPooled`: conv + BN, writing the rectified skip and the pooled map.
        case encoderStage = "conv+BN → ReLU skip + max-pool"
        /// `Tape.convBatchNorm` with ReLU (and dropout where the stage has it).
        case convBatchNormReLU = "conv+BN+ReLU(+dropout)"
        /// `Tape.convBatchNormHead`: the last block and the 1×1 head as one op.
        case convBatchNormHead = "conv+BN+ReLU + 1×1 head"
        /// Run inside `convBatchNormHead`.
        case head = "1×1 head (inside the last block)"
    }

    public struct Convolution: Sendable, Equatable {
        /// Position in `UNetPlan.convolutions` (and in `UNet.layers`).
        public let index: Int
        public let stage: Stage
        /// Layer names as in ../shared/reference/pynanofind/fixtures/README.md.
        public let name: String
        /// The batch norm after it (every convolution but the head has one).
        public let normName: String?
        public let cin: Int
        public let cout: Int
        public let kernel: Int
        /// Side of the layer's map relative to the input (1, 2, 4, …).
        public let scaleDivisor: Int
        /// Input channels that arrive 2× upsampled: the last part of a decoder's first convolution.
        public let upsampledInputs: Int
        public let trainingOp: TrainingOp
        /// Channels read directly (the skip, for a decoder's first convolution).
        public var directInputs: Int { cin - upsampledInputs }
        public var hasReLU: Bool { stage != .head && !isEncoder }
        public var isEncoder: Bool { if case .encoder = stage { return true }; return false }
    }

    public let config: UNetConfig
    /// Every convolution in execution order.
    public let convolutions: [Convolution]

    public init(_ config: UNetConfig) {
        self.config = config
        var list: [Convolution] = []
        func add(_ stage: Stage, _ name: String, _ norm: String?, _ cin: Int, _ cout: Int, kernel: Int = 3, scale: Int,
                 upsampled: Int = 0, op: TrainingOp) {
            list.append(Convolution(index: list.count, stage: stage, name: name, normName: norm, cin: cin, cout: cout,
                                    kernel: kernel, scaleDivisor: scale, upsampledInputs: upsampled, trainingOp: op))
        }
        var c = config.inputChannels
        for (k, w) in config.widths.enumerated() {
            add(.encoder(level: k), "down\(k + 1)_conv", "down\(k + 1)_bn", c, w, scale: 1 << k, op: .encoderStage)
            c = w
        }
        let bottom = 1 << config.depth, cw = config.centreWidth
        add(.centre(index: 0), "center1_conv", "center1_bn", c, cw, scale: bottom, op: .convBatchNormReLU)
        add(.centre(index: 1), "center2_conv", "center2_bn", cw, cw, scale: bottom, op: .convBatchNormReLU)
        c = cw
        for k in stride(from: config.depth - 1, through: 0, by: -1) {
            let w = config.widths[k], s = "up\(k + 1)"
            add(.decoderFirst(level: k), "\(s)_conv1", "\(s)_bn1", w + c, w, scale: 1 << k, upsampled: c, op: .convBatchNormReLU)
            add(.decoderSecond(level: k), "\(s)_conv2", "\(s)_bn2", w, w, scale: 1 << k,
                op: k == 0 ? .convBatchNormHead : .convBatchNormReLU)
            c = w
        }
        add(.head, "final_conv", nil, c, config.classes, kernel: 1, scale: 1, op: .head)
        convolutions = list
    }

    /// Whether inference runs the last decoder level and the head as one pass per band of rows
    /// (`OutputLevel`), never laying out a full-resolution map there: a first width of at most 4
    /// and a first decoder convolution with an upsampled part.
    public var lastLevelRunsInBands: Bool {
        (config.widths.first.map { $0 <= 4 } ?? false) && decoders[0].first.upsampledInputs > 0
    }

    /// Whether inference recomputes the first level's skip connection where the last level reads
    /// it (`OutputLevel.Skip.recomputed`) instead of laying it out in full: where the last level
    /// runs in bands with the fused two-class head and the network's input has one channel, so
    /// the skip costs 9 multiply-adds a value to make again against 8 bytes to write and read
    /// back from memory a pass later (a 512² tile's 4.5 MB). Measured on AMD EPYC fam 25 mod 17,
    /// 2 threads: the encoder's first convolution without its skip copy took 0.22–0.28 ms of a
    /// tile against 0.57–0.71.
    public var firstSkipRecomputed: Bool {
        lastLevelRunsInBands && config.classes == 2 && encoders.first?.cin == 1
    }

    /// Encoder convolutions, top (full resolution) first.
    public var encoders: [Convolution] { convolutions.filter(\.isEncoder) }
    /// The two centre convolutions.
    public var centre: [Convolution] { convolutions.filter { if case .centre = $0.stage { return true }; return false } }
    /// Each decoder level's two convolutions, indexed by level (0 = full resolution).
    public var decoders: [(first: Convolution, second: Convolution)] {
        (0..<config.depth).map { level in
            let first = convolutions.first { $0.stage == .decoderFirst(level: level) }
            let second = convolutions.first { $0.stage == .decoderSecond(level: level) }
            guard let first, let second else { fatalError("UNetPlan: decoder level \(level) is missing") }
            return (first, second)
        }
    }
    public var head: Convolution {
        guard let last = convolutions.last, last.stage == .head else { fatalError("UNetPlan: no head") }
        return last
    }

    /// The weighted layers' names in Keras' order: each convolution followed by its batch norm.
    public var weightedLayerNames: [String] {
        convolutions.flatMap { [$0.name] + ($0.normName.map { [$0] } ?? []) }
    }

    /// Input sides must be divisible by this (one 2×2 pooling per encoder stage), and a tile of a
    /// larger image must start at a multiple of it to see the same pooling grid.
    public var alignment: Int { 1 << config.depth }

    /// How far, in input pixels, an output pixel's value reaches into the input: the output at x
    /// depends only on inputs in [x − r, x + r] (r = `receptiveRadius`). Tracked as the reach to
    /// each side of a pixel's block at its level: a 3×3 convolution at scale s adds s on both
    /// sides; a 2×2 max-pool keeps the reach relative to the coarser block (which covers both
    /// finer ones); nearest upsampling to scale s adds s (the coarse block is 2s wide); a decoder
    /// convolution reads the skip and the upsampled map, so the larger reach counts. Zero padding
    /// at a tile's edge therefore leaves every pixel more than r from it exactly as in the whole
    /// image, provided the tile starts on the pooling grid (`alignment`).
    public var receptiveRadius: Int {
        var reach = 0
        var skipReach: [Int] = []
        for c in convolutions {
            switch c.stage {
            case .encoder:
                reach += c.scaleDivisor * (c.kernel / 2)
                skipReach.append(reach)  // the pool that follows keeps the reach
            case .centre, .decoderSecond, .head:
                reach += c.scaleDivisor * (c.kernel / 2)
            case .decoderFirst(let level):
                let upsampled = reach + c.scaleDivisor
                reach = max(upsampled, skipReach[level]) + c.scaleDivisor * (c.kernel / 2)
            }
        }
        return reach
    }

    /// The margin a tile needs around the part of it that is kept: the receptive radius rounded up
    /// to the alignment, so that tile origins stay on the pooling grid.
    public var tileMargin: Int {
        let a = alignment
        return (receptiveRadius + a - 1) / a * a
    }
}

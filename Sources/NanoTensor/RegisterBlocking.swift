/// How many accumulators the hot kernels keep in vector registers, chosen per vector ISA at
/// build time. AVX-512 has 32 registers of 16 lanes and NEON 32 of 4: a block of 16
/// accumulators leaves room for the inputs and the broadcast weights. AVX2 has 16 registers of
/// 8 lanes: 16 accumulators alone fill them, and a build for Zen 3 spilled 37 of them to the
/// stack in the forward row kernel (../shared/notes/cpu-kernels.md), so there the blocks are
/// smaller. The 4-lane build (`NF_SIMD4`) takes NEON's blocking, so `make test` runs the arm64
/// kernels on x86 too.
public enum RegisterBlocking {
#if NF_SIMD16 || NF_SIMD4 || arch(arm64)
    /// Vectors along a row in the direct kernels' block of 4 output channels (4 × 4 = 16 accumulators).
    public static let rowVectors = 4
    /// Output channels per weight-gradient tile (9 accumulators each).
    public static let gradientChannels = 2
    /// Vectors of low-resolution columns per chunk of the upsampled (decoder) forward, and output
    /// channels per pass over its inputs (2 accumulators per vector and channel): 2 × 4 = 16.
    /// Tried and not kept (AMD EPYC fam 25 mod 17, AVX-512, 2 threads, 512² tiles alternating in
    /// one process, 190 pairs): 4 vectors × 2 channels in two passes, each row's 8 weights
    /// broadcast once for 16 multiply-adds rather than 16 for 32 (the same sums): 1.000 and
    /// 0.992 of the time (the 256² level 3-4 % faster, the 128² level 1-3 % slower).
    public static let upsampledVectors = 2, upsampledChannels = 4
    /// Vector registers of the ISA the blocking is made for.
    public static let vectorRegisters = 32
    /// No software prefetch (see the AVX2 value): on AVX-512 it measured no gain. Again on AMD
    /// EPYC fam 25 mod 17 (Zen 4), 2 threads, a 512² tile alternating with and without in one
    /// process (190 each, a line per 16 floats of the chunk): 64, 128 and 256 floats ahead
    /// 0.98-1.04 of the time without; the next output row's new input row instead (one row
    /// ahead) 0.92-1.05, and on one thread a convolution run after the caches were flushed
    /// still took 1.10-1.42 of its time on warm maps (1.07-1.28 without: `UNetInference.levels`
    /// says where a pass loses).
    public static let prefetchAhead = 0
#else
    /// 4 × 3 = 12 accumulators: with the 3 inputs and a weight, all 16 registers. Swift 6.3's
    /// `-target-cpu haswell` build keeps them there (no stack reload in `Conv3x3.convRow`, by
    /// `objdump`), and 12 chains cover the multiply-add latency that 8 (4 × 2) left exposed. On
    /// an Intel Xeon fam 6 mod 207, alternating builds: a 512² tile 5.79–6.12 ms against
    /// 6.15–7.56 ms with 4 × 2; the 4→4 convolution at 512² 0.83–0.93 of the peak against
    /// 0.68–0.84. (An earlier, differently written kernel with this blocking spilled on Zen 4 and
    /// ran 13 % slower.) A row of 4 vectors goes as two pairs (`forEachRowChunk`).
    public static let rowVectors = 3
    /// 9 accumulators, the 3 input rows and the gradient vector. Tried and not kept (AMD EPYC fam
    /// 25 mod 17, this build, 2 threads): two output channels a pass, as AVX-512 does (18
    /// accumulators in 16 registers), batch-20 training steps 0.480-0.511 s against 0.442-0.483
    /// s, the builds alternating (3 rounds).
    public static let gradientChannels = 1
    /// 2 vectors × 2 channels = 8 accumulators, 6 input vectors and a weight; the block's 4
    /// channels in two passes. Tried and not kept (AMD EPYC fam 25 mod 17, this build): 3 vectors
    /// × 2 channels, 12 accumulators with one shift's 3 input vectors and a weight, so that 12
    /// chains rather than 8 cover the multiply-add latency (the same sums, bit for bit). Written
    /// straight, LLVM hoisted the next shift's loads and spilled 6 accumulators to the stack
    /// (the 128²-512² decoder convolutions 0.89-1.06 ms against 0.70-0.92); as one loop over the
    /// 2 · cin rows, no spills (by `objdump`), but 512² tiles alternating in one process took
    /// 1.013-1.022 of the time (3 runs of 190), a 2048² image 0.955-1.058 (noise).
    public static let upsampledVectors = 2, upsampledChannels = 2
    public static let vectorRegisters = 16
    /// How many floats ahead of a chunk the direct and upsampled row kernels prefetch one input
    /// row per channel (0: none): the direct kernel's row below, which no earlier output row has
    /// read, and the upsampled kernel's lower low-resolution row (new on every other output row,
    /// so half of those prefetches find the line already there). A decoder reads a skip
    /// written long before, from as many rows at once as it has channels, more streams than the
    /// hardware prefetchers follow. On an Intel Xeon fam 6 mod 207, a 512² tile alternating run
    /// by run in one process (60 runs each, 3 rounds): 7.28-7.48 ms against 7.45-7.70 ms without,
    /// the decoder stages gaining 5 %; prefetching the outputs for writing as well lost 1 %, and a
    /// training step did not change. The AVX-512 build measured no gain and does without. On
    /// AMD EPYC fam 25 mod 17 (Zen 4), this build, a 512² tile alternating in one process (190
    /// each): without the prefetch 1.044-1.055 of the time with it; 256 ahead 1.009-1.011.
    public static let prefetchAhead = 128
#endif
}

extension RegisterBlocking {
    /// Splits a row of `width` floats into the direct kernels' chunks: `rowVectors` vectors at a
    /// time, then pairs (8 accumulators busy where one vector keeps 4), then single vectors.
    /// `body(x, vectors, lanes)`: the chunk from column x, its vector count (a constant at each
    /// call, so each inlined kernel is compiled for it) and the lanes of its last vector inside
    /// the row.
    @inline(__always)
    static func forEachRowChunk(width: Int, _ body: (_ x: Int, _ vectors: Int, _ lanes: Int) -> Void) {
        let vw = vectorWidth, k = rowVectors
        var x = 0
        // Three-vector chunks (AVX2) leave four vectors as two pairs, not 3 + 1: one vector's 4
        // accumulators are too few chains to keep the multiply-add units busy.
        while x + k * vw <= width && !(k == 3 && width - x > 3 * vw && width - x <= 4 * vw) { body(x, k, vw); x += k * vw }
        while k > 2 && x + vw < width { body(x, 2, min(vw, width - x - vw)); x += 2 * vw }
        while x < width { body(x, 1, min(vw, width - x)); x += vw }
    }
}

/// The register block of the direct 3×3 kernels (the forward convolution, its input gradient,
/// and the upsampled part's map gradient): 4 output channels × `vectors` (1 … 4) consecutive
/// vectors of one output row. Every kernel that runs a block of packed weights goes through it,
/// so the blocking is written once; with `vectors` a constant at the call site (the functions
/// are inlined), the unused accumulators and their multiply-adds vanish from the compiled loop.
struct RowAccumulators {
    let vectors: Int
    var a00, a01, a02, a03: FloatVector
    var a10, a11, a12, a13: FloatVector
    var a20, a21, a22, a23: FloatVector
    var a30, a31, a32, a33: FloatVector

    /// Starts from the 4 biases at `bias` (zero without).
    @inline(__always) init(vectors: Int, bias: UnsafePointer<Float>?) {
        self.vectors = vectors
        let b0 = FloatVector(repeating: bias?[0] ?? 0), b1 = FloatVector(repeating: bias?[1] ?? 0)
        let b2 = FloatVector(repeating: bias?[2] ?? 0), b3 = FloatVector(repeating: bias?[3] ?? 0)
        a00 = b0; a01 = b0; a02 = b0; a03 = b0
        a10 = b1; a11 = b1; a12 = b1; a13 = b1
        a20 = b2; a21 = b2; a22 = b2; a23 = b2
        a30 = b3; a31 = b3; a32 = b3; a33 = b3
    }

    /// Adds one tap: the `vectors` vectors from `p` times the 4 channels' weights wp[0 ..< 4].
    /// The inputs are loaded first and each weight is broadcast just before its multiply-adds,
    /// so one register holds the weights.
    @inline(__always) mutating func add(_ p: UnsafePointer<Float>, weights wp: UnsafePointer<Float>) {
        let k = vectors, vw = vectorWidth
        let v0 = loadVector(p)
        let v1 = k > 1 ? loadVector(p + vw) : .zero
        let v2 = k > 2 ? loadVector(p + 2 * vw) : .zero
        let v3 = k > 3 ? loadVector(p + 3 * vw) : .zero
        Self.multiplyAdd(&a00, &a01, &a02, &a03, v0, v1, v2, v3, wp[0], k)
        Self.multiplyAdd(&a10, &a11, &a12, &a13, v0, v1, v2, v3, wp[1], k)
        Self.multiplyAdd(&a20, &a21, &a22, &a23, v0, v1, v2, v3, wp[2], k)
        Self.multiplyAdd(&a30, &a31, &a32, &a33, v0, v1, v2, v3, wp[3], k)
    }

    /// One channel's accumulators c0 … c(k−1) += v0 … v(k−1) · w.
    @inline(__always) static func multiplyAdd(_ c0: inout FloatVector, _ c1: inout FloatVector, _ c2: inout FloatVector,
                                              _ c3: inout FloatVector, _ v0: FloatVector, _ v1: FloatVector, _ v2: FloatVector,
                                              _ v3: FloatVector, _ w: Float, _ k: Int) {
        let wv = FloatVector(repeating: w)
        c0 = c0.addingProduct(v0, wv)
        if k > 1 { c1 = c1.addingProduct(v1, wv) }
        if k > 2 { c2 = c2.addingProduct(v2, wv) }
        if k > 3 { c3 = c3.addingProduct(v3, wv) }
    }

    /// Writes the first `channels` channels to `out` from column x (planes `planeStride` apart): through
    /// max(·, 0) when `relu`, zero where `gate` (laid out as `out`) is ≤ 0 when given, only the
    /// first `lanes` lanes of the last vector, streamed when `stream` (whole vectors only).
    @inline(__always) func store(to out: UnsafeMutablePointer<Float>, column x: Int, planeStride os: Int, channels: Int,
                                 lanes: Int, relu: Bool, gate: UnsafePointer<Float>?, stream: Bool) {
        storeChannel(a00, a01, a02, a03, out, x, lanes, relu, gate, stream)
        if channels > 1 { storeChannel(a10, a11, a12, a13, out, x + os, lanes, relu, gate, stream) }
        if channels > 2 { storeChannel(a20, a21, a22, a23, out, x + 2 * os, lanes, relu, gate, stream) }
        if channels > 3 { storeChannel(a30, a31, a32, a33, out, x + 3 * os, lanes, relu, gate, stream) }
    }

    /// One channel's vectors at out + offset (and gate + offset).
    @inline(__always) private func storeChannel(_ c0: FloatVector, _ c1: FloatVector, _ c2: FloatVector, _ c3: FloatVector,
                                                _ out: UnsafeMutablePointer<Float>, _ offset: Int, _ lanes: Int, _ relu: Bool,
                                                _ gate: UnsafePointer<Float>?, _ stream: Bool) {
        let k = vectors, vw = vectorWidth
        storeVector(c0, out, offset, lanes: k == 1 ? lanes : vw, relu, gate, stream)
        if k > 1 { storeVector(c1, out, offset + vw, lanes: k == 2 ? lanes : vw, relu, gate, stream) }
        if k > 2 { storeVector(c2, out, offset + 2 * vw, lanes: k == 3 ? lanes : vw, relu, gate, stream) }
        if k > 3 { storeVector(c3, out, offset + 3 * vw, lanes: lanes, relu, gate, stream) }
    }

    @inline(__always) private func storeVector(_ v: FloatVector, _ out: UnsafeMutablePointer<Float>, _ offset: Int, lanes: Int,
                                               _ relu: Bool, _ gate: UnsafePointer<Float>?, _ stream: Bool) {
        var v = v
        if relu { v = vmax(v, .zero) }
        if let gate { v = FloatVector.zero.replacing(with: v, where: Conv3x3.loadGate(gate + offset, lanes) .> 0) }
        if lanes == vectorWidth {
            NanoTensor.storeVector(v, out + offset, streaming: stream)
        } else {
            storePartial(v, out + offset, lanes)
        }
    }
}

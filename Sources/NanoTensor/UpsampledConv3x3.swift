/// 3×3 "same" convolution of a nearest-neighbour 2×-upsampled map, computed on the map before
/// upsampling: output pixel (2r + py, 2c + px) sees only a 2×2 neighbourhood of low-resolution
/// pixels, so each of the four output phases (py, px) is a 2×2 convolution of the low-resolution
/// map with summed 3×3 weights. That is 4 multiply-adds per input channel and output pixel instead
/// of 9, and the upsampled map is never laid out. A U-Net decoder's first convolution is a direct
/// 3×3 convolution of the skip part (with the bias) plus this over the upsampled part.
///
/// The plain twin is `Conv3x3Reference.forward` of `PoolingKernels.upsample2x` of the map; the
/// tests compare the two.
public enum UpsampledConv3x3 {
    /// Which kernel rows (or columns) the low-resolution neighbour `t` (0: the one before, 1: the
    /// one after) collects for output parity `p`: [p][t] → kernel indices.
    static let taps: [[[Int]]] = [[[0], [1, 2]], [[0, 1], [2]]]

    /// Phase weights per block of 4 output channels: [block][py][cin][ty][px][tx][4].
    public struct PhaseWeights: @unchecked Sendable {
        public let cin: Int, cout: Int
        let blocks: Int
        let packed: Tensor

        /// From OIHW weights (cout, allInputs, 3, 3), taking the input channels `inputChannels`
        /// (the upsampled part of a concatenated input).
        public init(oihw w: UnsafePointer<Float>, cout: Int, allInputs: Int, inputChannels: Range<Int>) {
            precondition(inputChannels.lowerBound >= 0 && inputChannels.upperBound <= allInputs,
                         "input channels \(inputChannels) of \(allInputs)")
            let cin = inputChannels.count
            self.cin = cin; self.cout = cout
            blocks = (cout + Conv3x3.block - 1) / Conv3x3.block
            packed = Tensor(Shape(1, 1, 1, blocks * 2 * cin * 32))
            for o in 0..<cout {
                let ob = o / Conv3x3.block, j = o % Conv3x3.block
                for (ci, c) in inputChannels.enumerated() {
                    let k = w + (o * allInputs + c) * 9
                    for py in 0..<2 { for ty in 0..<2 { for px in 0..<2 { for tx in 0..<2 {
                        var sum: Float = 0
                        for ky in UpsampledConv3x3.taps[py][ty] { for kx in UpsampledConv3x3.taps[px][tx] { sum += k[ky * 3 + kx] } }
                        packed.data[(((ob * 2 + py) * cin + ci) * 8 + (ty * 2 + px) * 2 + tx) * 4 + j] = sum
                    } } } }
                }
            }
        }
    }

    /// Adds the convolution of upsample2x(`low`) to `out` (n, cout, 2·h, 2·w), which already holds
    /// the bias and any other part's contribution, then applies ReLU when `relu`.
    public static func forward(_ low: PaddedPlanes, _ w: PhaseWeights, addingInto out: Tensor,
                               relu: Bool = false, pool: ThreadPool = .shared) {
        precondition(out.shape == Shape(low.n, w.cout, 2 * low.height, 2 * low.width), "upsampled conv output shape \(out.shape)")
        forward(low, w, out: out.data, imageStride: w.cout * out.shape.plane, planeStride: out.shape.plane,
                rowStride: out.shape.w, relu: relu, rowStatistics: nil, pool: pool)
    }

    /// The same into the interior of padded planes (the next convolution's input).
    public static func forward(_ low: PaddedPlanes, _ w: PhaseWeights, addingInto out: PaddedPlanes,
                               relu: Bool = false, pool: ThreadPool = .shared) {
        precondition(out.n == low.n && out.channels == w.cout && out.height == 2 * low.height && out.width == 2 * low.width,
                     "upsampled conv output planes do not match")
        forward(low, w, out: out.origin(0, 0), imageStride: out.channels * out.planeStride, planeStride: out.planeStride,
                rowStride: out.rowStride, relu: relu, rowStatistics: nil, pool: pool)
    }

    /// A decoder convolution of [skip, upsample2x(low)] into `out`: the direct part (with the
    /// bias) over `skip`'s padded planes, then the phase-decomposed part over `low`. With
    /// `statistics`, also the output's per-channel batch mean and variance (as
    /// `Conv3x3.forwardWithStatistics` gathers them).
    public static func forward(skip: PaddedPlanes, _ direct: Conv3x3.PackedWeights, low: PaddedPlanes, _ w: PhaseWeights,
                               into out: Tensor, statistics: Bool, pool: ThreadPool = .shared) -> (mean: [Float], variance: [Float])? {
        let s = out.shape
        precondition(direct.cout == w.cout && skip.n == low.n && skip.height == 2 * low.height && skip.width == 2 * low.width,
                     "decoder convolution parts do not match")
        Conv3x3.forward(skip, direct, into: out, pool: pool)
        guard statistics else {
            forward(low, w, addingInto: out, pool: pool)
            return nil
        }
        let rowSums = Tensor(Shape(1, 1, 1, 2 * s.n * s.c * s.h), zeroed: false)
        forward(low, w, out: out.data, imageStride: w.cout * s.plane, planeStride: s.plane, rowStride: s.w, relu: false,
                rowStatistics: (rowSums.data, UnsafePointer(direct.bias.data)), pool: pool)
        return Conv3x3.batchStatistics(rowSums: rowSums, of: s, around: direct.bias.data)
    }

    /// `rowStatistics`: per output row and channel, Σ (y − shift[c]) and Σ (y − shift[c])² of the
    /// final output, as `Conv3x3.forwardWithStatistics` gathers them.
    static func forward(_ low: PaddedPlanes, _ w: PhaseWeights, out: UnsafeMutablePointer<Float>,
                        imageStride: Int, planeStride: Int, rowStride: Int, relu: Bool,
                        rowStatistics: (sums: UnsafeMutablePointer<Float>, shift: UnsafePointer<Float>)?, pool: ThreadPool) {
        precondition(low.channels == w.cin, "upsampled conv input has \(low.channels) channels, weights \(w.cin)")
        let h = 2 * low.height, lw = low.width, width = 2 * lw
        let band = max(1, h / (8 * pool.threadCount))
        let bands = (h + band - 1) / band
        let items = low.n * bands * w.blocks
        let vw = vectorWidth
        pool.parallelFor(items) { item, _ in
            let ob = item % w.blocks
            let rest = item / w.blocks
            let bi = rest % bands, i = rest / bands
            let y0 = bi * band, y1 = min(h, y0 + band)
            let o0 = ob * Conv3x3.block
            let nValid = min(Conv3x3.block, w.cout - o0)
            let outBase = out + i * imageStride + o0 * planeStride
            let inBase = UnsafePointer(low.origin(i, 0))
            for y in y0..<y1 {
                let r = y / 2, py = y % 2
                // Low-resolution rows r + py − 1 and r + py (the zero border rows cover −1 and h/2).
                let rowA = inBase + (r + py - 1) * low.rowStride, rowB = rowA + low.rowStride
                let wp = UnsafePointer(w.packed.data + (ob * 2 + py) * w.cin * 32)
                let o = outBase + y * rowStride
                var c = 0
                while c + 2 * vw <= lw {
                    chunk2(rowA + c, rowB + c, low.planeStride, w.cin, wp, o + 2 * c, planeStride, nValid, relu)
                    c += 2 * vw
                }
                while c < lw {
                    chunk1(rowA + c, rowB + c, low.planeStride, w.cin, wp, o + 2 * c, planeStride, nValid, relu, min(vw, lw - c))
                    c += vw
                }
                if let st = rowStatistics {
                    for oc in 0..<nValid {
                        Conv3x3.rowSums(o + oc * planeStride, width, around: st.shift[o0 + oc],
                                        into: st.sums + 2 * ((i * w.cout + o0 + oc) * h + y))
                    }
                }
            }
        }
    }

    @inline(__always)
    static func chunk2(_ rowA: UnsafePointer<Float>, _ rowB: UnsafePointer<Float>, _ ps: Int, _ cin: Int,
                       _ wp0: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ os: Int, _ nValid: Int,
                       _ relu: Bool) {
        let vw = vectorWidth
        var a000 = FloatVector.zero, a001 = FloatVector.zero, a010 = FloatVector.zero, a011 = FloatVector.zero
        var a100 = FloatVector.zero, a101 = FloatVector.zero, a110 = FloatVector.zero, a111 = FloatVector.zero
        var a200 = FloatVector.zero, a201 = FloatVector.zero, a210 = FloatVector.zero, a211 = FloatVector.zero
        var a300 = FloatVector.zero, a301 = FloatVector.zero, a310 = FloatVector.zero, a311 = FloatVector.zero
        var wp = wp0
        var pa = rowA, pb = rowB
        for _ in 0..<cin {
            do {
                let m0 = loadVector(pa - 1), z0 = loadVector(pa), p0 = loadVector(pa + 1), m1 = loadVector(pa - 1 + 1 * vw), z1 = loadVector(pa + 1 * vw), p1 = loadVector(pa + 1 + 1 * vw)
                let w000 = FloatVector(repeating: wp[0]), w001 = FloatVector(repeating: wp[4])
                a000 = a000.addingProduct(m0, w000).addingProduct(z0, w001)
                a001 = a001.addingProduct(m1, w000).addingProduct(z1, w001)
                let w010 = FloatVector(repeating: wp[8]), w011 = FloatVector(repeating: wp[12])
                a010 = a010.addingProduct(z0, w010).addingProduct(p0, w011)
                a011 = a011.addingProduct(z1, w010).addingProduct(p1, w011)
                let w100 = FloatVector(repeating: wp[1]), w101 = FloatVector(repeating: wp[5])
                a100 = a100.addingProduct(m0, w100).addingProduct(z0, w101)
                a101 = a101.addingProduct(m1, w100).addingProduct(z1, w101)
                let w110 = FloatVector(repeating: wp[9]), w111 = FloatVector(repeating: wp[13])
                a110 = a110.addingProduct(z0, w110).addingProduct(p0, w111)
                a111 = a111.addingProduct(z1, w110).addingProduct(p1, w111)
                let w200 = FloatVector(repeating: wp[2]), w201 = FloatVector(repeating: wp[6])
                a200 = a200.addingProduct(m0, w200).addingProduct(z0, w201)
                a201 = a201.addingProduct(m1, w200).addingProduct(z1, w201)
                let w210 = FloatVector(repeating: wp[10]), w211 = FloatVector(repeating: wp[14])
                a210 = a210.addingProduct(z0, w210).addingProduct(p0, w211)
                a211 = a211.addingProduct(z1, w210).addingProduct(p1, w211)
                let w300 = FloatVector(repeating: wp[3]), w301 = FloatVector(repeating: wp[7])
                a300 = a300.addingProduct(m0, w300).addingProduct(z0, w301)
                a301 = a301.addingProduct(m1, w300).addingProduct(z1, w301)
                let w310 = FloatVector(repeating: wp[11]), w311 = FloatVector(repeating: wp[15])
                a310 = a310.addingProduct(z0, w310).addingProduct(p0, w311)
                a311 = a311.addingProduct(z1, w310).addingProduct(p1, w311)
            }
            do {
                let m0 = loadVector(pb - 1), z0 = loadVector(pb), p0 = loadVector(pb + 1), m1 = loadVector(pb - 1 + 1 * vw), z1 = loadVector(pb + 1 * vw), p1 = loadVector(pb + 1 + 1 * vw)
                let w000 = FloatVector(repeating: wp[16]), w001 = FloatVector(repeating: wp[20])
                a000 = a000.addingProduct(m0, w000).addingProduct(z0, w001)
                a001 = a001.addingProduct(m1, w000).addingProduct(z1, w001)
                let w010 = FloatVector(repeating: wp[24]), w011 = FloatVector(repeating: wp[28])
                a010 = a010.addingProduct(z0, w010).addingProduct(p0, w011)
                a011 = a011.addingProduct(z1, w010).addingProduct(p1, w011)
                let w100 = FloatVector(repeating: wp[17]), w101 = FloatVector(repeating: wp[21])
                a100 = a100.addingProduct(m0, w100).addingProduct(z0, w101)
                a101 = a101.addingProduct(m1, w100).addingProduct(z1, w101)
                let w110 = FloatVector(repeating: wp[25]), w111 = FloatVector(repeating: wp[29])
                a110 = a110.addingProduct(z0, w110).addingProduct(p0, w111)
                a111 = a111.addingProduct(z1, w110).addingProduct(p1, w111)
                let w200 = FloatVector(repeating: wp[18]), w201 = FloatVector(repeating: wp[22])
                a200 = a200.addingProduct(m0, w200).addingProduct(z0, w201)
                a201 = a201.addingProduct(m1, w200).addingProduct(z1, w201)
                let w210 = FloatVector(repeating: wp[26]), w211 = FloatVector(repeating: wp[30])
                a210 = a210.addingProduct(z0, w210).addingProduct(p0, w211)
                a211 = a211.addingProduct(z1, w210).addingProduct(p1, w211)
                let w300 = FloatVector(repeating: wp[19]), w301 = FloatVector(repeating: wp[23])
                a300 = a300.addingProduct(m0, w300).addingProduct(z0, w301)
                a301 = a301.addingProduct(m1, w300).addingProduct(z1, w301)
                let w310 = FloatVector(repeating: wp[27]), w311 = FloatVector(repeating: wp[31])
                a310 = a310.addingProduct(z0, w310).addingProduct(p0, w311)
                a311 = a311.addingProduct(z1, w310).addingProduct(p1, w311)
            }
            wp += 32; pa += ps; pb += ps
        }
        do {
            let o = out + 0 * os
            addStore(interleaveLow(a000, a010), o + 0 * vw, relu, vw)
            addStore(interleaveHigh(a000, a010), o + 1 * vw, relu, vw)
            addStore(interleaveLow(a001, a011), o + 2 * vw, relu, vw)
            addStore(interleaveHigh(a001, a011), o + 3 * vw, relu, vw)
        }
        if nValid > 1 {
            let o = out + 1 * os
            addStore(interleaveLow(a100, a110), o + 0 * vw, relu, vw)
            addStore(interleaveHigh(a100, a110), o + 1 * vw, relu, vw)
            addStore(interleaveLow(a101, a111), o + 2 * vw, relu, vw)
            addStore(interleaveHigh(a101, a111), o + 3 * vw, relu, vw)
        }
        if nValid > 2 {
            let o = out + 2 * os
            addStore(interleaveLow(a200, a210), o + 0 * vw, relu, vw)
            addStore(interleaveHigh(a200, a210), o + 1 * vw, relu, vw)
            addStore(interleaveLow(a201, a211), o + 2 * vw, relu, vw)
            addStore(interleaveHigh(a201, a211), o + 3 * vw, relu, vw)
        }
        if nValid > 3 {
            let o = out + 3 * os
            addStore(interleaveLow(a300, a310), o + 0 * vw, relu, vw)
            addStore(interleaveHigh(a300, a310), o + 1 * vw, relu, vw)
            addStore(interleaveLow(a301, a311), o + 2 * vw, relu, vw)
            addStore(interleaveHigh(a301, a311), o + 3 * vw, relu, vw)
        }
    }

    @inline(__always)
    static func chunk1(_ rowA: UnsafePointer<Float>, _ rowB: UnsafePointer<Float>, _ ps: Int, _ cin: Int,
                       _ wp0: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ os: Int, _ nValid: Int,
                       _ relu: Bool, _ lanes: Int) {
        let vw = vectorWidth
        var a000 = FloatVector.zero, a010 = FloatVector.zero, a100 = FloatVector.zero, a110 = FloatVector.zero
        var a200 = FloatVector.zero, a210 = FloatVector.zero, a300 = FloatVector.zero, a310 = FloatVector.zero
        var wp = wp0
        var pa = rowA, pb = rowB
        for _ in 0..<cin {
            do {
                let m0 = loadVector(pa - 1), z0 = loadVector(pa), p0 = loadVector(pa + 1)
                let w000 = FloatVector(repeating: wp[0]), w001 = FloatVector(repeating: wp[4])
                a000 = a000.addingProduct(m0, w000).addingProduct(z0, w001)
                let w010 = FloatVector(repeating: wp[8]), w011 = FloatVector(repeating: wp[12])
                a010 = a010.addingProduct(z0, w010).addingProduct(p0, w011)
                let w100 = FloatVector(repeating: wp[1]), w101 = FloatVector(repeating: wp[5])
                a100 = a100.addingProduct(m0, w100).addingProduct(z0, w101)
                let w110 = FloatVector(repeating: wp[9]), w111 = FloatVector(repeating: wp[13])
                a110 = a110.addingProduct(z0, w110).addingProduct(p0, w111)
                let w200 = FloatVector(repeating: wp[2]), w201 = FloatVector(repeating: wp[6])
                a200 = a200.addingProduct(m0, w200).addingProduct(z0, w201)
                let w210 = FloatVector(repeating: wp[10]), w211 = FloatVector(repeating: wp[14])
                a210 = a210.addingProduct(z0, w210).addingProduct(p0, w211)
                let w300 = FloatVector(repeating: wp[3]), w301 = FloatVector(repeating: wp[7])
                a300 = a300.addingProduct(m0, w300).addingProduct(z0, w301)
                let w310 = FloatVector(repeating: wp[11]), w311 = FloatVector(repeating: wp[15])
                a310 = a310.addingProduct(z0, w310).addingProduct(p0, w311)
            }
            do {
                let m0 = loadVector(pb - 1), z0 = loadVector(pb), p0 = loadVector(pb + 1)
                let w000 = FloatVector(repeating: wp[16]), w001 = FloatVector(repeating: wp[20])
                a000 = a000.addingProduct(m0, w000).addingProduct(z0, w001)
                let w010 = FloatVector(repeating: wp[24]), w011 = FloatVector(repeating: wp[28])
                a010 = a010.addingProduct(z0, w010).addingProduct(p0, w011)
                let w100 = FloatVector(repeating: wp[17]), w101 = FloatVector(repeating: wp[21])
                a100 = a100.addingProduct(m0, w100).addingProduct(z0, w101)
                let w110 = FloatVector(repeating: wp[25]), w111 = FloatVector(repeating: wp[29])
                a110 = a110.addingProduct(z0, w110).addingProduct(p0, w111)
                let w200 = FloatVector(repeating: wp[18]), w201 = FloatVector(repeating: wp[22])
                a200 = a200.addingProduct(m0, w200).addingProduct(z0, w201)
                let w210 = FloatVector(repeating: wp[26]), w211 = FloatVector(repeating: wp[30])
                a210 = a210.addingProduct(z0, w210).addingProduct(p0, w211)
                let w300 = FloatVector(repeating: wp[19]), w301 = FloatVector(repeating: wp[23])
                a300 = a300.addingProduct(m0, w300).addingProduct(z0, w301)
                let w310 = FloatVector(repeating: wp[27]), w311 = FloatVector(repeating: wp[31])
                a310 = a310.addingProduct(z0, w310).addingProduct(p0, w311)
            }
            wp += 32; pa += ps; pb += ps
        }
        do {
            let o = out + 0 * os
            addStore(interleaveLow(a000, a010), o, relu, min(vw, 2 * lanes))
            addStore(interleaveHigh(a000, a010), o + vw, relu, max(0, 2 * lanes - vw))
        }
        if nValid > 1 {
            let o = out + 1 * os
            addStore(interleaveLow(a100, a110), o, relu, min(vw, 2 * lanes))
            addStore(interleaveHigh(a100, a110), o + vw, relu, max(0, 2 * lanes - vw))
        }
        if nValid > 2 {
            let o = out + 2 * os
            addStore(interleaveLow(a200, a210), o, relu, min(vw, 2 * lanes))
            addStore(interleaveHigh(a200, a210), o + vw, relu, max(0, 2 * lanes - vw))
        }
        if nValid > 3 {
            let o = out + 3 * os
            addStore(interleaveLow(a300, a310), o, relu, min(vw, 2 * lanes))
            addStore(interleaveHigh(a300, a310), o + vw, relu, max(0, 2 * lanes - vw))
        }
    }

}

/// out[0..<lanes] += v (then ReLU when `relu`).
@inline(__always) func addStore(_ v: FloatVector, _ p: UnsafeMutablePointer<Float>, _ relu: Bool, _ lanes: Int) {
    if lanes == vectorWidth {
        var s = loadVector(p) + v
        if relu { s = vmax(s, .zero) }
        storeVector(s, p)
    } else {
        for l in 0..<lanes { let s = p[l] + v[l]; p[l] = relu ? max(s, 0) : s }
    }
}

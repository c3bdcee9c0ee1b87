import CNanoSupport
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
            require(inputChannels.lowerBound >= 0 && inputChannels.upperBound <= allInputs,
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
        require(out.shape == Shape(low.n, w.cout, 2 * low.height, 2 * low.width), "upsampled conv output shape \(out.shape)")
        forward(low, w, out: out.data, imageStride: w.cout * out.shape.plane, planeStride: out.shape.plane,
                rowStride: out.shape.w, relu: relu, rowStatistics: nil, pool: pool)
    }

    /// The same into the interior of padded planes (the next convolution's input).
    public static func forward(_ low: PaddedPlanes, _ w: PhaseWeights, addingInto out: PaddedPlanes,
                               relu: Bool = false, pool: ThreadPool = .shared) {
        require(out.n == low.n && out.channels == w.cout && out.height == 2 * low.height && out.width == 2 * low.width,
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
        require(direct.cout == w.cout && skip.n == low.n && skip.height == 2 * low.height && skip.width == 2 * low.width,
                     "decoder convolution parts do not match")
        require(out.shape == Shape(low.n, w.cout, skip.height, skip.width), "decoder convolution output shape \(out.shape)")
        require(skip.channels == direct.cin, "skip has \(skip.channels) channels, weights \(direct.cin)")
        let moments = statistics ? Conv3x3.rowMomentsBuffer(s) : nil
        forward(low, w, out: out.data, imageStride: w.cout * s.plane, planeStride: s.plane, rowStride: s.w, relu: false,
                rowStatistics: moments?.data, direct: (skip, direct), pool: pool)
        return moments.map { Conv3x3.batchStatistics(rowMoments: $0, of: s) }
    }

    /// The same into the interior of padded planes (the next convolution's input), with ReLU
    /// when `relu`: a decoder convolution at inference, where batch norm is folded into it.
    public static func forward(skip: PaddedPlanes, _ direct: Conv3x3.PackedWeights, low: PaddedPlanes, _ w: PhaseWeights,
                               into out: PaddedPlanes, relu: Bool, pool: ThreadPool = .shared) {
        require(direct.cout == w.cout && skip.n == low.n && skip.height == 2 * low.height && skip.width == 2 * low.width,
                     "decoder convolution parts do not match")
        require(out.n == low.n && out.channels == w.cout && out.height == skip.height && out.width == skip.width,
                     "decoder convolution output planes do not match")
        require(skip.channels == direct.cin, "skip has \(skip.channels) channels, weights \(direct.cin)")
        forward(low, w, out: out.origin(0, 0), imageStride: out.channels * out.planeStride, planeStride: out.planeStride,
                rowStride: out.rowStride, relu: relu, rowStatistics: nil, direct: (skip, direct), borders: out, pool: pool)
    }

    /// `rowStatistics`: the moments of every final output row (`Conv3x3.rowMoments`), as
    /// `Conv3x3.forwardWithStatistics` gathers them. With `direct`, each output row first gets
    /// the direct convolution of those planes (with its bias) written, and the upsampled part is
    /// added while the row is still in cache: one pass over the output instead of two.
    static func forward(_ low: PaddedPlanes, _ w: PhaseWeights, out: UnsafeMutablePointer<Float>,
                        imageStride: Int, planeStride: Int, rowStride: Int, relu: Bool,
                        rowStatistics: UnsafeMutablePointer<Float>?,
                        direct: (planes: PaddedPlanes, weights: Conv3x3.PackedWeights)? = nil, borders: PaddedPlanes? = nil,
                        pool: ThreadPool) {
        require(low.channels == w.cin, "upsampled conv input has \(low.channels) channels, weights \(w.cin)")
        let h = 2 * low.height, lw = low.width, width = 2 * lw
        // The upsampled part costs 4 multiply-adds per output pixel and input channel, the
        // direct part 9: its channels count 4/9 towards the rows' work.
        let band = Conv3x3.bandRows(height: h, width: width, inputs: (direct?.weights.cin ?? 0) + (4 * w.cin + 8) / 9,
                                    blocks: w.blocks, images: low.n, threads: pool.threadCount)
        let bands = (h + band - 1) / band
        let items = low.n * bands * w.blocks
        // The direct part unwrapped once per item: unwrapping the optional tuple of class
        // references per row cost a retain and a release each, on counts both threads share.
        let directWeights = direct?.weights
        pool.parallelFor(items) { item, _ in
            let (i, ob, y0, y1) = Conv3x3.bandItem(item, blocks: w.blocks, bands: bands, band: band, height: h)
            let o0 = ob * Conv3x3.block
            let nValid = min(Conv3x3.block, w.cout - o0)
            let outView = PlaneView(out + i * imageStride, planeStride: planeStride, rowStride: rowStride)
            let outBase = outView.row(o0, 0)
            let lowView = low.view(image: i)
            let directView = direct?.planes.view(image: i)
            for y in y0..<y1 {
                if let borders { for oc in 0..<nValid { borders.zeroBorders(plane: i * w.cout + o0 + oc, row: y) } }
                if let directWeights, let directView {
                    directWeights.convolveRow(y, block: ob, input: directView, into: outView, width: width)
                }
                let o = outBase + y * rowStride
                w.addRow(y, block: ob, low: lowView, lowWidth: lw, into: o, planeStride: planeStride, relu: relu)
                if let st = rowStatistics {
                    for oc in 0..<nValid {
                        Conv3x3.rowMoments(o + oc * planeStride, width, into: st + 3 * ((i * w.cout + o0 + oc) * h + y))
                    }
                }
            }
        }
    }

    /// One output row's upsampled part for a block of 4 output channels from the low-resolution
    /// rows `rowA` and `rowB`: chunks of `RegisterBlocking.upsampledVectors` vectors of low
    /// columns, then single vectors. Not inlined, like `Conv3x3.convRow`.
    @inline(never)
    static func upsampledRow(_ rowA: UnsafePointer<Float>, _ rowB: UnsafePointer<Float>, _ ps: Int, _ cin: Int,
                             _ wp: UnsafePointer<Float>, _ o: UnsafeMutablePointer<Float>, _ os: Int, _ nValid: Int,
                             _ lw: Int, _ relu: Bool) {
        let vw = vectorWidth, k = RegisterBlocking.upsampledVectors, cc = RegisterBlocking.upsampledChannels
        var c = 0
        while k == 2 && c + 2 * vw <= lw {
            if cc == 4 {
                chunk(rowA + c, rowB + c, ps, cin, wp, o + 2 * c, os, nValid, relu, vectors: 2, lanes: vw, first: 0, channels: 4)
            } else {  // two passes of two channels
                chunk(rowA + c, rowB + c, ps, cin, wp, o + 2 * c, os, nValid, relu, vectors: 2, lanes: vw, first: 0, channels: 2)
                if nValid > 2 {
                    chunk(rowA + c, rowB + c, ps, cin, wp, o + 2 * c, os, nValid, relu, vectors: 2, lanes: vw, first: 2, channels: 2)
                }
            }
            c += 2 * vw
        }
        while c < lw {
            chunk(rowA + c, rowB + c, ps, cin, wp, o + 2 * c, os, nValid, relu, vectors: 1, lanes: lw - c < vw ? lw - c : vw,
                  first: 0, channels: 4)
            c += vw
        }
    }

    /// `vectors` (1 or 2) vectors of low-resolution columns (`lanes` lanes of the last one inside
    /// the row) of one output row, output channels `first` ..< `first` + `channels` (4, or 2 when
    /// 16 registers must hold 2 vectors) of the block: 2 accumulators per vector and channel (the
    /// even and odd output phase), added to the output interleaved.
    @_transparent  // inlined at both widths (as @inline(__always), the second call stayed a call)
    static func chunk(_ rowA: UnsafePointer<Float>, _ rowB: UnsafePointer<Float>, _ ps: Int, _ cin: Int,
                      _ wp0: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ os: Int, _ nValid: Int,
                      _ relu: Bool, vectors k: Int, lanes: Int, first f: Int, channels cc: Int) {
        let vw = vectorWidth
        var a000 = FloatVector.zero, a001 = FloatVector.zero, a010 = FloatVector.zero, a011 = FloatVector.zero
        var a100 = FloatVector.zero, a101 = FloatVector.zero, a110 = FloatVector.zero, a111 = FloatVector.zero
        var a200 = FloatVector.zero, a201 = FloatVector.zero, a210 = FloatVector.zero, a211 = FloatVector.zero
        var a300 = FloatVector.zero, a301 = FloatVector.zero, a310 = FloatVector.zero, a311 = FloatVector.zero
        var wp = wp0
        var pa = rowA, pb = rowB
        let ahead = RegisterBlocking.prefetchAhead
        for _ in 0..<cin {
            if ahead > 0 { nf_prefetch(pb + ahead) }  // the lower low-resolution row, a chunk's line
            // Low row r + py − 1 (ty = 0), then r + py (ty = 1); weights [ty][px][tx][4].
            for ty in 0..<2 {
                let row = ty == 0 ? pa : pb, w = wp + 16 * ty
                let m0 = loadVector(row - 1), z0 = loadVector(row), p0 = loadVector(row + 1)
                let m1 = k > 1 ? loadVector(row - 1 + vw) : .zero, z1 = k > 1 ? loadVector(row + vw) : .zero
                let p1 = k > 1 ? loadVector(row + 1 + vw) : .zero
                phaseMultiplyAdd(&a000, &a001, &a010, &a011, m0, z0, p0, m1, z1, p1, w, f, k)
                phaseMultiplyAdd(&a100, &a101, &a110, &a111, m0, z0, p0, m1, z1, p1, w, f + 1, k)
                if cc > 2 {
                    phaseMultiplyAdd(&a200, &a201, &a210, &a211, m0, z0, p0, m1, z1, p1, w, f + 2, k)
                    phaseMultiplyAdd(&a300, &a301, &a310, &a311, m0, z0, p0, m1, z1, p1, w, f + 3, k)
                }
            }
            wp += 32; pa += ps; pb += ps
        }
        // Slot s is output channel f + s of the block.
        let o = out + f * os
        if k > 1 {
            if f < nValid { addPhases(a000, a010, a001, a011, o, relu) }
            if f + 1 < nValid { addPhases(a100, a110, a101, a111, o + 1 * os, relu) }
            if cc > 2 && f + 2 < nValid { addPhases(a200, a210, a201, a211, o + 2 * os, relu) }
            if cc > 2 && f + 3 < nValid { addPhases(a300, a310, a301, a311, o + 3 * os, relu) }
        } else {
            if f < nValid { addPhases(a000, a010, o, relu, lanes) }
            if f + 1 < nValid { addPhases(a100, a110, o + 1 * os, relu, lanes) }
            if cc > 2 && f + 2 < nValid { addPhases(a200, a210, o + 2 * os, relu, lanes) }
            if cc > 2 && f + 3 < nValid { addPhases(a300, a310, o + 3 * os, relu, lanes) }
        }
    }

    /// One output channel's accumulators for one low-resolution row: the even output phase
    /// (e0, e1 for the first and second vector) takes the columns q − 1 and q, the odd phase
    /// (o0, o1) q and q + 1, with channel j's weights w[j], w[4 + j] and w[8 + j], w[12 + j].
    @_transparent
    static func phaseMultiplyAdd(_ e0: inout FloatVector, _ e1: inout FloatVector, _ o0: inout FloatVector,
                                 _ o1: inout FloatVector, _ m0: FloatVector, _ z0: FloatVector, _ p0: FloatVector,
                                 _ m1: FloatVector, _ z1: FloatVector, _ p1: FloatVector, _ w: UnsafePointer<Float>,
                                 _ j: Int, _ k: Int) {
        let we0 = FloatVector(repeating: w[j]), we1 = FloatVector(repeating: w[4 + j])
        e0 = e0.addingProduct(m0, we0).addingProduct(z0, we1)
        if k > 1 { e1 = e1.addingProduct(m1, we0).addingProduct(z1, we1) }
        let wo0 = FloatVector(repeating: w[8 + j]), wo1 = FloatVector(repeating: w[12 + j])
        o0 = o0.addingProduct(z0, wo0).addingProduct(p0, wo1)
        if k > 1 { o1 = o1.addingProduct(z1, wo0).addingProduct(p1, wo1) }
    }

    /// Adds two output vectors' worth of interleaved even/odd phase sums (columns 2q and 2q + 1)
    /// at `o`, for two vectors of low-resolution columns.
    @_transparent
    static func addPhases(_ even0: FloatVector, _ odd0: FloatVector, _ even1: FloatVector, _ odd1: FloatVector,
                          _ o: UnsafeMutablePointer<Float>, _ relu: Bool) {
        let vw = vectorWidth
        addStore(interleaveLow(even0, odd0), o, relu, vw); addStore(interleaveHigh(even0, odd0), o + vw, relu, vw)
        addStore(interleaveLow(even1, odd1), o + 2 * vw, relu, vw); addStore(interleaveHigh(even1, odd1), o + 3 * vw, relu, vw)
    }

    /// The same for one vector of low-resolution columns, `lanes` of them valid.
    @_transparent
    static func addPhases(_ even: FloatVector, _ odd: FloatVector, _ o: UnsafeMutablePointer<Float>, _ relu: Bool, _ lanes: Int) {
        let vw = vectorWidth
        let twice = 2 * lanes  // output lanes: the first vector's, then the rest in the second
        addStore(interleaveLow(even, odd), o, relu, twice < vw ? twice : vw)
        addStore(interleaveHigh(even, odd), o + vw, relu, twice > vw ? twice - vw : 0)
    }

    // MARK: Backward

    /// The 2×2 box sums P(y, x) = Σ g(y..y+1, x..x+1) of the output gradient: all the upsampled
    /// part's backward needs. Weight (ky, kx) joins low-resolution pixel (r, q) to the output's
    /// 2×2 block from (2r + 1 − ky, 2q + 1 − kx), so
    ///   dL[c](r, q) = Σ_o Σ_{ky,kx} w[o][c][ky][kx] · P_o(2r + 1 − ky, 2q + 1 − kx)
    ///   dW[o][c][ky][kx] = Σ_{r,q} map[c](r, q) · P_o(2r + 1 − ky, 2q + 1 − kx):
    /// 9 multiply-adds per output channel and low-resolution pixel each, where laying out the
    /// upsampled gradient takes 36. Per output channel o two planes of 2h + 1 rows (row j holds
    /// y = j − 1, from −1 to 2h − 1) and w + 1 columns: plane 2o holds P(y, 2q), plane 2o + 1
    /// P(y, 2q − 1), so a pixel's three columns 2q + 1, 2q, 2q − 1 are plane 2o + 1 at q + 1,
    /// plane 2o at q and plane 2o + 1 at q: plain vector loads.
    public static func boxSums(_ g: PaddedPlanes, pool: ThreadPool = .shared) -> PaddedPlanes {
        require(g.width % 2 == 0 && g.height % 2 == 0, "box sums of an odd size \(g.height)x\(g.width)")
        let lw = g.width / 2, h2 = g.height, vw = vectorWidth
        let out = PaddedPlanes(n: g.n, channels: 2 * g.channels, height: h2 + 1, width: lw + 1)
        // Column-pair sums of two gradient rows (E and O each), per thread.
        let ws = roundUp(lw + 1, vw)
        let scratch = Tensor(Shape(pool.threadCount, 1, 4, ws), zeroed: false)
        let stream = streams(out.n * out.channels * out.planeStride, out.origin(0, 0), rowStride: out.rowStride)
        pool.parallelFor(g.n * g.channels) { item, thread in
            defer { if stream { storeFence() } }
            let i = item / g.channels, o = item % g.channels
            // Gradient rows −1 and h2 are the planes' zero border rows.
            boxSumRows(UnsafePointer(g.origin(i, o)), g.rowStride, rows: 0...h2, lw: lw, into: out.origin(i, 2 * o),
                       out.origin(i, 2 * o + 1), rowStride: out.rowStride, pairs: scratch.data + thread * 4 * ws, ws: ws,
                       streaming: stream)
            let pe = out.data + (i * out.channels + 2 * o) * out.planeStride
            out.zeroBorderRows(pe); out.zeroBorderRows(pe + out.planeStride)
        }
        return out
    }

    /// Box-sum rows j ∈ `rows` of one output channel (row j holds y = j − 1, from gradient rows
    /// j − 1 and j) into row j of `e` and `d` (the even- and odd-column planes' interiors, rows
    /// `prs` apart, padded as `PaddedPlanes` of width lw + 1: their side columns are zeroed here).
    /// Row y of the gradient is at `gradient + y · grs`, readable (zero outside the image) for
    /// rows.lowerBound − 1 … rows.upperBound. `pairs`: a scratch of 4 · ws floats. The plain box
    /// sums and the fused convolution backward (`BatchNormKernels.boxSumBand`) both run this.
    @inline(__always)
    static func boxSumRows(_ gradient: UnsafePointer<Float>, _ grs: Int, rows: ClosedRange<Int>, lw: Int,
                           into e: UnsafeMutablePointer<Float>, _ d: UnsafeMutablePointer<Float>, rowStride prs: Int,
                           pairs: UnsafeMutablePointer<Float>, ws: Int, streaming stream: Bool) {
        let vw = vectorWidth
        var above = pairs, below = pairs + 2 * ws
        columnPairSums(gradient + (rows.lowerBound - 1) * grs, lw, into: above, ws)
        for j in rows {
            columnPairSums(gradient + j * grs, lw, into: below, ws)
            let er = e + j * prs, dr = d + j * prs
            zeroSides(er - vw, width: lw + 1, rowStride: prs)
            zeroSides(dr - vw, width: lw + 1, rowStride: prs)
            boxSumRow(UnsafePointer(above), UnsafePointer(below), ws, into: er, dr, streaming: stream)
            swap(&above, &below)
        }
    }

    /// One row of box sums from the column-pair sums of the two gradient rows around it (`ws`
    /// floats of E sums, then `ws` of O sums, each): E into `e`, O into `d`. The plain box sums
    /// and the fused convolution backward (`BatchNormKernels.boxSumBand`) both form rows here.
    @inline(__always)
    static func boxSumRow(_ above: UnsafePointer<Float>, _ below: UnsafePointer<Float>, _ ws: Int,
                          into e: UnsafeMutablePointer<Float>, _ d: UnsafeMutablePointer<Float>, streaming stream: Bool) {
        let vw = vectorWidth
        var q = 0
        while q < ws {
            storeVector(loadVector(above + q) + loadVector(below + q), e + q, streaming: stream)
            storeVector(loadVector(above + ws + q) + loadVector(below + ws + q), d + q, streaming: stream)
            q += vw
        }
    }

    /// Column-pair sums of one gradient row (padded, `2 · lw` wide): E(q) = g(2q) + g(2q + 1) at
    /// `sums`, O(q) = g(2q − 1) + g(2q) at `sums + ws`, zero past the last column each needs
    /// (lw − 1 and lw).
    @inline(__always)
    static func columnPairSums(_ row: UnsafePointer<Float>, _ lw: Int, into sums: UnsafeMutablePointer<Float>, _ ws: Int) {
        let vw = vectorWidth
        var q = 0
        while q + vw <= lw {
            let a = loadVector(row + 2 * q), b = loadVector(row + 2 * q + vw)
            let a1 = loadVector(row + 2 * q - 2), b1 = loadVector(row + 2 * q + vw - 2)
            let even = evenLanes(a, b)
            storeVector(even + oddLanes(a, b), sums + q)
            storeVector(oddLanes(a1, b1) + even, sums + ws + q)
            q += vw
        }
        while q < ws {
            sums[q] = q < lw ? row[2 * q] + row[2 * q + 1] : 0
            sums[ws + q] = q < lw ? row[2 * q - 1] + row[2 * q] : q == lw ? row[2 * q - 1] : 0
            q += 1
        }
    }

    /// Weights for the low-resolution map's gradient: per block of 4 map channels and output
    /// channel, the 9 weights (ky, kx) × 4 map channels.
    public struct DataWeights: @unchecked Sendable {
        public let cin: Int, cout: Int
        /// Packed as a convolution whose outputs are the map's channels and whose inputs are the
        /// output gradient's: [block of 4 map channels][output channel][ky][kx][4].
        let weights: Conv3x3.PackedWeights
        var blocks: Int { weights.blocks }

        /// From OIHW weights (cout, allInputs, 3, 3), the map being input channels `inputChannels`.
        public init(oihw w: UnsafePointer<Float>, cout: Int, allInputs: Int, inputChannels: Range<Int>) {
            cin = inputChannels.count; self.cout = cout
            weights = Conv3x3.PackedWeights.transposed(oihw: w, cout: cout, cin: allInputs, inputChannels: inputChannels,
                                                       flipped: false)
        }

        /// Low-resolution row r of the map's gradient for block `cb` of map channels, from box
        /// sums laid out as `boxSums` does (`boxSums.row(0, 2r + 2)`: output channel 0's
        /// even-column plane at y = 2r + 1), into row r of `out`'s channels 4·cb ..< 4·cb + 4.
        @inline(__always)
        func gradientRow(_ r: Int, block cb: Int, boxSums p: PlaneView, into out: PlaneView, width lw: Int, stream: Bool) {
            let c0 = cb * Conv3x3.block, nValid = min(Conv3x3.block, cin - c0)
            let wp = weights.block(cb).weights
            UpsampledConv3x3.dataRow(UnsafePointer(p.row(0, 2 * r + 2)), p.planeStride, p.rowStride, cout, wp,
                                     out.row(c0, r), out.planeStride, nValid, lw, stream)
        }
    }

    /// One low-resolution row of the map's gradient for a block of 4 map channels, chunked by
    /// `RegisterBlocking.forEachRowChunk`. Not inlined (as `Conv3x3.convRow`): a caller that
    /// inlined every chunk kind grew past the compiler's inlining limits, which then left the
    /// accumulators' own helpers as calls.
    @inline(never)
    static func dataRow(_ top: UnsafePointer<Float>, _ ps: Int, _ rs: Int, _ cout: Int, _ wp: UnsafePointer<Float>,
                        _ o: UnsafeMutablePointer<Float>, _ os: Int, _ nValid: Int, _ lw: Int, _ stream: Bool) {
        RegisterBlocking.forEachRowChunk(width: lw) { q, vectors, lanes in
            dataChunk(top + q, ps, rs, cout, wp, o, column: q, os, nValid, vectors: vectors, lanes: lanes, stream)
        }
    }

    /// The gradient of the map before upsampling, (n, cin, h, w), from the output gradient's
    /// `boxSums`: 9 multiply-adds per output channel and low-resolution pixel.
    public static func backwardData(boxSums p: PaddedPlanes, _ w: DataWeights, into dL: Tensor, pool: ThreadPool = .shared) {
        let s = dL.shape
        require(p.channels == 2 * w.cout && s.c == w.cin && p.n == s.n && p.height == 2 * s.h + 1 && p.width == s.w + 1,
                     "upsampled conv gradient shapes do not match")
        let lw = s.w, vw = vectorWidth
        let band = max(1, s.h / (8 * pool.threadCount))
        let bands = (s.h + band - 1) / band
        let stream = streams(s.count, dL.data, rowStride: lw) && s.plane % vw == 0
        // All channel blocks of a band in one item: the band's box-sum rows stay in cache.
        pool.parallelFor(s.n * bands) { item, _ in
            defer { if stream { storeFence() } }
            let bi = item % bands, i = item / bands
            let sums = p.view(image: i), out = PlaneView.of(dL, image: i)
            for cb in 0..<w.blocks {
                for r in (bi * band)..<min(s.h, (bi + 1) * band) {
                    w.gradientRow(r, block: cb, boxSums: sums, into: out, width: lw, stream: stream)
                }
            }
        }
    }

    /// Weight gradients of the upsampled part, added to `dW` (cout, cin, 3, 3) for the map's
    /// channels, from the output gradient's `boxSums` (9 multiply-adds per pixel). Items (bands
    /// of rows) sum into their own buffers, added in item order (independent of the thread count).
    public static func backwardWeights(low: PaddedPlanes, boxSums p: PaddedPlanes, dW: UnsafeMutablePointer<Float>,
                                       pool: ThreadPool = .shared) {
        let cin = low.channels, cout = p.channels / 2, h = low.height, lw = low.width
        require(p.n == low.n && p.height == 2 * h + 1 && p.width == lw + 1, "upsampled conv gradient shapes do not match")
        // About 32 items in all (as Conv3x3.backwardWeights).
        let bandsPerImage = max(1, min(h, (32 + low.n - 1) / low.n))
        let band = (h + bandsPerImage - 1) / bandsPerImage
        let bands = (h + band - 1) / band
        let items = low.n * bands
        let count = cout * cin * 9
        let partial = PartialSums(items: items, stride: count)
        pool.parallelFor(items) { item, _ in
            let i = item / bands, start = (item % bands) * band, end = min(h, start + band)
            weightGradientRows(low: low.view(image: i), channels: cin, boxSums: p.view(image: i), outputs: cout,
                               rows: start, end, width: lw, into: partial.take(item))
        }
        partial.add(count: count, into: dW, pool: pool)
    }

    /// One image's share of the upsampled part's weight gradient from low-resolution rows
    /// r0 ..< r1: for each (output channel, pair of map channels) the 3×3 tile of `boxSumTile`,
    /// added to `acc` (cout, cin, 3, 3). `boxSums`: planes 2o and 2o + 1 of output channel o as
    /// `boxSums` lays them out (row 2r + 2 readable for every r in the band, and the two above).
    /// The plain backward and the fused one (`BatchNormKernels`) both run this.
    @inline(__always)
    static func weightGradientRows(low: PlaneView, channels cin: Int, boxSums p: PlaneView, outputs cout: Int,
                                   rows r0: Int, _ r1: Int, width lw: Int, into acc: UnsafeMutablePointer<Float>) {
        for o in 0..<cout {
            let e = UnsafePointer(p.row(2 * o, 0)), d = UnsafePointer(p.row(2 * o + 1, 0))
            var c = 0
            while c < cin {
                let c1 = min(c + 1, cin - 1)
                boxSumTile(UnsafePointer(low.row(c, 0)), UnsafePointer(low.row(c1, 0)), low.rowStride, e, d, p.rowStride,
                           r0, r1, lw, acc + (o * cin + c) * 9, c1 != c ? acc + (o * cin + c1) * 9 : nil)
                c += 2
            }
        }
    }

    /// Σ over low rows r0..<r1 of map[c](r, q) · P(2r + 1 − ky, 2q + 1 − kx) (k = ky·3 + kx) for
    /// two map channels, added to out0 and out1 (nine each), with P from `boxSums` (even columns
    /// at `e`, odd at `d`). Two channels on every ISA (one channel per tile, 9 box-sum loads for 9
    /// multiply-adds, measured 37 % slower with AVX2). With AVX2's 16 registers the 18
    /// accumulators do not fit, so there the taps go in two passes, 0–4 (10) and 5–8 (8);
    /// each accumulator sums in the same order either way. Lanes past the width meet the map's
    /// zero padding.
    @inline(never)
    static func boxSumTile(_ l0: UnsafePointer<Float>, _ l1: UnsafePointer<Float>, _ lrs: Int,
                           _ e: UnsafePointer<Float>, _ d: UnsafePointer<Float>, _ prs: Int, _ r0: Int, _ r1: Int, _ lw: Int,
                           _ out0: UnsafeMutablePointer<Float>, _ out1: UnsafeMutablePointer<Float>?) {
        if RegisterBlocking.vectorRegisters < 32 {
            // Two passes, each with only its own accumulators live: taps 0-4 (10) and 5-8 (8),
            // both at least the 8 chains that keep two multiply-add units busy. Carried through
            // one struct of 18 (taps 0-5, then 6-8), the first pass kept all 18 live in its loop,
            // and the Swift 6.3 `-target-cpu haswell` build spilled and reloaded 11 of them per
            // iteration (by `objdump`); with 12 of its own it still spilled 2 and shuffled the
            // rest between registers.
            boxSumFirstTaps(l0, l1, lrs, e, d, prs, r0, r1, lw, out0, out1)
            boxSumLastTaps(l0, l1, lrs, e, d, prs, r0, r1, lw, out0, out1)
            return
        }
        var acc = BoxSumAccumulators()
        boxSumTaps(l0, l1, lrs, e, d, prs, r0, r1, lw, &acc)
        addLaneSums(acc.a0, acc.a1, acc.a2, acc.a3, acc.a4, acc.a5, acc.a6, acc.a7, acc.a8, to: out0)
        if let out1 { addLaneSums(acc.b0, acc.b1, acc.b2, acc.b3, acc.b4, acc.b5, acc.b6, acc.b7, acc.b8, to: out1) }
    }

    /// `boxSumTile`'s taps 0 … 4 alone (ky 0, and ky 1 with kx 0 and 1): 10 accumulators.
    @inline(__always)
    static func boxSumFirstTaps(_ l0: UnsafePointer<Float>, _ l1: UnsafePointer<Float>, _ lrs: Int,
                                _ e: UnsafePointer<Float>, _ d: UnsafePointer<Float>, _ prs: Int, _ r0: Int, _ r1: Int, _ lw: Int,
                                _ out0: UnsafeMutablePointer<Float>, _ out1: UnsafeMutablePointer<Float>?) {
        var a0 = FloatVector.zero, a1 = a0, a2 = a0, a3 = a0, a4 = a0
        var b0 = FloatVector.zero, b1 = b0, b2 = b0, b3 = b0, b4 = b0
        for r in r0..<r1 {
            let m0 = l0 + r * lrs, m1 = l1 + r * lrs
            let e0 = e + (2 * r + 2) * prs, d0 = d + (2 * r + 2) * prs, e1 = e0 - prs, d1 = d0 - prs
            var q = 0
            while q < lw {
                let x0 = loadVector(m0 + q), x1 = loadVector(m1 + q)
                var v = loadVector(d0 + q + 1); a0 = a0.addingProduct(v, x0); b0 = b0.addingProduct(v, x1)
                v = loadVector(e0 + q); a1 = a1.addingProduct(v, x0); b1 = b1.addingProduct(v, x1)
                v = loadVector(d0 + q); a2 = a2.addingProduct(v, x0); b2 = b2.addingProduct(v, x1)
                v = loadVector(d1 + q + 1); a3 = a3.addingProduct(v, x0); b3 = b3.addingProduct(v, x1)
                v = loadVector(e1 + q); a4 = a4.addingProduct(v, x0); b4 = b4.addingProduct(v, x1)
                q += vectorWidth
            }
        }
        out0[0] += laneSum(a0); out0[1] += laneSum(a1); out0[2] += laneSum(a2); out0[3] += laneSum(a3); out0[4] += laneSum(a4)
        if let out1 { out1[0] += laneSum(b0); out1[1] += laneSum(b1); out1[2] += laneSum(b2); out1[3] += laneSum(b3); out1[4] += laneSum(b4) }
    }

    /// `boxSumTile`'s taps 5 … 8 alone (ky 1 with kx 2, and ky 2): 8 accumulators.
    @inline(__always)
    static func boxSumLastTaps(_ l0: UnsafePointer<Float>, _ l1: UnsafePointer<Float>, _ lrs: Int,
                               _ e: UnsafePointer<Float>, _ d: UnsafePointer<Float>, _ prs: Int, _ r0: Int, _ r1: Int, _ lw: Int,
                               _ out0: UnsafeMutablePointer<Float>, _ out1: UnsafeMutablePointer<Float>?) {
        var a5 = FloatVector.zero, a6 = a5, a7 = a5, a8 = a5, b5 = a5, b6 = a5, b7 = a5, b8 = a5
        for r in r0..<r1 {
            let m0 = l0 + r * lrs, m1 = l1 + r * lrs
            let d1 = d + (2 * r + 1) * prs, e2 = e + (2 * r) * prs, d2 = d + (2 * r) * prs
            var q = 0
            while q < lw {
                let x0 = loadVector(m0 + q), x1 = loadVector(m1 + q)
                var v = loadVector(d1 + q); a5 = a5.addingProduct(v, x0); b5 = b5.addingProduct(v, x1)
                v = loadVector(d2 + q + 1); a6 = a6.addingProduct(v, x0); b6 = b6.addingProduct(v, x1)
                v = loadVector(e2 + q); a7 = a7.addingProduct(v, x0); b7 = b7.addingProduct(v, x1)
                v = loadVector(d2 + q); a8 = a8.addingProduct(v, x0); b8 = b8.addingProduct(v, x1)
                q += vectorWidth
            }
        }
        out0[5] += laneSum(a5); out0[6] += laneSum(a6); out0[7] += laneSum(a7); out0[8] += laneSum(a8)
        if let out1 { out1[5] += laneSum(b5); out1[6] += laneSum(b6); out1[7] += laneSum(b7); out1[8] += laneSum(b8) }
    }

    /// The 3×3 tiles of two map channels (a and b), tap k at ak and bk.
    struct BoxSumAccumulators {
        var a0 = FloatVector.zero, a1 = FloatVector.zero, a2 = FloatVector.zero, a3 = FloatVector.zero, a4 = FloatVector.zero
        var a5 = FloatVector.zero, a6 = FloatVector.zero, a7 = FloatVector.zero, a8 = FloatVector.zero
        var b0 = FloatVector.zero, b1 = FloatVector.zero, b2 = FloatVector.zero, b3 = FloatVector.zero, b4 = FloatVector.zero
        var b5 = FloatVector.zero, b6 = FloatVector.zero, b7 = FloatVector.zero, b8 = FloatVector.zero
    }

    /// All nine taps of `boxSumTile` in one pass (32 registers hold the 18 accumulators).
    @inline(__always)
    static func boxSumTaps(_ l0: UnsafePointer<Float>, _ l1: UnsafePointer<Float>, _ lrs: Int,
                           _ e: UnsafePointer<Float>, _ d: UnsafePointer<Float>, _ prs: Int, _ r0: Int, _ r1: Int, _ lw: Int,
                           _ acc: inout BoxSumAccumulators) {
        var c = acc
        for r in r0..<r1 {
            let m0 = l0 + r * lrs, m1 = l1 + r * lrs
            // Box rows y = 2r + 1 (ky = 0), 2r (ky = 1), 2r − 1 (ky = 2): rows 2r + 2, 2r + 1, 2r.
            let e0 = e + (2 * r + 2) * prs, d0 = d + (2 * r + 2) * prs
            let e1 = e0 - prs, d1 = d0 - prs, e2 = e1 - prs, d2 = d1 - prs
            var q = 0
            while q < lw {
                let x0 = loadVector(m0 + q), x1 = loadVector(m1 + q)
                var v = loadVector(d0 + q + 1); c.a0 = c.a0.addingProduct(v, x0); c.b0 = c.b0.addingProduct(v, x1)
                v = loadVector(e0 + q); c.a1 = c.a1.addingProduct(v, x0); c.b1 = c.b1.addingProduct(v, x1)
                v = loadVector(d0 + q); c.a2 = c.a2.addingProduct(v, x0); c.b2 = c.b2.addingProduct(v, x1)
                v = loadVector(d1 + q + 1); c.a3 = c.a3.addingProduct(v, x0); c.b3 = c.b3.addingProduct(v, x1)
                v = loadVector(e1 + q); c.a4 = c.a4.addingProduct(v, x0); c.b4 = c.b4.addingProduct(v, x1)
                v = loadVector(d1 + q); c.a5 = c.a5.addingProduct(v, x0); c.b5 = c.b5.addingProduct(v, x1)
                v = loadVector(d2 + q + 1); c.a6 = c.a6.addingProduct(v, x0); c.b6 = c.b6.addingProduct(v, x1)
                v = loadVector(e2 + q); c.a7 = c.a7.addingProduct(v, x0); c.b7 = c.b7.addingProduct(v, x1)
                v = loadVector(d2 + q); c.a8 = c.a8.addingProduct(v, x0); c.b8 = c.b8.addingProduct(v, x1)
                q += vectorWidth
            }
        }
        acc = c
    }

    /// `vectors` vectors of low-resolution columns of one output row for a block of 4 map
    /// channels, stored from `column` of `out` (the first `lanes` lanes of the last vector): Σ_o Σ_{ky,kx} w · P over the
    /// box-sum rows from `top` (row 2r + 2 of output channel 0's even-column plane; its
    /// odd-column plane is `ps` further, the next channel's 2·ps).
    @inline(__always)
    static func dataChunk(_ top: UnsafePointer<Float>, _ ps: Int, _ rs: Int, _ cout: Int, _ wp0: UnsafePointer<Float>,
                          _ out: UnsafeMutablePointer<Float>, column: Int, _ os: Int, _ nValid: Int, vectors: Int,
                          lanes: Int, _ stream: Bool) {
        var acc = RowAccumulators(vectors: vectors, bias: nil)
        var even = top
        var wp = wp0
        for _ in 0..<cout {
            var row = even
            for _ in 0..<3 {
                // kx = 0: odd plane at q + 1; kx = 1: even plane at q; kx = 2: odd plane at q.
                for kx in 0..<3 {
                    acc.add(kx == 0 ? row + ps + 1 : kx == 1 ? row : row + ps, weights: wp)
                    wp += 4
                }
                row -= rs
            }
            even += 2 * ps
        }
        acc.store(to: out, column: column, planeStride: os, channels: nValid, lanes: lanes, relu: false, gate: nil,
                  stream: stream)
    }
}

/// out[0..<lanes] += v (then ReLU when `relu`).
@_transparent func addStore(_ v: FloatVector, _ p: UnsafeMutablePointer<Float>, _ relu: Bool, _ lanes: Int) {
    if lanes == vectorWidth {
        var s = loadVector(p) + v
        if relu { s = vmax(s, .zero) }
        storeVector(s, p)
    } else {
        for l in 0..<lanes { let s = p[l] + v[l]; p[l] = relu && s < 0 ? 0 : s }  // as vmax (NaN stays); no generic max: it stays a call
    }
}

extension UpsampledConv3x3.PhaseWeights {
    /// Adds the upsampled part to row y of output block `ob` (output channel 4·ob at `row`, the
    /// others `planeStride` apart; 2 · `lowWidth` columns) from the map before upsampling (`low`,
    /// one image's padded planes), then max(·, 0) when `relu`. The one place that knows where a
    /// block's phase weights lie (the decoder convolution and `OutputLevel` both go through it).
    @inline(__always)
    func addRow(_ y: Int, block ob: Int, low: PlaneView, lowWidth: Int, into row: UnsafeMutablePointer<Float>,
                planeStride: Int, relu: Bool) {
        let r = y / 2, py = y % 2
        // Low-resolution rows r + py − 1 and r + py (the zero border rows cover −1 and h/2).
        let rowA = UnsafePointer(low.row(0, r + py - 1)), rowB = rowA + low.rowStride
        UpsampledConv3x3.upsampledRow(rowA, rowB, low.planeStride, cin, UnsafePointer(packed.data + (ob * 2 + py) * cin * 32),
                                      row, planeStride, min(Conv3x3.block, cout - ob * Conv3x3.block), lowWidth, relu)
    }
}

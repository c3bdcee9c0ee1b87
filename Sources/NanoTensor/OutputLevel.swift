import CNanoSupport

/// A U-Net's last decoder level at inference as one pass per band of rows: its first convolution
/// (the skip part directly, the upsampled part on the map before upsampling, bias, ReLU:
/// `UpsampledConv3x3.forward(skip:_:low:_:into:relu:)`), then its last convolution fused with the
/// 1×1 two-class head and the softmax (`Conv3x3.forwardWithSoftmaxHead`). A decoder level above
/// the last runs the same way where its bands are tall enough (`fuses`), its second convolution
/// writing the next level's map (`Destination.planes`).
///
/// The first convolution's output (4 channels at full resolution: 4.5 MB for a 512² tile, 75 MB for
/// a 2144² one) never exists as a map: each work item computes its band's rows, plus the row above
/// and below it that the last convolution also reads, into a per-thread scratch laid out as padded
/// planes, and the last convolution reads them there while they are in cache: row by row, the last
/// convolution's row y − 1 right after the first one's row y, so that only three rows of the
/// scratch are in use at any time (a band's whole scratch, 34 rows of 4 channels 2048 wide, is
/// about 1.1 MB, as much as a Zen 4 core's L2; a recomputed skip (`Skip.recomputed`) adds its own
/// 36 rows). A band needs the first convolution's row above it and below it: where a thread goes on
/// from one band to the next (its own share, in order), the rows the two share (and a recomputed
/// skip's four) move to the top of its scratch; only a thread's first band and a band taken from
/// another thread's share compute them again. Values are those of the two separate passes, bit for
/// bit (each row is made by the same kernels).
///
/// Measured on AMD EPYC fam 25 mod 17 (Zen 4), 2 threads, one process alternating tile by tile
/// (190 pairs, medians of the pairs' ratios): a 512² tile took 0.977 and 0.981 of the time of
/// computing every band's edge rows (AVX-512: its 128² level 0.93 of the time, the last 0.97,
/// the 256² level the same), 0.995 and 0.993 with the AVX2 build (`-target-cpu haswell`, whose
/// only fused level is the last: 0.975-0.98 of its time).
public enum OutputLevel {
    /// Rows per work item: enough that the rows a thread's first band computes twice cost little,
    /// and every thread gets several bands. Measured on AMD EPYC fam 26 mod 2 (Zen 5), 2 threads,
    /// builds paired: with the rows interleaved (above) and bands of 32, a 2048² image took 0.903
    /// of the time of all the first convolution's rows of a band before the last one's (8 rounds,
    /// faster in 8), the 512² tile the same (1.003, 12 rounds); then bands of 64 rather than 32,
    /// 0.977 for 2048² (8 of 8) and 0.983 for the tile (6 of 10: no loss); 128 the same as 64
    /// (1.007). The AVX2 build (`-target-cpu haswell`, whose upper levels run as two passes)
    /// neither gained nor lost (1.013 for 2048², 1.010 for the tile, against the build before
    /// both). Once a band took its edge rows from the band before it (a thread's first band is the
    /// only one that computes them), 32 rows again: on AMD EPYC fam 25 mod 17 (Zen 4), 2 threads,
    /// one process alternating bands of 32 and of 64 pass by pass, AVX-512 512² tiles 0.983, 0.997
    /// and 0.987 of the time (medians of 190 pairs' ratios; the last level 1.5-2.5 % faster), the
    /// AVX2 build's 0.994 and 0.994 (its last level 3 %), a 2048² image 1.001 and 1.003 (AVX-512,
    /// 30 pairs) and 1.001 (AVX2): no loss.
    public static let band = 32

    /// The rows per work item for `produced` rows on `threads` threads: `band`, or fewer so that
    /// every thread gets several.
    public static func bandRows(produced: Int, threads: Int) -> Int {
        min(band, max(1, produced / (4 * threads)))
    }

    /// The work items' rows, as offsets from the first produced row: [0, …, produced]. Bands of
    /// `bandRows` rows, but where each thread's share of the rows holds fewer than 8 of them (a
    /// 512² tile's 256² and 128² levels: 4 each on 2 threads), the share ends in bands of
    /// halving height, down to `taperRows`: a pass ends when its slowest thread does, and a
    /// thread that finishes its share first can only take whole bands from the other's, so the
    /// last bands decide how long it waits. (The rows above and below a band are not computed
    /// again where the same thread did the band before it.) A share of 8 bands or more waits
    /// little and is not cut further.
    ///
    /// Measured on AMD EPYC fam 25 mod 17 (Zen 4), 2 threads, a 512² tile: with bands of equal
    /// height, the two threads waited for each other 0.29-0.79 ms per tile (main thread and
    /// worker together, timed at each pass's end over 100 tiles), most of it at the ends of the
    /// three passes of 8 bands (the 128² and 256² levels and the last, in bands of 64 rows then);
    /// with the tapered bands, 0.14 ms in those three. One process alternating tile by tile (190
    /// pairs each, median of the pairs' ratios): AVX-512 0.980, 0.986, 0.981, 0.987 of the time
    /// with equal bands; AVX2 (`-target-cpu haswell`, whose only fused level is the last) 0.995,
    /// 0.994.
    package static func bandCuts(produced: Int, threads: Int) -> [Int] {
        let band = bandRows(produced: produced, threads: threads)
        var cuts = [0]
        guard threads > 1 && produced < 8 * band * threads else {
            var at = 0
            while at < produced { at = min(produced, at + band); cuts.append(at) }
            return cuts
        }
        let smallest = min(band, taperRows)
        for t in 0..<threads {
            let end = (t + 1) * produced / threads
            var at = cuts.last!
            while at < end {
                let left = end - at
                at += min(band, left >= 2 * band ? band : left >= 2 * smallest ? max(smallest, (left + 1) / 2) : left)
                cuts.append(at)
            }
        }
        return cuts
    }

    /// The height the last bands of a share halve down to (`bandCuts`). Down to 4 rows instead
    /// (AMD EPYC fam 25 mod 17, AVX-512, 2 threads, tiles alternating, 190 pairs): 0.999 of the
    /// time.
    package static let taperRows = 8

    /// Whether a decoder level of `height` rows runs as one pass per band (`Destination.planes`)
    /// rather than as its two convolutions: with 16-lane (AVX-512) kernels, where its bands have
    /// at least 16 rows, so the rows of the first convolution computed twice (at a thread's first
    /// band and at bands taken from another's share) add at most an eighth to those bands. The
    /// first convolution's output, and the skip it reads, are then read while in cache instead of
    /// after a whole map has gone through.
    ///
    /// Measured on Intel Xeon fam 6 mod 207, 2 threads, `bench --only infer_`, the same build
    /// with and without, alternating (medians of 8 runs, 5 for 2048², 3 for 4096²): AVX-512, a
    /// 512² tile (its 256² and 128² levels fused) 3.64 ms against 3.91, a 2048² image 57.3 against
    /// 59.9 ms, a 4096² image in 2144² tiles 286 against 304 ms; the 64² level fused, with bands
    /// of 8 rows, took 0.56–0.63 ms against 0.52–0.54. The AVX2 build (`-target-cpu haswell`),
    /// whose kernels are further from the memory bound, gained nothing: a tile 7.11 against 6.83
    /// ms, a 2048² image 111.9 against 106.3 ms. So 8- and 4-lane builds keep the two passes.
    /// On AMD EPYC fam 25 mod 17 (Zen 4, whose 512-bit multiply-adds run on 256-bit units), one
    /// process alternating pass by pass (`levelFusion`), AVX-512: a 2048² image fused took
    /// 0.953 of the two passes' time (20 each, two runs), but a 512² tile 1.004-1.052 (190 each,
    /// nine runs), and fusing the 64² level too 1.044-1.055; the AVX2 build fused 1.07-1.08.
    /// The rule stays as measured on the Xeon, where the tile gained most. Again on that Zen 4,
    /// the AVX2 build, one process alternating: a 2048² image fused 0.971-1.026 of two passes on
    /// two threads (five runs of 20), 0.930-0.990 on one (two runs), a tile 1.070-1.090. With
    /// the rows carried from band to band (above), again on that Zen 4, tiles alternating (190
    /// pairs): AVX-512 with the upper levels in two passes 0.978 and 0.993 of the fused time;
    /// the AVX2 build with every level fused 1.018 and 1.013 of its two passes' time.
    public static func fuses(height: Int, threads: Int) -> Bool {
        vectorWidth >= 16 && bandRows(produced: height, threads: threads) >= 16
    }

    /// 1 where p > threshold, 0 elsewhere (NaN: 0), for `count` values: a row's mask while
    /// the row is in the first-level cache.
    @inlinable @inline(__always)
    public static func thresholdRow(_ p: UnsafePointer<Float>, _ count: Int, _ threshold: Float, into mask: UnsafeMutablePointer<UInt8>) {
        for x in 0..<count { mask[x] = p[x] > threshold ? 1 : 0 }
    }

    /// Where the level's probabilities go.
    public enum Destination {
        /// Both classes of every row: out[n, 0] and out[n, 1].
        case tensor(Tensor)
        /// Both classes of every row of a single image's pass, into image `index` of a batch:
        /// out[index, 0] and out[index, 1].
        case batchImage(Tensor, index: Int)
        /// Class 1 (the particles) only, of rows `rows` and columns `columns` of a single image:
        /// row y, column x at base + (y − rows.lowerBound) · rowStride + x − columns.lowerBound.
        /// Rows outside `rows` are not computed (a tile's margins); class 0 is not stored. With
        /// `mask`, also 1 where that probability is above its threshold and 0 elsewhere, at the
        /// same place from the mask's base (what a mask made from the stored map would hold).
        case particleWindow(base: UnsafeMutablePointer<Float>, rowStride: Int, rows: Range<Int>, columns: Range<Int>,
                            mask: (base: UnsafeMutablePointer<UInt8>, threshold: Float)?)
        /// No head: the last convolution's output with ReLU, into the interior of padded planes
        /// (their borders cleared), as `Conv3x3.forward(_:_:into:relu:)` writes it. A decoder
        /// level above the last, whose output is the next level's map.
        case planes(PaddedPlanes)
    }

    public static func forward(skip: PaddedPlanes, _ direct: Conv3x3.PackedWeights, low: PaddedPlanes,
                               _ phase: UpsampledConv3x3.PhaseWeights, last: Conv3x3.PackedWeights, head: [Float],
                               into out: Tensor, pool: ThreadPool = .shared) {
        forward(skip: skip, direct, low: low, phase, last: last, head: head, into: .tensor(out), pool: pool)
    }

    /// A decoder level that is not the last: its two convolutions in one pass per band of rows
    /// (the first one's rows in a per-thread scratch, as above), the second one's output with
    /// ReLU into `out`. Values are those of the two separate passes, bit for bit.
    public static func forward(skip: PaddedPlanes, _ direct: Conv3x3.PackedWeights, low: PaddedPlanes,
                               _ phase: UpsampledConv3x3.PhaseWeights, second: Conv3x3.PackedWeights, into out: PaddedPlanes,
                               pool: ThreadPool = .shared) {
        forward(skip: skip, direct, low: low, phase, last: second, head: [], into: .planes(out), pool: pool)
    }

    /// Where the level's skip connection comes from.
    public enum Skip {
        /// A map laid out in full (what the encoder's convolution wrote beside its pooled output).
        case planes(PaddedPlanes)
        /// Recomputed row by row from the encoder's input: max(0, that convolution of `input`),
        /// the same kernel and so the same values as the map the encoder would have written
        /// (`Conv3x3.forward(_:_:reluCopy:pooledInto:)`). For the first level of a U-Net whose
        /// input has one channel: its skip (4 channels at full resolution, 4.5 MB for a 512²
        /// tile, 74 MB for a 2144² one) is written by the encoder and read back a whole pass later,
        /// from memory, while recomputing it costs 9 multiply-adds per skip value, about a fiftieth
        /// of the pass's work. Each work item computes its band's skip rows, and the two above
        /// and below that the first convolution reads (those above taken from the band before
        /// where the same thread did it), into a per-thread scratch laid out as padded planes,
        /// each row just before the first convolution's row that first reads it.
        case recomputed(input: PaddedPlanes, Conv3x3.PackedWeights)

        var n: Int { switch self { case .planes(let p): return p.n; case .recomputed(let x, _): return x.n } }
        var channels: Int { switch self { case .planes(let p): return p.channels; case .recomputed(_, let w): return w.cout } }
        var height: Int { switch self { case .planes(let p): return p.height; case .recomputed(let x, _): return x.height } }
        var width: Int { switch self { case .planes(let p): return p.width; case .recomputed(let x, _): return x.width } }
    }

    public static func forward(skip: PaddedPlanes, _ direct: Conv3x3.PackedWeights, low: PaddedPlanes,
                               _ phase: UpsampledConv3x3.PhaseWeights, last: Conv3x3.PackedWeights, head: [Float],
                               into destination: Destination, pool: ThreadPool = .shared) {
        forward(skip: .planes(skip), direct, low: low, phase, last: last, head: head, into: destination, pool: pool)
    }

    /// The level into `destination`. Returns how many bands took their first rows from the band
    /// before (`carryingRows`, on unless a test compares the two ways; the values are the same
    /// bit for bit).
    @discardableResult
    public static func forward(skip: Skip, _ direct: Conv3x3.PackedWeights, low: PaddedPlanes,
                               _ phase: UpsampledConv3x3.PhaseWeights, last: Conv3x3.PackedWeights, head: [Float],
                               into destination: Destination, carryingRows: Bool = true, pool: ThreadPool = .shared) -> Int {
        let h = skip.height, width = skip.width, lw = low.width
        require(direct.cout == phase.cout && skip.n == low.n && h == 2 * low.height && width == 2 * lw,
                "decoder convolution parts do not match")
        require(skip.channels == direct.cin && low.channels == phase.cin, "skip has \(skip.channels) channels, weights \(direct.cin); map \(low.channels), weights \(phase.cin)")
        if case .recomputed(let input, let encoder) = skip {
            require(input.channels == encoder.cin, "skip recomputed from \(input.channels) channels by weights for \(encoder.cin)")
        }
        require(last.cin == direct.cout, "last convolution reads \(last.cin) channels, the level makes \(direct.cout)")
        let produced: Range<Int>
        switch destination {
        case .tensor(let out):
            require(out.shape == Shape(skip.n, 2, h, width), "probabilities \(out.shape) for \(skip.n)x\(h)x\(width)")
            produced = 0..<h
        case .batchImage(let out, let index):
            require(skip.n == 1 && index >= 0 && index < out.shape.n && out.shape == Shape(out.shape.n, 2, h, width),
                    "probabilities \(out.shape), image \(index), for \(skip.n)x\(h)x\(width)")
            produced = 0..<h
        case .particleWindow(_, _, let rows, let columns, _):
            require(skip.n == 1 && rows.lowerBound >= 0 && rows.upperBound <= h && columns.lowerBound >= 0 && columns.upperBound <= width,
                    "particle window rows \(rows), columns \(columns) of \(skip.n) images of \(h)x\(width)")
            produced = rows
        case .planes(let out):
            require(out.n == skip.n && out.channels == last.cout && out.height == h && out.width == width,
                    "output planes \(out.n)x\(out.channels)x\(out.height)x\(out.width) for \(skip.n)x\(last.cout)x\(h)x\(width)")
            produced = 0..<h
        }
        if case .planes = destination {
            require(head.isEmpty, "a decoder level written to planes has no head (\(head.count) head values given)")
        } else {
            require(!head.isEmpty, "probabilities need the head's weights")
        }
        let features = direct.cout, blocks = (features + Conv3x3.block - 1) / Conv3x3.block
        let softmax: Conv3x3.SoftmaxHead? = head.isEmpty ? nil : Conv3x3.SoftmaxHead(last, head)
        let band = bandRows(produced: produced.count, threads: pool.threadCount)
        let cuts = bandCuts(produced: produced.count, threads: pool.threadCount)
        let bands = cuts.count - 1
        // Scratch per thread: `features` planes of band + 2 padded rows (row r holds image row
        // y0 − 1 + r), one vector of zero columns on each side, as `PaddedPlanes` lays them out;
        // then one row of class 1 for a window to be cut from.
        // With a recomputed skip, then its `skip.channels` planes of band + 4 padded rows (row r
        // holds image row y0 − 2 + r).
        let rs = 2 * vectorWidth + roundUp(width, vectorWidth), sps = (band + 2) * rs
        let skipPlaneStride = (band + 4) * rs
        var perThread = features * sps + roundUp(width, vectorWidth)
        let skipScratchOffset = perThread
        if case .recomputed = skip { perThread += skip.channels * skipPlaneStride }
        let scratch = Tensor(Shape(pool.threadCount, 1, 1, perThread), zeroed: false)
        // Each thread's last band (its image, first and end row; −1: none yet) and how many of
        // its bands carried rows, 128 bytes apart.
        let lastBand = UnsafeMutablePointer<Int>.allocate(capacity: pool.threadCount * 16)
        lastBand.initialize(repeating: -1, count: pool.threadCount * 16)
        for t in 0..<pool.threadCount { lastBand[t * 16 + 3] = 0 }
        defer { lastBand.deallocate() }
        pool.parallelFor(skip.n * bands) { item, thread in
            let i = item / bands, y0 = produced.lowerBound + cuts[item % bands], y1 = produced.lowerBound + cuts[item % bands + 1]
            let rows = scratch.data + thread * perThread
            // Where this thread's last band ended at this band's first row (a thread takes its
            // share of the bands in order), the rows both need are in its scratch already: the
            // first convolution's rows y0 − 1 and y0, and a recomputed skip's rows y0 − 2 … y0 + 1.
            // They move to the top of the scratch instead of being computed again.
            let state = lastBand + thread * 16
            let carried = carryingRows && state[0] == i && state[2] == y0
            let previousFirst = state[1]
            state[0] = i; state[1] = y0; state[2] = y1
            if carried { state[3] += 1 }
            let lowView = low.view(image: i)
            // The skip's rows: from its planes, or recomputed into the scratch as they are
            // first needed (`skipRows`), rows y0 − 2 … y1 + 1, zero outside the image.
            let skipView: PlaneView
            var nextSkipRow = y0 - 2
            var recompute: (input: PlaneView, encoder: Conv3x3.PackedWeights)? = nil
            switch skip {
            case .planes(let planes): skipView = planes.view(image: i)
            case .recomputed(let input, let encoder):
                skipView = PlaneView(rows + skipScratchOffset + vectorWidth + (2 - y0) * rs, planeStride: skipPlaneStride, rowStride: rs)
                recompute = (input.view(image: i), encoder)
                if carried {
                    // Rows y0 − 2 … y0 + 1 were at y − previousFirst + 2: each moves up by the
                    // last band's height.
                    let base = rows + skipScratchOffset, shift = (y0 - previousFirst) * rs
                    for c in 0..<encoder.cout {
                        for r in 0..<4 { (base + c * skipPlaneStride + r * rs).update(from: base + c * skipPlaneStride + r * rs + shift, count: rs) }
                    }
                    nextSkipRow = y0 + 2
                }
            }
            // Recomputes the skip's rows up to `y` (a no-op for a skip laid out in planes).
            func skipRows(through y: Int) {
                guard let recompute else { return }
                let encoder = recompute.encoder
                while nextSkipRow <= y {
                    let ys = nextSkipRow
                    if ys >= 0 && ys < h {
                        for c in 0..<encoder.cout { zeroSides(skipView.row(c, ys) - vectorWidth, width: width, rowStride: rs) }
                        for ob in 0..<encoder.blocks {
                            encoder.convolveRow(ys, block: ob, input: recompute.input, into: skipView, width: width, relu: true)
                        }
                    } else {
                        for c in 0..<encoder.cout { zeroRow(skipView.row(c, ys) - vectorWidth, count: rs) }
                    }
                    nextSkipRow += 1
                }
            }
            // Row by row: the first convolution's row y (image rows y0 − 1 … y1, zero outside the
            // image), then the last convolution's row y − 1, which reads first-convolution rows
            // y − 2 … y. So only a few rows of each scratch are in use at a time, and they stay in
            // the core's caches however wide the image (a band's whole scratch of a 2048-wide
            // image is about as much as a core's L2).
            if carried {
                // The first convolution's rows y0 − 1 and y0 were at r = y − previousFirst + 1.
                let shift = (y0 - previousFirst) * rs
                for c in 0..<features {
                    for r in 0..<2 { (rows + c * sps + r * rs).update(from: rows + c * sps + r * rs + shift, count: rs) }
                }
            }
            for y in (carried ? y0 + 1 : y0 - 1)...y1 {
                let r = y - y0 + 1
                if y >= 0 && y < h {
                    if case .planes = skip, y + skipPrefetchRows < h {
                        for c in 0..<skip.channels { prefetchRow(UnsafePointer(skipView.row(c, y + skipPrefetchRows)), width) }
                    }
                    skipRows(through: y + 1)
                    for c in 0..<features { zeroSides(rows + c * sps + r * rs, width: width, rowStride: rs) }
                    for ob in 0..<blocks {
                        let o = rows + ob * Conv3x3.block * sps + r * rs + vectorWidth
                        direct.convolveRow(y, block: ob, input: skipView, intoRow: o, planeStride: sps, width: width, reluCopy: nil)
                        phase.addRow(y, block: ob, low: lowView, lowWidth: lw, into: o, planeStride: sps, relu: true)
                    }
                } else {
                    for c in 0..<features { zeroRow(rows + c * sps + r * rs, count: rs) }
                }
                guard y - 1 >= y0 else { continue }
                lastRow(y - 1)
            }
            // The last convolution's row y (and the head), reading the band's rows from the scratch.
            func lastRow(_ y: Int) {
                let input = UnsafePointer(rows + (y - y0 + 1) * rs + vectorWidth)
                switch destination {
                case .tensor(let out):
                    softmax!.row(input, sps, rs, out.plane(i, 0) + y * width, out.plane(i, 1) + y * width, width: width)
                case .batchImage(let out, let index):
                    softmax!.row(input, sps, rs, out.plane(index, 0) + y * width, out.plane(index, 1) + y * width, width: width)
                case .particleWindow(let base, let rowStride, let kept, let columns, let mask):
                    let p1 = rows + features * sps
                    softmax!.row(input, sps, rs, nil, p1, width: width)
                    let row = base + (y - kept.lowerBound) * rowStride
                    row.update(from: p1 + columns.lowerBound, count: columns.count)
                    if let mask { thresholdRow(row, columns.count, mask.threshold, into: mask.base + (y - kept.lowerBound) * rowStride) }
                case .planes(let out):
                    // The band's rows as planes whose row y is the image's row y.
                    let band = PlaneView(rows + vectorWidth + (1 - y0) * rs, planeStride: sps, rowStride: rs)
                    let outView = out.view(image: i)
                    for c in 0..<last.cout { out.zeroBorders(plane: i * last.cout + c, row: y) }
                    for ob in 0..<last.blocks {
                        last.convolveRow(y, block: ob, input: band, into: outView, width: width, relu: true)
                    }
                }
            }
        }
        return (0..<pool.threadCount).reduce(0) { $0 + lastBand[$1 * 16 + 3] }
    }

    /// How many rows ahead of the first convolution's row a laid-out skip's rows are prefetched.
    /// The encoder wrote that map a whole pass before, so it comes from memory, from as many
    /// rows at once as it has channels. Measured on AMD EPYC fam 25 mod 17 (Zen 4), AVX-512, 2
    /// threads, one process alternating with and without pass by pass (190 pairs, medians of the
    /// pairs' ratios): 512² tiles 0.984 and 0.989 of the time 6 rows ahead (the 256² level 4-5 %
    /// faster), 0.991 and 0.993 at 3 rows, 0.996 at 12; a 2048² image 1.000 and 1.000 (30
    /// pairs). (A recomputed skip is made from the input in the scratch. The AVX2 build's upper
    /// levels run as two passes, whose kernels prefetch their own rows (`RegisterBlocking`): the
    /// same row-ahead prefetch in its decoder convolution took 1.007 and 1.008 of the time.)
    static let skipPrefetchRows = 6

    /// Prefetches the `count` floats from `row`, a line per 16.
    @inline(__always) static func prefetchRow(_ row: UnsafePointer<Float>, _ count: Int) {
        var k = 0
        while k < count { nf_prefetch(row + k); k += 16 }
    }

    @inline(__always) static func zeroRow(_ row: UnsafeMutablePointer<Float>, count: Int) {
        var k = 0
        while k < count { storeVector(.zero, row + k); k += vectorWidth }
    }
}

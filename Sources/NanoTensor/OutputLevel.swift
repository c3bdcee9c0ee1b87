/// A U-Net's last decoder level at inference as one pass per band of rows: its first convolution
/// (the skip part directly, the upsampled part on the map before upsampling, bias, ReLU:
/// `UpsampledConv3x3.forward(skip:_:low:_:into:relu:)`), then its last convolution fused with the
/// 1×1 two-class head and the softmax (`Conv3x3.forwardWithSoftmaxHead`).
///
/// The first convolution's output (4 channels at full resolution: 4.5 MB for a 512² tile, 75 MB
/// for a 2144² one) never exists as a map: each work item computes its band's rows, plus the row
/// above and below it that the last convolution also reads, into a per-thread scratch laid out as
/// padded planes, and the last convolution reads them there while they are in cache. The two rows
/// around each band are computed twice (once by each neighbour), 2 in `band` rows. Values are
/// those of the two separate passes, bit for bit (each row is made by the same kernels).
public enum OutputLevel {
    /// Rows per work item: enough that the rows computed twice cost little, few enough that a
    /// band's scratch stays in the caches and every thread gets several bands.
    static let band = 32

    public static func forward(skip: PaddedPlanes, _ direct: Conv3x3.PackedWeights, low: PaddedPlanes,
                               _ phase: UpsampledConv3x3.PhaseWeights, last: Conv3x3.PackedWeights, head: [Float],
                               into out: Tensor, pool: ThreadPool = .shared) {
        let h = skip.height, width = skip.width, lw = low.width
        require(direct.cout == phase.cout && skip.n == low.n && h == 2 * low.height && width == 2 * lw,
                "decoder convolution parts do not match")
        require(skip.channels == direct.cin && low.channels == phase.cin, "skip has \(skip.channels) channels, weights \(direct.cin); map \(low.channels), weights \(phase.cin)")
        require(last.cin == direct.cout, "last convolution reads \(last.cin) channels, the level makes \(direct.cout)")
        require(out.shape == Shape(skip.n, 2, h, width), "probabilities \(out.shape) for \(skip.n)x\(h)x\(width)")
        let features = direct.cout, blocks = (features + Conv3x3.block - 1) / Conv3x3.block
        let softmax = Conv3x3.SoftmaxHead(last, head)
        let band = min(OutputLevel.band, max(1, h / (4 * pool.threadCount)))
        let bands = (h + band - 1) / band
        // Scratch per thread: `features` planes of band + 2 padded rows (row r holds image row
        // y0 − 1 + r), one vector of zero columns on each side, as `PaddedPlanes` lays them out.
        let rs = 2 * vectorWidth + roundUp(width, vectorWidth), sps = (band + 2) * rs
        let scratch = Tensor(Shape(pool.threadCount, 1, 1, features * sps), zeroed: false)
        pool.parallelFor(skip.n * bands) { item, thread in
            let i = item / bands, y0 = (item % bands) * band, y1 = min(h, y0 + band)
            let rows = scratch.data + thread * features * sps
            let skipView = skip.view(image: i), lowView = low.view(image: i)
            // Image rows y0 − 1 … y1 of the first convolution (zero outside the image).
            for y in (y0 - 1)...y1 {
                let r = y - y0 + 1
                guard y >= 0 && y < h else {
                    for c in 0..<features { zeroRow(rows + c * sps + r * rs, count: rs) }
                    continue
                }
                for c in 0..<features { zeroSides(rows + c * sps + r * rs, width: width, rowStride: rs) }
                for ob in 0..<blocks {
                    let o = rows + ob * Conv3x3.block * sps + r * rs + vectorWidth
                    direct.convolveRow(y, block: ob, input: skipView, intoRow: o, planeStride: sps, width: width, reluCopy: nil)
                    phase.addRow(y, block: ob, low: lowView, lowWidth: lw, into: o, planeStride: sps, relu: true)
                }
            }
            // The last convolution and the head, reading the band's rows from the scratch.
            for y in y0..<y1 {
                softmax.row(UnsafePointer(rows + (y - y0 + 1) * rs + vectorWidth), sps, rs,
                            out.plane(i, 0) + y * width, out.plane(i, 1) + y * width, width: width)
            }
        }
    }

    @inline(__always) static func zeroRow(_ row: UnsafeMutablePointer<Float>, count: Int) {
        var k = 0
        while k < count { storeVector(.zero, row + k); k += vectorWidth }
    }
}

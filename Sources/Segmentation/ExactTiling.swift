import NanoNet
import NanoTensor
import Preprocessing

/// Whole-image inference in tiles that give exactly the whole-image values.
///
/// Inference is convolutional, so a tile that starts on the pooling grid (a multiple of
/// `UNetPlan.alignment`) gives the whole image's values at every pixel at least
/// `UNetPlan.tileMargin` (the receptive radius rounded up to the grid) from a tile edge that is
/// not also an image edge. The image is first padded by reflection to a multiple of the grid;
/// tiles are then laid so that what each keeps meets its neighbour's, and the kept parts are
/// copied into the result. Any tile size above twice the margin gives the same map (to float
/// round-off from the kernels' different blocking at different widths).
public struct ExactTiling: Sendable, Equatable {
    /// One tile: where it starts and what of it is kept (in padded-image pixels), per axis.
    public struct Span: Sendable, Equatable {
        public var origin: Int
        public var size: Int
        public var keep: Range<Int>
    }

    public let width: Int, height: Int
    /// Padded sizes (multiples of the alignment).
    public let paddedWidth: Int, paddedHeight: Int
    public let columns: [Span]
    public let rows: [Span]
    public let margin: Int

    /// A side padded (by reflection) to the pooling grid.
    public static func padded(_ length: Int, plan: UNetPlan) -> Int { (length + plan.alignment - 1) / plan.alignment * plan.alignment }

    /// Tiles of at most `tileSize` (rounded down to the alignment, at least 2 · margin + alignment).
    public init(width: Int, height: Int, plan: UNetPlan, tileSize: Int) {
        require(width > 0 && height > 0, "ExactTiling: empty image \(width)x\(height)")
        let a = plan.alignment, m = plan.tileMargin
        let t = max(2 * m + a, tileSize / a * a)
        self.width = width; self.height = height; margin = m
        paddedWidth = ExactTiling.padded(width, plan: plan)
        paddedHeight = ExactTiling.padded(height, plan: plan)
        columns = ExactTiling.spans(length: paddedWidth, tile: t, margin: m, alignment: a)
        rows = ExactTiling.spans(length: paddedHeight, tile: t, margin: m, alignment: a)
    }

    /// Tiles along one axis: as few as fit `tile` (k of them), all of the same size, the
    /// smallest that still covers the axis with a margin between neighbours (so the margins cost
    /// little); each keeps from `margin` after its start (or the axis start) to `margin` before
    /// its end (or the axis end), and the kept parts meet.
    static func spans(length: Int, tile: Int, margin: Int, alignment a: Int) -> [Span] {
        guard length > tile else { return [Span(origin: 0, size: length, keep: 0..<length)] }
        let k = (length - 2 * margin + (tile - 2 * margin) - 1) / (tile - 2 * margin)
        let even = (length + 2 * margin * (k - 1) + k - 1) / k
        let size = min(tile, (even + a - 1) / a * a)
        var spans: [Span] = []
        var next = 0
        while next < length {
            let origin = min(max(0, next - margin), length - size)
            let end = origin + size == length ? length : origin + size - margin
            spans.append(Span(origin: origin, size: size, keep: next..<end))
            next = end
        }
        return spans
    }

    public var count: Int { columns.count * rows.count }

    /// What a square tile keeps (between its margins) that `segment` plans a job's memory for
    /// (`Segmenter.bytesForPreferredTiles`, `BatchSegmentation.jobs`): a tile is this plus its two
    /// margins, so a 4096² image whose whole pass does not fit takes 2 × 2 tiles of 2144² (1.10 ×
    /// its pixels through the network) rather than 3 × 3 of 1520² (1.24 ×): warm, as in a batch,
    /// 0.48 against 0.58 s (AMD EPYC fam 25 mod 17, `bench --only infer_4096_tiled`).
    public static let preferredKeptSide = 2048
    /// The preferred tile's side, its margins included (2144 for pyNanoFind).
    public static func preferredTileSize(_ plan: UNetPlan) -> Int { preferredKeptSide + 2 * plan.tileMargin }
    /// The most a square tile keeps where the memory holds more than the preferred tile but not
    /// the whole image: fewer margins computed twice. An 8192² image with 6 GB in 2 × 2 tiles of
    /// 4192² instead of 4 × 4 of 2192²: its network 1.22-1.32 s against 1.40-1.46 s, the whole
    /// `segment_8192` 2.15-2.31 against 2.29-2.38 s (Intel Xeon fam 6 mod 207, alternating).
    public static let largestKeptSide = 4096

    /// The largest square tile whose activations fit `bytes` (`bytesPerPixel`), at most
    /// `largestKeptSide` plus two margins.
    public static func tileSize(forMemory bytes: Int, plan: UNetPlan) -> Int {
        let perPixel = bytesPerPixel(plan)
        let side = min(largestKeptSide + 2 * plan.tileMargin, Int(Double(max(bytes, 0) / perPixel).squareRoot()))
        return max(2 * plan.tileMargin + plan.alignment, side / plan.alignment * plan.alignment)
    }

    /// Activation bytes per input pixel at inference (`UNetInference`): the maps a pass may hold,
    /// counted as if all were held at once: the padded input, each encoder level's skip and
    /// pooled output, the centre's two outputs, and each decoder level's two outputs (the last
    /// level's only where it is not run in bands of rows straight into the probabilities, i.e.
    /// a first width over 4), 4 bytes a value, and a third more for the planes' padding and the
    /// buffers the pool keeps. 70 bytes for the pyNanoFind widths; 91 while the first level's
    /// skip was laid out, when the peak resident memory of whole passes grew by 70 bytes a pixel
    /// from 1024² to 4096², 12 of them the bench's input and output tensors (Intel Xeon fam 6 mod
    /// 207); recomputing that skip (`UNetPlan.firstSkipRecomputed`) took the peak of a 2048² pass
    /// (`bench --quick --only infer_2048`) from 342 to 280 MB (AMD EPYC fam 25 mod 17). The
    /// banded level's per-thread scratch (`OutputLevel`: features × 34 rows of the level's width,
    /// and the recomputed skip's channels × 36 rows) is inside the third: for the largest tile on
    /// 16 threads about 78 MB, 6 % of the count (150 MB with the bands of 64 rows before).
    public static func bytesPerPixel(_ plan: UNetPlan) -> Int {
        let lastLevelInBands = plan.lastLevelRunsInBands
        var floats = Double(plan.config.inputChannels)
        for c in plan.convolutions {
            let area = 1.0 / Double(c.scaleDivisor * c.scaleDivisor)
            switch c.stage {
            case .encoder:
                // The skip, and the pooled map a quarter its size; the first level's skip only
                // where the last level does not recompute it.
                let skipHeld = !(plan.firstSkipRecomputed && c.index == plan.encoders.first?.index)
                floats += (skipHeld ? 1.25 : 0.25) * Double(c.cout) * area
            case .centre: floats += Double(c.cout) * area
            case .decoderFirst(let level), .decoderSecond(let level):
                if level > 0 || !lastLevelInBands { floats += Double(c.cout) * area }
            case .head: if !lastLevelInBands { floats += Double(c.cout) }
            }
        }
        return max(32, Int(4 * floats * 1.3))
    }
}

/// Particle probabilities of whole images through `UNetInference`, tiled exactly.
public struct TiledPredictor: @unchecked Sendable {
    public let engine: UNetInference
    public let tileSize: Int

    public init(engine: UNetInference, tileSize: Int) {
        self.engine = engine
        self.tileSize = tileSize
    }

    /// The particle probability (softmax channel 1) of every pixel of `image` (already prepared).
    /// Each tile is laid out straight into the network's padded input, and the network writes
    /// only the particle probabilities of the part the tile keeps into the result
    /// (`UNetInference.particleProbabilities`): no copies of whole tiles in or out.
    public func probabilities(_ image: FloatImage, pool: ThreadPool = .shared) -> FloatImage {
        probabilities(image, mask: nil, pool: pool)
    }

    /// The same, and the mask of the pixels whose probability is above `threshold`, made as
    /// each tile's rows are written (what `BinaryMask(probabilities, threshold:)` gives, without
    /// a pass over the map).
    public func probabilitiesAndMask(_ image: FloatImage, threshold: Float, pool: ThreadPool = .shared) -> (FloatImage, BinaryMask) {
        var probabilities: FloatImage?
        // Every pixel is written, as the map's are.
        let values = [UInt8](unsafeUninitializedCapacity: image.width * image.height) { buffer, count in
            probabilities = self.probabilities(image, mask: (buffer.baseAddress!, threshold), pool: pool)
            count = image.width * image.height
        }
        return (probabilities!, BinaryMask(width: image.width, height: image.height, zeroOrOne: values))
    }

    private func probabilities(_ image: FloatImage, mask: (base: UnsafeMutablePointer<UInt8>, threshold: Float)?, pool: ThreadPool) -> FloatImage {
        let tiling = ExactTiling(width: image.width, height: image.height, plan: engine.plan, tileSize: tileSize)
        let w = image.width, h = image.height
        // Every pixel is written: the kept parts of the tiles cover the padded image.
        let pixels = [Float](unsafeUninitializedCapacity: w * h) { buffer, count in
            let out = buffer.baseAddress!
            image.pixels.withUnsafeBufferPointer { srcBuffer in
                let src = srcBuffer.baseAddress!
                for row in tiling.rows {
                    let y0 = row.keep.lowerBound, y1 = min(row.keep.upperBound, h)
                    for column in tiling.columns {
                        let x0 = column.keep.lowerBound, x1 = min(column.keep.upperBound, w)
                        guard y1 > y0 && x1 > x0 else { continue }  // a tile that keeps only padding
                        let input = PaddedPlanes(n: 1, channels: 1, height: row.size, width: column.size)
                        // Columns inside the image are one copy per row; only the padding beyond
                        // the right edge is mirrored pixel by pixel.
                        let inside = max(0, min(column.size, w - column.origin))
                        input.fill(plane: 0, pool: pool) { y, dst in
                            let sy = BorderMode.mirror.index(row.origin + y, count: h)
                            if inside > 0 { dst.update(from: src + sy * w + column.origin, count: inside) }
                            for xx in inside..<column.size { dst[xx] = src[sy * w + BorderMode.mirror.index(column.origin + xx, count: w)] }
                        }
                        engine.particleProbabilities(input, rows: (y0 - row.origin)..<(y1 - row.origin),
                                                     columns: (x0 - column.origin)..<(x1 - column.origin),
                                                     into: out + y0 * w + x0, rowStride: w,
                                                     mask: mask.map { ($0.base + y0 * w + x0, $0.threshold) }, pool: pool)
                    }
                }
            }
            count = w * h
        }
        return FloatImage(width: w, height: h, pixels: pixels)
    }
}

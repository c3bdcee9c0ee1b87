import Foundation

/// Cutting images into overlapping square tiles for the network, stitching per-tile outputs back,
/// and choosing which tiles to train on.
///
/// ## Layout
/// Along each axis of length `L`, tiles of size `N` start at `0, N - overlap, 2(N - overlap), ...`
/// and the last origin is moved back to `L - N` so the last tile ends exactly at the border (it
/// then overlaps its neighbour by more than `overlap`). An axis shorter than `N` gets one tile at
/// origin 0 that reaches past the image: the missing samples are filled with the `border` mode
/// (default `.mirror`, NumPy's `np.pad(mode='reflect')`: `a b c d | c b a`, repeating
/// periodically when the tile is more than twice the image), on the right and bottom only, so
/// image pixel (x, y) is tile pixel (x - originX, y - originY) in every case.
/// Tiles are ordered row by row: `y` origins outer, `x` origins inner.
public struct TileGrid: Sendable, Equatable {
    public let imageWidth: Int
    public let imageHeight: Int
    /// Tile side N in pixels.
    public let tileSize: Int
    /// Minimum overlap of neighbouring tiles in pixels (0 ≤ overlap < N).
    public let overlap: Int
    /// Left edges of the tile columns, increasing; the last is `max(imageWidth - N, 0)`.
    public let xOrigins: [Int]
    /// Top edges of the tile rows, increasing; the last is `max(imageHeight - N, 0)`.
    public let yOrigins: [Int]

    public init(imageWidth: Int, imageHeight: Int, tileSize: Int, overlap: Int) {
        require(imageWidth > 0 && imageHeight > 0, "TileGrid: empty image \(imageWidth)x\(imageHeight)")
        require(tileSize > 0 && overlap >= 0 && overlap < tileSize,
                "TileGrid: need tileSize > 0 and 0 <= overlap < tileSize, got \(tileSize), \(overlap)")
        self.imageWidth = imageWidth; self.imageHeight = imageHeight
        self.tileSize = tileSize; self.overlap = overlap
        xOrigins = TileGrid.origins(length: imageWidth, tileSize: tileSize, overlap: overlap)
        yOrigins = TileGrid.origins(length: imageHeight, tileSize: tileSize, overlap: overlap)
    }

    /// The grid for `image`'s size.
    public init(for image: FloatImage, tileSize: Int, overlap: Int) {
        self.init(imageWidth: image.width, imageHeight: image.height, tileSize: tileSize, overlap: overlap)
    }

    /// Tile origins along one axis of `length` samples (see the type's documentation).
    public static func origins(length: Int, tileSize: Int, overlap: Int) -> [Int] {
        guard length > tileSize else { return [0] }
        let step = tileSize - overlap
        var result = [0]
        while result[result.count - 1] + tileSize < length {
            result.append(Swift.min(result[result.count - 1] + step, length - tileSize))
        }
        return result
    }

    /// Number of tiles.
    public var count: Int { xOrigins.count * yOrigins.count }

    /// Top-left corner of every tile in image pixels, in tile order (row by row).
    public var origins: [(x: Int, y: Int)] {
        yOrigins.flatMap { y in xOrigins.map { x in (x: x, y: y) } }
    }
}

/// The tiles of `image` in `grid` order; samples beyond the image (only when the image is
/// smaller than a tile) come from `border`.
public func extractTiles(_ image: FloatImage, grid: TileGrid, border: BorderMode = .mirror) -> [FloatImage] {
    checkShape(grid, image.width, image.height)
    let n = grid.tileSize
    return cutTiles(image.pixels, grid: grid, border: border).map {
        FloatImage(width: n, height: n, pixels: $0)
    }
}

/// The tiles of `mask`, cut exactly like `extractTiles(_:grid:border:)` cuts its image.
public func extractTiles(_ mask: BinaryMask, grid: TileGrid, border: BorderMode = .mirror) -> [BinaryMask] {
    checkShape(grid, mask.width, mask.height)
    let n = grid.tileSize
    return cutTiles(mask.values, grid: grid, border: border).map {
        BinaryMask(width: n, height: n, values: $0)
    }
}

private func checkShape(_ grid: TileGrid, _ w: Int, _ h: Int) {
    require(grid.imageWidth == w && grid.imageHeight == h,
            "tiling: grid is for \(grid.imageWidth)x\(grid.imageHeight), image is \(w)x\(h)")
}

private func cutTiles<T>(_ src: [T], grid: TileGrid, border: BorderMode) -> [[T]] {
    let n = grid.tileSize, w = grid.imageWidth, h = grid.imageHeight
    var tiles: [[T]] = []
    tiles.reserveCapacity(grid.count)
    for oy in grid.yOrigins {
        for ox in grid.xOrigins {
            let columns = (0..<n).map { border.index(ox + $0, count: w) }
            var tile = [T]()
            tile.reserveCapacity(n * n)
            for ty in 0..<n {
                let row = border.index(oy + ty, count: h) * w
                if ox + n <= w {
                    tile.append(contentsOf: src[(row + ox)..<(row + ox + n)])
                } else {
                    for c in columns { tile.append(src[row + c]) }
                }
            }
            tiles.append(tile)
        }
    }
    return tiles
}

/// How the tiles' samples are weighted where they overlap when stitching.
public enum StitchWindow: Sendable, Equatable {
    /// Every tile pixel weighs 1: overlapping tiles are averaged. Stitching the unmodified tiles
    /// of an image reproduces it exactly.
    case uniform
    /// Separable `w(i) = sin²(π (i + 0.5) / N)` along each axis: 1 in the tile centre, falling
    /// smoothly to nearly (never exactly) 0 at the tile edges, where a CNN's output is least
    /// reliable, so seams between tiles vanish. Where only one tile covers a pixel (image
    /// borders) its value is used as it is.
    case hann

    /// The 1-D weights for a tile of side `n`.
    public func weights(_ n: Int) -> [Double] {
        switch self {
        case .uniform: return [Double](repeating: 1, count: n)
        case .hann:
            return (0..<n).map { i in
                let s = sin(Double.pi * (Double(i) + 0.5) / Double(n))
                return s * s
            }
        }
    }
}

/// Stitches per-tile outputs (e.g. probability maps) back into one `grid.imageWidth` ×
/// `grid.imageHeight` image: each pixel is the weighted mean of the tiles that cover it, weights
/// from `window`, accumulated in double precision. Padding beyond the image is dropped.
///
/// With `.uniform` weights, stitching `extractTiles(image, grid:)` returns `image` exactly.
public func stitchTiles(_ tiles: [FloatImage], grid: TileGrid, window: StitchWindow = .hann) -> FloatImage {
    require(tiles.count == grid.count, "stitchTiles: \(tiles.count) tiles for a grid of \(grid.count)")
    let n = grid.tileSize, w = grid.imageWidth, h = grid.imageHeight
    require(tiles.allSatisfy { $0.width == n && $0.height == n }, "stitchTiles: every tile must be \(n)x\(n)")
    let weights = window.weights(n)
    // The weight sum is separable because the grid is a Cartesian product of x and y origins.
    func axisSum(_ origins: [Int], _ length: Int) -> [Double] {
        var s = [Double](repeating: 0, count: length)
        for o in origins { for i in 0..<n where o + i < length { s[o + i] += weights[i] } }
        return s
    }
    let sx = axisSum(grid.xOrigins, w), sy = axisSum(grid.yOrigins, h)
    var out = [Float](repeating: 0, count: w * h)
    var acc = [Double](repeating: 0, count: w)
    let nx = grid.xOrigins.count
    for y in 0..<h {
        for i in 0..<w { acc[i] = 0 }
        for (ty, oy) in grid.yOrigins.enumerated() where y >= oy && y < oy + n {
            let wy = weights[y - oy]
            for (tx, ox) in grid.xOrigins.enumerated() {
                let end = Swift.min(n, w - ox)
                tiles[ty * nx + tx].pixels.withUnsafeBufferPointer { t in
                    acc.withUnsafeMutableBufferPointer { a in
                        let row = (y - oy) * n
                        for i in 0..<end { a[ox + i] += wy * weights[i] * Double(t[row + i]) }
                    }
                }
            }
        }
        for x in 0..<w { out[y * w + x] = Float(acc[x] / (sx[x] * sy[y])) }
    }
    return FloatImage(width: w, height: h, pixels: out)
}

/// Keeps only the (image, mask) tile pairs whose mask has at least `minimumParticlePixels`
/// particle pixels (pyNanoFind trained only on tiles that contain particles). Order is kept.
public func discardTilesWithoutParticles(images: [FloatImage], masks: [BinaryMask],
                                         minimumParticlePixels: Int = 1)
    -> (images: [FloatImage], masks: [BinaryMask]) {
    require(images.count == masks.count, "discardTilesWithoutParticles: \(images.count) images, \(masks.count) masks")
    var keptImages: [FloatImage] = [], keptMasks: [BinaryMask] = []
    for (image, mask) in zip(images, masks) where mask.foregroundCount >= minimumParticlePixels {
        keptImages.append(image); keptMasks.append(mask)
    }
    return (keptImages, keptMasks)
}

/// A reproducible random split of the indices `0..<count`: `round(fraction * count)` indices go
/// to validation, the rest to training; both lists ascending, disjoint, together all indices.
/// The same `(count, fraction, seed)` always gives the same split.
public func splitTrainValidation(count: Int, fraction: Double, seed: UInt64) -> (train: [Int], validation: [Int]) {
    require(count >= 0 && fraction >= 0 && fraction <= 1,
            "splitTrainValidation: need count >= 0 and 0 <= fraction <= 1, got \(count), \(fraction)")
    var rng = SeededRandom(seed: seed)
    let order = rng.shuffled(Array(0..<count))
    let k = Int((fraction * Double(count)).rounded())
    return (Array(order[k...]).sorted(), Array(order[..<k]).sorted())
}

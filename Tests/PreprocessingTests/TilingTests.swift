import Preprocessing
import XCTest

final class TilingTests: XCTestCase {
    func testOriginsByHand() {
        // Step 24; the last tile is pulled back to end at 100.
        XCTAssertEqual(TileGrid.origins(length: 100, tileSize: 32, overlap: 8), [0, 24, 48, 68])
        XCTAssertEqual(TileGrid.origins(length: 37, tileSize: 32, overlap: 8), [0, 5])
        XCTAssertEqual(TileGrid.origins(length: 64, tileSize: 32, overlap: 0), [0, 32])
        XCTAssertEqual(TileGrid.origins(length: 32, tileSize: 32, overlap: 8), [0])
        XCTAssertEqual(TileGrid.origins(length: 20, tileSize: 32, overlap: 8), [0])
        XCTAssertEqual(TileGrid.origins(length: 512, tileSize: 256, overlap: 64), [0, 192, 256])
        let g = TileGrid(imageWidth: 100, imageHeight: 37, tileSize: 32, overlap: 8)
        XCTAssertEqual(g.count, 8)
        XCTAssertEqual(g.origins.map { [$0.x, $0.y] }.prefix(5), [[0, 0], [24, 0], [48, 0], [68, 0], [0, 5]])
    }

    /// Uniform-weight stitching of the untouched tiles gives the image back bit for bit.
    func testRoundTripIsExactForManySizes() {
        let cases = [(100, 37, 32, 8), (20, 13, 32, 8), (64, 64, 32, 0), (64, 96, 32, 16),
                     (33, 70, 32, 31), (32, 32, 32, 8), (1, 1, 4, 1), (129, 5, 16, 5)]
        for (k, (w, h, n, ov)) in cases.enumerated() {
            let im = randomImage(w, h, seed: UInt64(k) + 100)
            let grid = TileGrid(for: im, tileSize: n, overlap: ov)
            let tiles = extractTiles(im, grid: grid)
            XCTAssertEqual(tiles.count, grid.count)
            XCTAssert(tiles.allSatisfy { $0.width == n && $0.height == n })
            XCTAssertEqual(stitchTiles(tiles, grid: grid, window: .uniform), im, "\(w)x\(h) N \(n) overlap \(ov)")
            // The smooth window is a weighted mean of equal values: equal up to rounding.
            assertClose(stitchTiles(tiles, grid: grid, window: .hann).pixels, im.pixels, accuracy: 1e-3,
                        "hann \(w)x\(h)")
        }
    }

    /// A 3×2 image in a 5×5 tile: right and bottom filled by mirror reflection
    /// (a b c -> a b c b a; rows 0 1 -> 0 1 0 1 0, the pattern repeating).
    func testSmallImagePaddedByReflectionByHand() {
        let im = FloatImage(rows: [[1, 2, 3], [4, 5, 6]])
        let grid = TileGrid(for: im, tileSize: 5, overlap: 2)
        XCTAssertEqual(grid.count, 1)
        let tile = extractTiles(im, grid: grid)[0]
        XCTAssertEqual(tile.rows, [
            [1, 2, 3, 2, 1],
            [4, 5, 6, 5, 4],
            [1, 2, 3, 2, 1],
            [4, 5, 6, 5, 4],
            [1, 2, 3, 2, 1],
        ])
        XCTAssertEqual(stitchTiles([tile], grid: grid, window: .uniform), im)
    }

    func testMaskTilesAlignWithImageTiles() {
        let mask = randomMask(70, 45, seed: 4)
        let grid = TileGrid(imageWidth: 70, imageHeight: 45, tileSize: 32, overlap: 8)
        let maskTiles = extractTiles(mask, grid: grid)
        let imageTiles = extractTiles(mask.floatImage, grid: grid)
        XCTAssertEqual(maskTiles.map { $0.floatImage }, imageTiles)
    }

    /// Stitching different per-tile outputs: every pixel is a convex combination of the tiles
    /// covering it, and a pixel covered by one tile only takes that tile's value.
    func testStitchingBlendsOverlapsOnly() {
        let grid = TileGrid(imageWidth: 40, imageHeight: 8, tileSize: 8, overlap: 4)
        // x origins 0, 4, ..., 32; y origin 0. Tile t is constant t.
        let tiles = (0..<grid.count).map { FloatImage(width: 8, height: 8, repeating: Float($0)) }
        for window in [StitchWindow.uniform, .hann] {
            let s = stitchTiles(tiles, grid: grid, window: window)
            XCTAssertEqual(s[x: 0, y: 3], 0)          // only tile 0
            XCTAssertEqual(s[x: 39, y: 3], 8)         // only tile 8
            for x in 4..<36 {
                let v = s[x: x, y: 0]
                XCTAssert(v >= Float(x / 4 - 1) && v <= Float(x / 4), "x \(x) \(v) \(window)")
            }
        }
        // Uniform: pixels 4...7 are the mean of tiles 0 and 1.
        XCTAssertEqual(stitchTiles(tiles, grid: grid, window: .uniform)[x: 5, y: 2], 0.5)
    }

    func testDiscardTilesWithoutParticles() {
        let images = (0..<3).map { FloatImage(width: 2, height: 2, repeating: Float($0)) }
        let masks = [BinaryMask(rows: [[0, 0], [0, 0]]), BinaryMask(rows: [[0, 1], [0, 0]]),
                     BinaryMask(rows: [[1, 1], [0, 1]])]
        let kept = discardTilesWithoutParticles(images: images, masks: masks)
        XCTAssertEqual(kept.images.map { $0.pixels[0] }, [1, 2])
        XCTAssertEqual(kept.masks, [masks[1], masks[2]])
        let strict = discardTilesWithoutParticles(images: images, masks: masks, minimumParticlePixels: 2)
        XCTAssertEqual(strict.images.map { $0.pixels[0] }, [2])
    }

    func testSplitDeterministicDisjointAndComplete() {
        let a = splitTrainValidation(count: 97, fraction: 0.2, seed: 2024)
        let b = splitTrainValidation(count: 97, fraction: 0.2, seed: 2024)
        XCTAssertEqual(a.train, b.train); XCTAssertEqual(a.validation, b.validation)
        XCTAssertEqual(a.validation.count, 19)  // round(19.4)
        XCTAssertEqual(a.train.count, 78)
        XCTAssertTrue(Set(a.train).isDisjoint(with: a.validation))
        XCTAssertEqual((a.train + a.validation).sorted(), Array(0..<97))
        XCTAssertEqual(a.train, a.train.sorted())
        let c = splitTrainValidation(count: 97, fraction: 0.2, seed: 2025)
        XCTAssertNotEqual(a.validation, c.validation)
        XCTAssertEqual(splitTrainValidation(count: 5, fraction: 0, seed: 1).validation, [])
        XCTAssertEqual(splitTrainValidation(count: 5, fraction: 1, seed: 1).train, [])
    }
}

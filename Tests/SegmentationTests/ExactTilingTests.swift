import NanoNet
import NanoTensor
import ParticleAnalysis
import Preprocessing
import Segmentation
import TestSupport
import XCTest

/// Tiled inference equals one whole-image pass, for any tile size.
final class ExactTilingTests: XCTestCase {
    func network() -> UNetInference {
        let net = UNet(config: .pyNanoFind, seed: 21)
        var rng = SplitMix64(seed: 5)
        for (_, t) in net.namedTensors { for k in 0..<t.count { t.data[k] += 0.05 * rng.nextGaussian() } }
        for bn in net.layerNorms.compactMap({ $0 }) { for k in 0..<bn.channels { bn.runningVariance.data[k] = 0.5 + rng.nextFloat() } }
        return UNetInference(net)
    }

    /// Lattice fringes in discs on noise, so the map has structure on every scale.
    func image(width: Int, height: Int) -> FloatImage {
        var rng = SeededRandom(seed: 3)
        var pixels = [Float](repeating: 0, count: width * height)
        let discs = (0..<12).map { _ in (Double(rng.nextInt(below: width)), Double(rng.nextInt(below: height)), 20 + rng.nextDouble() * 60) }
        for y in 0..<height { for x in 0..<width {
            var v = 0.5 + 0.1 * rng.nextGaussian()
            for (cx, cy, r) in discs where (Double(x) - cx) * (Double(x) - cx) + (Double(y) - cy) * (Double(y) - cy) < r * r {
                v += Float(0.3 * cos(Double(x + y) * 0.9))
            }
            pixels[y * width + x] = v
        } }
        return FloatImage(width: width, height: height, pixels: pixels)
    }

    func check(width: Int, height: Int, tiles: [Int]) {
        let engine = network()
        let img = image(width: width, height: height)
        let whole = TiledPredictor(engine: engine, tileSize: 1 << 20).probabilities(img)
        XCTAssertEqual(ExactTiling(width: width, height: height, plan: engine.plan, tileSize: 1 << 20).count, 1)
        let wholeParticles = ParticleMeasurement(mask: BinaryMask(whole, threshold: 0.5)).particles.count
        let (wholeMap, wholeMask) = TiledPredictor(engine: engine, tileSize: 1 << 20).probabilitiesAndMask(img, threshold: 0.5)
        XCTAssertEqual(wholeMap.pixels, whole.pixels)
        XCTAssertEqual(wholeMask, BinaryMask(whole, threshold: 0.5))
        for t in tiles {
            let tiling = ExactTiling(width: width, height: height, plan: engine.plan, tileSize: t)
            XCTAssertGreaterThan(tiling.count, 1, "tile \(t) should cut \(width)x\(height)")
            let tiled = TiledPredictor(engine: engine, tileSize: t).probabilities(img)
            // The mask made as the rows are written is the threshold of the map they make.
            let threshold: Float = t == tiles[0] ? 0.3 : 0.5
            let (map, mask) = TiledPredictor(engine: engine, tileSize: t).probabilitiesAndMask(img, threshold: threshold)
            XCTAssertEqual(map.pixels, tiled.pixels, "tile \(t)")
            XCTAssertEqual(mask, BinaryMask(tiled, threshold: threshold), "tile \(t), threshold \(threshold)")
            let worst = maxAbsDifference(whole.pixels, tiled.pixels)
            XCTAssertLessThan(worst, 1e-5, "\(width)x\(height) in \(tiling.count) tiles of \(t): max |diff| \(worst)")
            // Particles cut by tile borders come out whole: the same count as the whole pass.
            let n = ParticleMeasurement(mask: BinaryMask(tiled, threshold: 0.5)).particles.count
            XCTAssertEqual(n, wholeParticles, "tile \(t)")
            print("ExactTilingTests: \(width)x\(height), \(tiling.count) tiles of \(t): max |diff| \(worst), \(n) particles")
        }
    }

    func testTiledEqualsWholeOnA2048Square() { check(width: 2048, height: 2048, tiles: [320, 512, 1024]) }
    func testTiledEqualsWholeOnA1500By3000Image() { check(width: 1500, height: 3000, tiles: [400, 640, 1200]) }
    func testSidesThatAreNotMultiplesOfSixteen() { check(width: 333, height: 250, tiles: [208, 240]) }

    func testSpansCoverTheImageOnceWithTheMarginInside() {
        let plan = UNetPlan(.pyNanoFind)
        for (length, tile) in [(1000, 208), (4096, 1024), (100, 512), (2048, 2048), (2064, 2048)] {
            let tiling = ExactTiling(width: length, height: 64, plan: plan, tileSize: tile)
            var next = 0
            for s in tiling.columns {
                XCTAssertEqual(s.keep.lowerBound, next)
                XCTAssertEqual(s.origin % plan.alignment, 0)
                XCTAssertTrue(s.origin == 0 || s.keep.lowerBound - s.origin >= plan.tileMargin)
                XCTAssertTrue(s.origin + s.size == tiling.paddedWidth || s.origin + s.size - s.keep.upperBound >= plan.tileMargin)
                next = s.keep.upperBound
            }
            XCTAssertEqual(next, tiling.paddedWidth)
        }
    }
}

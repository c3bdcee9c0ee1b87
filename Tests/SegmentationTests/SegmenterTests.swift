import Foundation
import MicrographIO
import NanoTensor
import NanoNet
import Preprocessing
import ParticleAnalysis
import Segmentation
import TestSupport
import XCTest

final class SegmenterTests: XCTestCase {
    /// `rawZeroOffset` is where the raw zero lies in the prepared image's units: with the
    /// recipe's own scaling x' = (x − o)·s held as it is, light G(x, y) on the raw image gives
    /// (G·x − o)·s = G·x' + (G − 1)·offset, which is how training lights a prepared crop. Checked
    /// for every scaling against o and s found independently; a denormal range gets 0, not NaN.
    func testRawZeroOffsetIsTheRecipesOwn() {
        var rng = SeededRandom(seed: 5)
        let w = 64, h = 48
        let raw = FloatImage(width: w, height: h, pixels: (0..<(w * h)).map { _ in 1000 + 80 * rng.nextFloat() })
        let light = (0..<(w * h)).map { i -> Float in 1 + 0.03 * Float(i % w) / Float(w) - 0.02 * Float(i / w) / Float(h) }
        for scaling in InputRecipe.Scaling.allCases {
            let recipe = InputRecipe(medianFilter: false, scaling: scaling)
            let v = raw.pixels
            let (o, sc): (Float, Float)
            switch scaling {
            case .none: (o, sc) = (0, 1)
            case .minMax: (o, sc) = (v.min()!, 1 / (v.max()! - v.min()!))
            case .percentile:
                let q = percentiles(v, [Double(recipe.lowerPercentile), Double(recipe.upperPercentile)]); (o, sc) = (q[0], 1 / (q[1] - q[0]))
            case .medianMAD:
                let m = percentiles(v, [50])[0]; (o, sc) = (m, 1 / (1.4826 * percentiles(v.map { abs($0 - m) }, [50])[0]))
            }
            let offset = recipe.rawZeroOffset(raw), prepared = recipe.apply(raw).pixels
            XCTAssertEqual(offset, o * sc, accuracy: 1e-4 * max(1, abs(o * sc)), "\(scaling)")
            var worst: Float = 0
            for k in prepared.indices where scaling != .percentile || (prepared[k] > 0.001 && prepared[k] < 0.999) {
                let lit = (light[k] * v[k] - o) * sc, predicted = light[k] * prepared[k] + (light[k] - 1) * offset
                worst = max(worst, abs(lit - predicted) / max(1, abs(lit)))
            }
            XCTAssertLessThan(worst, 1e-3, "\(scaling)")
        }
        let tiny = FloatImage(width: 8, height: 8, pixels: (0..<64).map { Float($0) * 1e-44 })
        XCTAssertTrue(InputRecipe.robust.rawZeroOffset(tiny).isFinite)
    }

    /// `prepare` (one median filter for both) gives `apply`'s image and `rawZeroOffset`'s value
    /// bit for bit, with and without a pool, for every scaling with and without the filter, a
    /// denormal range and an empty image included (the large image is split among the pool's
    /// threads by the median filter and the percentiles).
    func testPrepareGivesTheImageAndTheRawZeroOfTheirOwnFunctions() {
        var rng = SeededRandom(seed: 6)
        let w = 301, h = 2003
        let pool = ThreadPool(threads: 2)
        let images = [FloatImage(width: w, height: h, pixels: (0..<(w * h)).map { _ in 1000 + 80 * rng.nextFloat() }),
                      FloatImage(width: 8, height: 8, pixels: (0..<64).map { Float($0) * 1e-44 }),
                      FloatImage(width: 0, height: 0, pixels: [])]
        for image in images {
            for scaling in InputRecipe.Scaling.allCases {
                for filter in [false, true] {
                    let recipe = InputRecipe(medianFilter: filter, scaling: scaling)
                    for pool in [nil, pool] {
                        let (prepared, rawZero) = recipe.prepare(image, pool: pool)
                        let label = "\(image.width)x\(image.height) \(scaling) filter \(filter) pool \(pool != nil)"
                        XCTAssertEqual(prepared.pixels.map { $0.bitPattern }, recipe.apply(image).pixels.map { $0.bitPattern }, label)
                        XCTAssertEqual(rawZero.bitPattern, recipe.rawZeroOffset(image).bitPattern, label)
                    }
                }
            }
        }
    }

    func testResamplingKeepsConstantsAndRamps() {
        let flat = FloatImage(width: 40, height: 30, repeating: 3)
        for (w, h) in [(20, 15), (97, 61), (40, 30)] {
            let r = resample(flat, width: w, height: h)
            XCTAssertEqual(largest(r.pixels.map { abs($0 - 3) })!, 0, accuracy: 1e-5)
        }
        let ramp = FloatImage(width: 64, height: 8, pixels: (0..<(64 * 8)).map { Float($0 % 64) })
        let half = resample(ramp, width: 32, height: 8)
        for x in 4..<28 { XCTAssertEqual(half[x: x, y: 4], Float(2 * x) + 0.5, accuracy: 0.05) }
    }

    func testPreprocessingRecipesReadOldAndNewModelFiles() throws {
        let legacy = try JSONDecoder().decode([InputRecipe].self, from: Data(#"["median3+max","none"]"#.utf8))
        XCTAssertEqual(legacy, [.pyNanoFind, .none])
        let round = try JSONDecoder().decode(InputRecipe.self, from: JSONEncoder().encode(InputRecipe.robust))
        XCTAssertEqual(round, .robust)
        XCTAssertThrowsError(try JSONDecoder().decode([InputRecipe].self, from: Data(#"["median5"]"#.utf8)))
    }

    /// Files at once: one per two threads, but no more than leave each job memory for a 4096²
    /// micrograph in full-size tiles (which that budget then fits), never more than the files;
    /// `--jobs` as asked. Every thread goes to a job.
    func testFilesAtOnceFollowThreadsMemoryAndFiles() {
        let net = UNet(config: .pyNanoFind, seed: 1)
        let model = Model(network: net, metadata: ModelMetadata(config: net.config, trainingPixelSizeNm: 0.05,
                                                                preprocessing: .robust, provenance: "test"))
        func segmenter(_ gb: Double) -> Segmenter { Segmenter(model: model, options: SegmentationOptions(memoryBytes: Int(gb * 1e9))) }
        let perJob = segmenter(6).bytesForPreferredTiles(side: 4096)
        XCTAssertEqual(Double(perJob) / 1e9, 1.1, accuracy: 0.1)  // what the memory plan reserves for 2144² tiles
        // That much memory holds a 4096² image in tiles of the preferred size, a little less does not.
        let plan = segmenter(Double(perJob) / 1e9).memoryPlan(width: 4096, height: 4096, pixelSizeNm: 0.05, fileBytes: 2 * 4096 * 4096)
        XCTAssertEqual(try plan.get().tileSize, ExactTiling.preferredKeptSide + 2 * net.plan.tileMargin)
        let less = segmenter(Double(perJob) / 1e9 - 0.2).memoryPlan(width: 4096, height: 4096, pixelSizeNm: 0.05, fileBytes: 2 * 4096 * 4096)
        XCTAssertLessThan(try less.get().tileSize, ExactTiling.preferredKeptSide + 2 * net.plan.tileMargin)
        // With room for the whole image's pass (1.2 GB for 4096² rather than the tile's 0.3), one
        // tile covers it: padded to the pooling grid, and at the model's scale (an image at twice
        // the model's pixel size runs at twice its sides).
        func bytes(_ n: Int) -> Segmenter { Segmenter(model: model, options: SegmentationOptions(memoryBytes: n)) }
        let tile = ExactTiling.preferredKeptSide + 2 * net.plan.tileMargin, perPixel = ExactTiling.bytesPerPixel(net.plan)
        let whole = perJob - tile * tile * perPixel + 4096 * 4096 * perPixel
        XCTAssertEqual(try bytes(whole).memoryPlan(width: 4096, height: 4096, pixelSizeNm: 0.05, fileBytes: 2 * 4096 * 4096).get().tileSize, 4096)
        // A little less: the largest square tile that memory holds (above the preferred one).
        let largest = Int((Double(4096 * 4096 * perPixel - 1) / Double(perPixel)).squareRoot()) / 16 * 16
        XCTAssertEqual(try bytes(whole - 1).memoryPlan(width: 4096, height: 4096, pixelSizeNm: 0.05, fileBytes: 2 * 4096 * 4096).get().tileSize, largest)
        XCTAssertGreaterThan(largest, tile)
        XCTAssertEqual(ExactTiling.tileSize(forMemory: 1 << 40, plan: net.plan), ExactTiling.largestKeptSide + 2 * net.plan.tileMargin)
        XCTAssertEqual(try segmenter(64).memoryPlan(width: 4000, height: 1000, pixelSizeNm: 0.05, fileBytes: 0).get().tileSize, 4000)
        XCTAssertEqual(try segmenter(64).memoryPlan(width: 1000, height: 3001, pixelSizeNm: 0.1, fileBytes: 0).get().tileSize, 6016)
        // A file per two threads, as the memory allows.
        XCTAssertEqual(BatchSegmentation.jobs(nil, files: 10, threads: 2, segmenter: segmenter(6)), 1)
        XCTAssertEqual(BatchSegmentation.jobs(nil, files: 10, threads: 3, segmenter: segmenter(6)), 1)
        XCTAssertEqual(BatchSegmentation.jobs(nil, files: 10, threads: 4, segmenter: segmenter(6)), 2)
        XCTAssertEqual(BatchSegmentation.jobs(nil, files: 10, threads: 16, segmenter: segmenter(64)), 8)
        XCTAssertLessThan(6 * 1_000_000_000 / perJob, 8)
        XCTAssertEqual(BatchSegmentation.jobs(nil, files: 10, threads: 16, segmenter: segmenter(6)), 6 * 1_000_000_000 / perJob)
        XCTAssertEqual(BatchSegmentation.jobs(nil, files: 1, threads: 16, segmenter: segmenter(64)), 1)
        XCTAssertEqual(BatchSegmentation.jobs(nil, files: 10, threads: 16, segmenter: segmenter(1)), 1)
        XCTAssertEqual(BatchSegmentation.jobs(4, files: 10, threads: 2, segmenter: segmenter(1)), 4)
        XCTAssertEqual(BatchSegmentation.threadShares(5, jobs: 2), [3, 2])
        XCTAssertEqual(BatchSegmentation.threadShares(16, jobs: 8), [Int](repeating: 2, count: 8))
        XCTAssertEqual(BatchSegmentation.threadShares(7, jobs: 3), [3, 2, 2])
        XCTAssertEqual(BatchSegmentation.threadShares(2, jobs: 4), [1, 1, 1, 1])
        // Test-time augmentation holds more maps while the network runs: a 4096² image of pixels
        // ten times the model's (resampled up 10× to 100 times the pixels) needs that much more.
        var tta = SegmentationOptions(memoryBytes: 1 << 40)
        tta.testTimeAugmentation = true
        let plain = Segmenter(model: model, options: SegmentationOptions(memoryBytes: 1 << 40))
        let augmented = Segmenter(model: model, options: tta)
        let need = { (s: Segmenter) in s.fullSizeBytes(width: 4096, height: 4096, pixelSizeNm: 0.5, fileBytes: 0) }
        XCTAssertEqual(need(augmented) - need(plain), 100 * 4096 * 4096 * Double(Segmenter.augmentationBytesPerNetworkPixel), accuracy: 1)
    }

    /// An image at twice the model's pixel size is resampled to the model's scale (200 × 160),
    /// segmented there and mapped back: the same map as those steps done by hand, and not the
    /// map of the image segmented as it is.
    func testResamplesToTheModelsPixelSize() {
        let net = UNet(config: UNetConfig(widths: [2, 3], centreWidth: 4), seed: 1)
        let model = Model(network: net, metadata: ModelMetadata(config: net.config, trainingPixelSizeNm: 0.05,
                                                                preprocessing: .robust, provenance: "test"))
        let image = FloatImage(width: 100, height: 80, pixels: (0..<8000).map { Float($0 % 13) + Float($0 / 100 % 7) })
        let s = Segmenter(model: model)
        let r = s.segment(image, pixelSizeNm: 0.1)
        XCTAssertEqual(r.scale, 2, accuracy: 1e-12)
        XCTAssertEqual(r.probability.width, 100); XCTAssertEqual(r.mask.height, 80)
        func pipeline(_ input: FloatImage) -> FloatImage {
            TiledPredictor(engine: s.predictor.engine, tileSize: 1024).probabilities(InputRecipe.robust.apply(input))
        }
        // (The image's fitted plane divided out first, as `segment` does by default.)
        let byHand = resample(pipeline(resample(image.flattenedIllumination(), width: 200, height: 160)), width: 100, height: 80)
        XCTAssertLessThan(maxAbsDifference(r.probability.pixels, byHand.pixels), 1e-5)
        XCTAssertGreaterThan(maxAbsDifference(r.probability.pixels, pipeline(image).pixels), 1e-3,
                             "the test image must tell a resampled pass from one at the image's own scale")
        XCTAssertEqual(s.segment(image, pixelSizeNm: 0.0505).scale, 1)  // within 2 %: as it is
        // The mask, made with the map at the image's own scale or from it after resampling back,
        // is the map's threshold.
        for result in [r, s.segment(image, pixelSizeNm: 0.0505)] {
            XCTAssertEqual(result.mask, BinaryMask(result.probability, threshold: result.threshold))
        }
        XCTAssertEqual(s.segment(image, pixelSizeNm: nil).scale, 1)
    }

    /// A small untrained model without a pixel size, for what the pipeline does around the network.
    static func tinyModel() -> Model {
        let net = UNet(config: UNetConfig(widths: [2, 3], centreWidth: 4), seed: 1)
        return Model(network: net, metadata: ModelMetadata(config: net.config, trainingPixelSizeNm: nil, preprocessing: .robust,
                                                           provenance: "test"))
    }

    /// The 8 symmetries of test-time augmentation: each undone by its inverse on a non-square
    /// image, all 8 different, a quarter turn where its doc says; and the averaged map turns
    /// with the image (the mean over the group does not depend on how the image was turned in),
    /// while it differs from the plain map.
    func testTestTimeAugmentationAveragesTheEightSymmetries() throws {
        let w = 5, h = 3
        let image = FloatImage(width: w, height: h, pixels: (0..<(w * h)).map { Float($0 * $0 % 17) + Float($0) / 10 })
        var seen: [[Float]] = []
        for k in 0..<8 {
            let turned = Dihedral(k).apply(image)
            XCTAssertEqual(Dihedral(k).inverse(turned).pixels, image.pixels, "k = \(k)")
            XCTAssertEqual([turned.width, turned.height], k & 1 == 0 ? [w, h] : [h, w], "k = \(k)")
            XCTAssertFalse(seen.contains(turned.pixels), "k = \(k) repeats another")
            seen.append(turned.pixels)
        }
        let quarter = Dihedral(1).apply(image)
        for y in 0..<h { for x in 0..<w { XCTAssertEqual(quarter.pixels[x * h + (h - 1 - y)], image.pixels[y * w + x]) } }

        let model = Self.tinyModel()
        var rng = SeededRandom(seed: 9)
        let side = 64
        let micrograph = FloatImage(width: side, height: side, pixels: (0..<(side * side)).map { i in
            let x = Float(i % side), y = Float(i / side)
            return 100 + 20 * sin(x * 0.9) * cos(y * 0.4) + 5 * rng.nextGaussian()
        })
        var options = SegmentationOptions(threshold: 0.5)
        options.testTimeAugmentation = true
        let tta = Segmenter(model: model, options: options)
        let p = tta.segment(micrograph, pixelSizeNm: nil).probability
        let plain = Segmenter(model: model, options: SegmentationOptions(threshold: 0.5)).segment(micrograph, pixelSizeNm: nil).probability
        XCTAssertGreaterThan(zip(p.pixels, plain.pixels).map { abs($0 - $1) }.max() ?? 0, 1e-3, "TTA changed nothing")
        for k in [1, 4, 5] {
            let turned = tta.segment(Dihedral(k).apply(micrograph), pixelSizeNm: nil).probability
            let back = Dihedral(k).inverse(turned)
            XCTAssertLessThan(zip(back.pixels, p.pixels).map { abs($0 - $1) }.max() ?? 1, 1e-5, "k = \(k)")
        }
    }

    /// NaN and ±∞ are handled by the pipeline itself, for every caller (`evaluate` calls it
    /// directly): filled with pixels drawn from the others, never particle, marked and noted. A threshold below every
    /// probability makes every other pixel particle, so only that rule keeps them out.
    func testNonFinitePixelsAreNeverParticleForEveryCaller() {
        let model = Self.tinyModel()
        var pixels: [Float] = (0..<(64 * 64)).map { i -> Float in Float(i % 13) + Float(i / 64 % 7) }
        for x in 0..<64 { pixels[10 * 64 + x] = .nan; pixels[20 * 64 + x] = .infinity }
        let s = Segmenter(model: model, options: SegmentationOptions(threshold: -1))
        let r = s.segment(FloatImage(width: 64, height: 64, pixels: pixels), pixelSizeNm: nil)
        XCTAssertEqual(r.nonFinite?.foregroundCount, 128)
        XCTAssertTrue(r.probability.pixels.allSatisfy { $0.isFinite })
        XCTAssertEqual(r.mask.foregroundCount, 64 * 64 - 128)
        XCTAssertEqual(r.notes.first, "128 pixels are NaN or infinite: filled with pixels drawn from the others, never particle")
        // Nothing but NaN and ±∞: said so (it was "every pixel is 0").
        let none = s.segment(FloatImage(width: 64, height: 64, pixels: (0..<(64 * 64)).map { $0 % 3 == 0 ? .nan : $0 % 3 == 1 ? .infinity : -.infinity }),
                             pixelSizeNm: nil)
        XCTAssertEqual(none.notes, ["every pixel is NaN or infinite: nothing to segment, no particles"])
        XCTAssertEqual(none.mask.foregroundCount, 0)
    }

    /// A particle is cut by the padding and by NaN pixels that reach the image's edges, not by
    /// a dead pixel inside the image; the bar below `specimenRows` is outside too.
    func testWhatCutsAParticle() {
        let model = Self.tinyModel()
        var rng = SeededRandom(seed: 4)
        var pixels = (0..<(64 * 64)).map { _ in 100 + 10 * rng.nextGaussian() }
        for x in 0..<64 { pixels[3 * 64 + x] = .nan }  // a NaN row, edge to edge
        pixels[40 * 64 + 30] = .nan  // a dead pixel
        let s = Segmenter(model: model, options: SegmentationOptions(threshold: -1))
        let r = s.segment(FloatImage(width: 64, height: 64, pixels: pixels), pixelSizeNm: nil, specimenRows: 60)
        XCTAssertEqual(r.nonFinite?.foregroundCount, 65)
        XCTAssertEqual(r.cut?.foregroundCount, 64)
        XCTAssertEqual(r.cut?.values[40 * 64 + 30], 0)
        XCTAssertEqual(r.bar?.foregroundCount, 4 * 64)
        XCTAssertEqual(r.outside?.foregroundCount, 65 + 4 * 64)
        XCTAssertEqual(r.outsidePixels, 65 + 4 * 64)
        XCTAssertEqual(r.mask.foregroundCount, 64 * 64 - 65 - 4 * 64)
    }

    /// NaN pixels inside the image cut a particle when they lie beside its edge (a block of
    /// them hides where it ends), not when a particle wholly encloses them (dead pixels); the
    /// measurement then flags that particle as touching the border.
    func testNaNBlockBesideAParticleCutsIt() throws {
        let w = 48, h = 40
        var mask = [UInt8](repeating: 0, count: w * h), nonFinite = [UInt8](repeating: 0, count: w * h)
        for y in 10..<20 { for x in 10..<20 { mask[y * w + x] = 1 } }  // particle A, a 10² square
        for y in 10..<20 { for x in 30..<40 { mask[y * w + x] = 1 } }  // particle B
        for y in 12..<16 { for x in 20..<24 { nonFinite[y * w + x] = 1 } }  // a NaN block on A's right edge
        mask[15 * w + 35] = 0; nonFinite[15 * w + 35] = 1  // a dead pixel inside B
        // and one just inside B's corner, cut off: carbon only diagonally beside it (its 4
        // neighbours, the ones the measurement looks at, are B's)
        mask[10 * w + 30] = 0
        mask[11 * w + 31] = 0; nonFinite[11 * w + 31] = 1
        nonFinite[30 * w + 5] = 1  // a dead pixel in the carbon
        var r = SegmentedImage(probability: FloatImage(width: w, height: h, pixels: [Float](repeating: 0, count: w * h)),
                               mask: BinaryMask(width: w, height: h, values: mask), threshold: 0.5, pixelSizeNm: nil,
                               pixelSizeSource: .none)
        r.nonFinite = BinaryMask(width: w, height: h, values: nonFinite)
        let cut = try XCTUnwrap(r.cut)
        XCTAssertEqual(cut.foregroundCount, 16 + 1)  // the block and the carbon's dead pixel
        XCTAssertEqual(cut.values[15 * w + 35], 0)
        XCTAssertEqual(cut.values[11 * w + 31], 0)
        let m = ParticleMeasurement(mask: r.mask, minimumAreaPx: 1, outside: cut)
        XCTAssertEqual(m.particles.map(\.touchesBorder), [true, false])
    }

    /// Flat padding at the edges (an aligned sum's fill of one value) is filled like the rest,
    /// never particle, marked and noted, down to a strip a few pixels wide; a flat block inside
    /// the image, or a flat half-disc at an edge (a saturated vacuum hole), is not padding.
    func testFlatPaddingAtTheEdgesIsNeverParticle() {
        let model = Self.tinyModel()
        var rng = SeededRandom(seed: 2)
        var pixels = (0..<(96 * 80)).map { _ in 100 + 10 * rng.nextGaussian() }
        for y in 0..<80 { for x in 0..<96 where x < 20 || y < 16 || x >= 90 { pixels[y * 96 + x] = 0 } }  // a fill, 6 px on the right
        for y in 40..<60 { for x in 50..<70 { pixels[y * 96 + x] = 7 } }  // flat, but inside
        for y in 60..<80 { for x in 30..<70 where (x - 50) * (x - 50) + (y - 80) * (y - 80) < 19 * 19 { pixels[y * 96 + x] = 255 } }
        let s = Segmenter(model: model, options: SegmentationOptions(threshold: -1))
        let r = s.segment(FloatImage(width: 96, height: 80, pixels: pixels), pixelSizeNm: nil)
        let padding = 20 * 80 + 76 * 16 + 6 * 64
        XCTAssertEqual(r.padding?.foregroundCount, padding)
        XCTAssertNil(r.nonFinite)
        XCTAssertEqual(r.outside?.values, r.padding?.values)
        XCTAssertEqual(r.mask.foregroundCount, 96 * 80 - padding)
        XCTAssertEqual(r.padding?.values[50 * 96 + 60], 0)
        XCTAssertEqual(r.padding?.values[79 * 96 + 50], 0, "a half-disc at the edge is no fill")
        XCTAssertEqual(r.notes.first, "\(padding) pixels are flat padding at the image's edges (one value, reaching the edges across and down): filled with pixels drawn from the others, never particle")
        // An image of flat blocks only has nothing to segment; one of one value says its value.
        var blocks = [Float](repeating: 3, count: 96 * 80)
        for i in 0..<(96 * 40) { blocks[i] = 9 }
        let b = s.segment(FloatImage(width: 96, height: 80, pixels: blocks), pixelSizeNm: nil)
        XCTAssertEqual(b.mask.foregroundCount, 0)
        XCTAssertEqual(b.notes, ["every pixel lies in flat blocks of one value (padding): nothing to segment, no particles"])
        let one = s.segment(FloatImage(width: 96, height: 80, pixels: [Float](repeating: 3, count: 96 * 80)), pixelSizeNm: nil)
        XCTAssertEqual(one.notes, ["every pixel is 3: nothing to segment, no particles"])
        // One value around a NaN block: no pixel is left to draw a fill from (it said "every pixel is 0").
        var framed = [Float](repeating: 5, count: 96 * 80)
        for y in 30..<40 { for x in 40..<60 { framed[y * 96 + x] = .nan } }
        let f = s.segment(FloatImage(width: 96, height: 80, pixels: framed), pixelSizeNm: nil)
        XCTAssertEqual(f.notes, ["every pixel is NaN, infinite or flat padding: nothing to segment, no particles"])
        XCTAssertEqual(f.mask.foregroundCount, 0)
    }
}

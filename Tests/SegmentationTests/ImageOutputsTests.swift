import Foundation
import MicrographIO
import ParticleAnalysis
import Preprocessing
import Segmentation
import XCTest

/// What `segment` writes for an image, checked on results made here.
final class ImageOutputsTests: XCTestCase {
    /// More particles than uint16 numbers: the labels come out as float32 (exact ids), and the
    /// image's other outputs are written as usual (they were all dropped before). The area
    /// fraction is the particles' (holes filled, small objects dropped), the mask fraction the
    /// threshold's.
    func testManyParticlesAndTheAreaFractions() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("outputs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let w = 600, h = 460
        var p = FloatImage(width: w, height: h)
        for y in stride(from: 0, to: h, by: 2) { for x in stride(from: 0, to: w, by: 2) { p[x: x, y: y] = 0.9 } }
        let mask = BinaryMask(p, threshold: 0.5)
        let result = SegmentedImage(probability: p, mask: mask, threshold: 0.5, pixelSizeNm: 0.05, pixelSizeSource: .file)
        let (measured, summary) = try ImageOutputs.write(
            name: "dots", into: dir, raw: p, result: result, probability: .none,
            measure: { _, _ in ParticleMeasurement(mask: mask, probability: p.pixels, pixelSizeNm: 0.05, minimumAreaNm2: 0, minimumAreaPx: 1) },
            summarise: { m, seconds, maskPixels in  // the mask's pixels as counted while its bytes were written
                ImageSummary(image: "dots", input: "dots", width: w, height: h, particles: m.particles, maskPixels: maskPixels, model: "test",
                             threshold: 0.5, pixelSizeNm: 0.05, pixelSizeSource: "file", scale: 1, seconds: 0, timings: seconds)
            })
        XCTAssertEqual(measured.particles.count, 300 * 230)
        let labels = try MicrographReader.open(dir.appendingPathComponent("dots_labels.tif"))[0]
        XCTAssertEqual(labels.pixelType, .float32)
        let values = labels.data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        XCTAssertEqual(values, measured.labels.labels.map(Float.init))
        for file in ["dots_mask.png", "dots_mask.tif", "dots_overlay.png", "dots_particles.csv", "dots.summary.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path), file)
        }
        XCTAssertEqual(summary.areaFraction, Double(300 * 230) / Double(w * h), accuracy: 1e-12)
        XCTAssertEqual(summary.maskFraction ?? 0, Double(300 * 230) / Double(w * h), accuracy: 1e-12)
        // A ring: its hole is filled, so the particle's area (and the area fraction) exceeds the mask's.
        var ring = BinaryMask(width: 40, height: 40)
        for y in 0..<40 { for x in 0..<40 { let r2 = (x - 20) * (x - 20) + (y - 20) * (y - 20); if r2 < 225 && r2 >= 49 { ring.values[y * 40 + x] = 1 } } }
        let filled = ParticleMeasurement(mask: ring, minimumAreaPx: 1).particles
        let s = ImageSummary(image: "ring", input: "ring", width: 40, height: 40, particles: filled, maskPixels: ring.foregroundCount, model: "test",
                             threshold: 0.5, pixelSizeNm: nil, pixelSizeSource: "none", scale: 1, seconds: 0, timings: [:])
        XCTAssertGreaterThan(s.areaFraction, s.maskFraction ?? 1)
        // Without a calibration the nm fields are there, as null.
        let json = String(decoding: try JSONEncoder().encode(s), as: UTF8.self)
        XCTAssertTrue(json.contains("\"mean_eq_diameter_nm\":null") && json.contains("\"pixel_size_nm\":null"), json)

        // A whole disc and one cut in half by the border: both counted and in the area fraction,
        // only the whole one sized (the cut one's area is not its size).
        var two = BinaryMask(width: 60, height: 40)
        for y in 0..<40 { for x in 0..<60 where (x - 20) * (x - 20) + (y - 20) * (y - 20) <= 100 || (x - 60) * (x - 60) + (y - 20) * (y - 20) <= 100 {
            two.values[y * 60 + x] = 1
        } }
        let discs = ParticleMeasurement(mask: two, pixelSizeNm: 0.1, minimumAreaPx: 1).particles
        XCTAssertEqual(discs.map(\.touchesBorder), [false, true])
        let t = ImageSummary(image: "two", input: "two", width: 60, height: 40, particles: discs, maskPixels: two.foregroundCount, model: "test",
                             threshold: 0.5, pixelSizeNm: 0.1, pixelSizeSource: "file", scale: 1, seconds: 0, timings: [:])
        XCTAssertEqual(t.particles, 2)
        XCTAssertEqual(t.particlesCut, 1)
        XCTAssertEqual(t.areaFraction, Double(discs[0].areaPx + discs[1].areaPx) / (60 * 40), accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(t.meanEqDiameterPx), discs[0].equivalentDiameterPx, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(t.medianEqDiameterNm), discs[0].equivalentDiameterPx * 0.1, accuracy: 1e-12)
        XCTAssertTrue(String(decoding: try JSONEncoder().encode(t), as: UTF8.self).contains("\"particles_cut\":1"))
    }

    /// The split of touching particles runs through the writers' queue (the other thread joins in
    /// between its writes): the same particles as measured alone, every file written.
    func testMeasuringThroughTheWritersQueue() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("outputs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let mask = ParticleMeasurementTests.crowdedDiscs(seed: 3)
        let p = FloatImage(width: mask.width, height: mask.height, pixels: mask.values.map { Float($0) * 0.8 + 0.1 })
        let result = SegmentedImage(probability: p, mask: mask, threshold: 0.5, pixelSizeNm: 0.05, pixelSizeSource: .file)
        func measure(_ parallel: ParallelFor, labelled: (ComponentLabels) -> Void = { _ in }) -> ParticleMeasurement {
            ParticleMeasurement(mask: mask, probability: p.pixels, pixelSizeNm: 0.05, minimumAreaNm2: 0.5, splitTouching: true,
                                parallel: parallel, labelled: labelled)
        }
        var piecesRun = 0, labelledEarly: ComponentLabels?
        let (measured, _) = try ImageOutputs.write(
            name: "crowd", into: dir, raw: p, result: result, probability: .tif,
            measure: { parallel, labelled in
                withoutActuallyEscaping(parallel) { parallel in
                    // The split's pieces: those run before the labels are handed over (the measuring's come after).
                    measure({ count, piece in if labelledEarly == nil { piecesRun += count }; parallel(count, piece) },
                            labelled: { labelledEarly = $0; labelled($0) })
                }
            },
            summarise: { m, seconds, _ in
                ImageSummary(image: "crowd", input: "crowd", width: mask.width, height: mask.height, particles: m.particles, maskPixels: mask.foregroundCount,
                             model: "test", threshold: 0.5, pixelSizeNm: 0.05, pixelSizeSource: "file", scale: 1, seconds: 0, timings: seconds)
            })
        XCTAssertGreaterThan(piecesRun, 1, "the split ran through the queue")
        let alone = measure(serially)
        XCTAssertEqual(measured.labels, alone.labels)
        XCTAssertEqual(labelledEarly, alone.labels, "the labels handed over before measuring are the final ones")
        // The overlay: outlines (queued before the measures) and ids, as drawn in one go.
        let drawn = dir.appendingPathComponent("drawn_overlay.png")
        try Overlay.render(p, labels: alone.labels, particles: alone.particles).write(to: drawn)
        XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("crowd_overlay.png")), try Data(contentsOf: drawn))
        XCTAssertEqual(measured.particles.map(\.csvFields), alone.particles.map(\.csvFields))
        for file in ImageOutputs.files(for: "crowd", probability: .tif) {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path), file)
        }
        let labels = try MicrographReader.open(dir.appendingPathComponent("crowd_labels.tif"))[0]
        XCTAssertEqual(labels.data.withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)) }.map(Int32.init), alone.labels.labels)
        // The probability map shows from 0 to 1 in Fiji (its ImageJ description), whatever its values' range.
        let prob = try Data(contentsOf: dir.appendingPathComponent("crowd_prob.tif"))
        XCTAssertNotNil(prob.range(of: Data("min=0.0\nmax=1.0\n".utf8)), "the ImageJ display range of the probability map")
        XCTAssertEqual(p.pixels.min(), 0.1)
    }

    /// An image name with a comma or quote is one CSV field in the run's particles.csv.
    /// The probability map is written on a thread of its own: when that write fails (its name
    /// is taken by a folder, here), the image fails with its error and none of its outputs is
    /// left behind (the folder, the user's, stays).
    func testAFailedProbabilityWriteFailsTheImageAndLeavesNothing() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("outputs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("blocked_prob.tif"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let side = 1024  // a 4 MiB map: written directly where the file system allows it
        var p = FloatImage(width: side, height: side)
        for y in 100..<300 { for x in 100..<300 { p[x: x, y: y] = 0.9 } }
        let mask = BinaryMask(p, threshold: 0.5)
        let result = SegmentedImage(probability: p, mask: mask, threshold: 0.5, pixelSizeNm: 0.05, pixelSizeSource: .file)
        XCTAssertThrowsError(try ImageOutputs.write(
            name: "blocked", into: dir, raw: p, result: result, probability: .tif,
            measure: { parallel, labelled in ParticleMeasurement(mask: mask, pixelSizeNm: 0.05, parallel: parallel, labelled: labelled) },
            summarise: { m, seconds, maskPixels in
                ImageSummary(image: "blocked", input: "blocked", width: side, height: side, particles: m.particles, maskPixels: maskPixels,
                             model: "test", threshold: 0.5, pixelSizeNm: 0.05, pixelSizeSource: "file", scale: 1, seconds: 0, timings: seconds)
            })) { error in
            XCTAssertTrue("\(error)".contains("blocked_prob.tif"), "\(error)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["blocked_prob.tif"])
    }

    func testRunTableQuotesImageNames() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("report-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var disc = BinaryMask(width: 20, height: 20)
        for y in 5..<12 { for x in 5..<12 { disc.values[y * 20 + x] = 1 } }
        let particles = ParticleMeasurement(mask: disc, pixelSizeNm: 0.1).particles
        var summaries: [ImageSummary] = []
        for name in ["grid,A1", "say \"hi\""] {
            let rows = [Particle.csvHeader.joined(separator: ",")] + particles.map { $0.csvFields.joined(separator: ",") }
            try (rows.joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("\(name)_particles.csv"), atomically: true, encoding: .utf8)
            summaries.append(ImageSummary(image: name, input: name, width: 20, height: 20, particles: particles, maskPixels: disc.foregroundCount, model: "test",
                                          threshold: 0.5, pixelSizeNm: 0.1, pixelSizeSource: "file", scale: 1, seconds: 0, timings: [:]))
        }
        try RunReport(summaries: summaries, settings: [:]).write(into: dir)
        let lines = try String(contentsOf: dir.appendingPathComponent("particles.csv"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 3)
        XCTAssertTrue(lines[1].hasPrefix("\"grid,A1\",1,"), String(lines[1]))
        XCTAssertTrue(lines[2].hasPrefix("\"say \"\"hi\"\"\",1,"), String(lines[2]))
    }

    /// Image names in the order a person reads them (frames 2 before 10).
    func testNaturalOrder() {
        let names = ["tilt_10", "tilt_2", "tilt_1", "a", "tilt_0", "20240105_grid2", "20240105_grid10", "tilt_02"]
        XCTAssertEqual(names.sorted(by: naturalOrder), ["20240105_grid2", "20240105_grid10", "a", "tilt_0", "tilt_1", "tilt_2", "tilt_02", "tilt_10"])
    }
}

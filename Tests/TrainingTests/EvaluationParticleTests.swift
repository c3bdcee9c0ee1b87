import Foundation
import MicrographIO
import Preprocessing
import XCTest
import Training

/// The particle block of `evaluate` (the median diameter error and the count agreement that the
/// README's results quote), on two hand-drawn images whose every particle is known: the
/// prediction of one is its true mask, the other's particles are drawn larger or left out.
final class EvaluationParticleTests: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("nf-eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    static let side = 64
    /// Discs (centre x, centre y, radius) drawn into a mask.
    static func mask(_ discs: [(Int, Int, Int)]) -> BinaryMask {
        var v = [UInt8](repeating: 0, count: side * side)
        for (cx, cy, r) in discs { for y in 0..<side { for x in 0..<side where (x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r {
            v[y * side + x] = 1
        } } }
        return BinaryMask(width: side, height: side, values: v)
    }
    /// The pixels of one disc, counted, and the diameter of the disc of that area.
    static func diameterPx(_ r: Int) -> Double {
        let area = mask([(side / 2, side / 2, r)]).values.reduce(0) { $0 + Int($1) }
        return 2 * (Double(area) / Double.pi).squareRoot()
    }

    /// Image A: two particles, predicted exactly. Image B: particles of radius 5 and 7 predicted
    /// at 6 and 8, and a third (radius 5) not predicted. The PNGs carry no pixel size.
    func writeData() throws -> (URL, [String: BinaryMask]) {
        let truthA = [(16, 16, 6), (44, 40, 6)], truthB = [(16, 16, 5), (44, 44, 7), (48, 14, 5)]
        let predicted = ["a": Self.mask(truthA), "b": Self.mask([(16, 16, 6), (44, 44, 8)])]
        let pixelNm = 0.1
        var manifest = ""
        for (name, discs) in [("a", truthA), ("b", truthB)] {
            let m = Self.mask(discs)
            try PNGWriter.writeGrey8(m.values.map { $0 * 255 }, width: Self.side, height: Self.side,
                                     to: tmp.appendingPathComponent("\(name)_mask.png"))
            try PNGWriter.writeGrey8(m.values.map { 60 + $0 * 100 }, width: Self.side, height: Self.side,
                                     to: tmp.appendingPathComponent("\(name).png"))
            var particles = discs.map { d in
                "{\"eq_diameter_nm\": \(Self.diameterPx(d.2) * pixelNm), \"center_px\": [\(d.0), \(d.1)], \"touches_border\": false}"
            }
            if name == "a" {
                // Left out of the comparison: a particle on the border, one without a centre and one
                // of diameter 0 (no relative error); and one whose centre is absurd (it must count
                // as not found, not trap).
                particles.append("{\"eq_diameter_nm\": 9.0, \"center_px\": [0, 0], \"touches_border\": true}")
                particles.append("{\"eq_diameter_nm\": 9.0, \"touches_border\": false}")
                particles.append("{\"eq_diameter_nm\": 0, \"center_px\": [16, 16], \"touches_border\": false}")
                particles.append("{\"eq_diameter_nm\": 2.0, \"center_px\": [1e300, -1e300], \"touches_border\": false}")
            }
            manifest += "{\"name\": \"\(name)\", \"material\": \"M\(name)\", \"n_particles\": \(discs.count), \"particles\": [\(particles.joined(separator: ", "))]}\n"
        }
        try manifest.write(to: tmp.appendingPathComponent("manifest.jsonl"), atomically: true, encoding: .utf8)
        return (tmp, predicted)
    }

    func testParticleScoresAtTheGivenPixelSize() throws {
        let (folder, predicted) = try writeData()
        var evaluation = Evaluation(data: [folder])
        evaluation.pixelSizeOverride = 0.1
        let report = try evaluation.run(model: "drawn", method: "unet", threshold: 0.5) { try XCTUnwrap(predicted[$0.name]) }
        let ps = report.particles
        // Compared: A's two (error 0) and B's two found ones; missed: B's third and A's absurd one.
        XCTAssertEqual(ps.particlesCompared, 4)
        XCTAssertEqual(ps.particlesMissed, 2)
        let e5 = abs(Self.diameterPx(6) - Self.diameterPx(5)) / Self.diameterPx(5)
        let e7 = abs(Self.diameterPx(8) - Self.diameterPx(7)) / Self.diameterPx(7)
        // Errors sorted: 0, 0, min, max: the median is the mean of the middle two.
        XCTAssertEqual(try XCTUnwrap(ps.medianRelativeDiameterError), min(e5, e7) / 2, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(ps.countsMatchManifest), 0.5)  // A: 2 of 2; B: 2 of 3
        XCTAssertEqual(ps.countsMatchMask, 0.5)
        let b = try XCTUnwrap(report.perImage.first { $0.image == "b" })
        XCTAssertEqual(b.pixelSizeNm, 0.1)
        XCTAssertEqual(b.particlesFound, 2); XCTAssertEqual(b.particlesTrue, 3); XCTAssertEqual(b.componentsTrue, 3)
        XCTAssertEqual(b.diameters.count, 3)
        XCTAssertEqual(try XCTUnwrap(b.diameters[0].foundNm), Self.diameterPx(6) * 0.1, accuracy: 1e-9)
        XCTAssertNil(b.diameters[2].foundNm)
        XCTAssertEqual(Set(report.groups.keys), ["Ma", "Mb"])
        XCTAssertEqual(report.pooled.images, 2)
        // The JSON has every key, the threshold null where the method has none.
        var bragg = report
        bragg.threshold = nil
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(bragg)) as? [String: Any])
        XCTAssertEqual(Set(json.keys), ["model", "method", "threshold", "pooled", "groups", "particles", "images", "settings"])
        XCTAssertTrue(json["threshold"] is NSNull)
    }

    /// Without a pixel size (these PNGs have none) nothing can be sized: no particle is compared,
    /// and none is counted as not found.
    func testUncalibratedImagesAreNotSized() throws {
        let (folder, predicted) = try writeData()
        let report = try Evaluation(data: [folder]).run(model: "drawn", method: "unet", threshold: 0.5) { try XCTUnwrap(predicted[$0.name]) }
        XCTAssertNil(report.particles.medianRelativeDiameterError)
        XCTAssertEqual(report.particles.particlesCompared, 0)
        XCTAssertEqual(report.particles.particlesMissed, 0)
        XCTAssertTrue(report.perImage.allSatisfy { $0.diameters.isEmpty })
        XCTAssertNil(report.perImage[0].pixelSizeNm)
        // Its JSON keeps every key, null where there is no value.
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(report)) as? [String: Any])
        let particles = try XCTUnwrap(json["particles"] as? [String: Any])
        XCTAssertTrue(particles["median_relative_diameter_error"] is NSNull)
        let first = try XCTUnwrap((json["images"] as? [[String: Any]])?.first)
        XCTAssertTrue(first["pixel_size_nm"] is NSNull)
        // Counting does not need the scale.
        XCTAssertEqual(try XCTUnwrap(report.particles.countsMatchManifest), 0.5)
    }
}

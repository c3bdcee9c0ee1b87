import Foundation
import MicrographIO
import NanoTensor
import ParticleAnalysis
import Preprocessing
import Segmentation
import XCTest

/// The overlay: contrast-stretched grey levels, outlines and ids on a palette image, and the
/// palette PNG it is written as.
final class OverlayTests: XCTestCase {
    /// A left-to-right ramp (value = x) and a disc of `radius` at the centre, measured.
    func rampWithDisc(_ w: Int, _ h: Int, radius r: Int) -> (FloatImage, ParticleMeasurement) {
        let raw = FloatImage(width: w, height: h, pixels: (0..<(w * h)).map { Float($0 % w) })
        var mask = BinaryMask(width: w, height: h)
        for y in 0..<h { for x in 0..<w where (x - w / 2) * (x - w / 2) + (y - h / 2) * (y - h / 2) < r * r { mask.values[y * w + x] = 1 } }
        return (raw, ParticleMeasurement(mask: mask))
    }

    /// The outlines (drawn from sampled rows) against the plain test of each shown pixel and its
    /// four neighbours `step` away, on random blobs touching the edges, shown whole (step 1, a
    /// wide panorama too) and shrunk (steps 2 and 3: images over 2048² and 2 · 2048² px), with
    /// the ids drawn the same.
    func testOutlinesMatchThePlainNeighbourTest() {
        var rng = SplitMix64(seed: 5)
        for (w, h, expectedStep) in [(300, 200, 1), (9000, 37, 1), (4100, 1100, 2), (6200, 2900, 3), (5, 3, 1)] {
            var mask = BinaryMask(width: w, height: h)
            for _ in 0..<12 {
                let cx = Int(rng.next() % UInt64(w)), cy = Int(rng.next() % UInt64(h)), r = 2 + Int(rng.next() % 20)
                for y in max(0, cy - r)..<min(h, cy + r) { for x in max(0, cx - r)..<min(w, cx + r) where (x - cx) * (x - cx) + (y - cy) * (y - cy) < r * r {
                    mask.values[y * w + x] = 1
                } }
            }
            let raw = FloatImage(width: w, height: h, pixels: (0..<(w * h)).map { _ in rng.nextFloat() })
            let m = ParticleMeasurement(mask: mask)
            let drawn = Overlay.render(raw, labels: m.labels, particles: [])
            var plain = Overlay.background(raw)
            // The smallest whole step that shows at most 2048² pixels.
            let step = (1...).first { ((w + $0 - 1) / $0) * ((h + $0 - 1) / $0) <= Overlay.maxPixels }!
            XCTAssertEqual(step, expectedStep, "\(w)×\(h)")
            XCTAssertEqual(Overlay.step(width: w, height: h), step, "\(w)×\(h)")
            XCTAssertEqual(plain.width, (w + step - 1) / step, "\(w)×\(h)")
            let L = m.labels.labels
            for oy in 0..<plain.height { for ox in 0..<plain.width {
                let x = ox * step, y = oy * step, i = y * w + x, l = L[i]
                if l != 0 && (x < step || y < step || x + step >= w || y + step >= h
                    || L[i - step] != l || L[i + step] != l || L[i - step * w] != l || L[i + step * w] != l) {
                    plain.indices[oy * plain.width + ox] = Overlay.outline
                }
            } }
            XCTAssertEqual(drawn.indices, plain.indices, "\(w)×\(h), step \(step)")
            XCTAssertTrue(drawn.indices.contains(Overlay.outline) || m.particles.isEmpty, "\(w)×\(h)")
        }
    }

    /// A left-to-right ramp with one disc: background grey rises with the ramp (0 at the left
    /// edge's 0.5 % level, the top grey at the right), the disc's edge is outlined, its interior
    /// keeps the micrograph, its id is drawn; the PNG reads back as the same colours.
    func testGreyLevelsOutlineAndIdRoundTrip() throws {
        let w = 200, h = 120
        let (raw, m) = rampWithDisc(w, h, radius: 30)
        XCTAssertEqual(m.particles.count, 1)
        let c = Overlay.render(raw, labels: m.labels, particles: m.particles)
        XCTAssertEqual(c.width, w); XCTAssertEqual(c.height, h)
        XCTAssertEqual(c.palette.count, 256)
        XCTAssertEqual(c.indices[5 * w + 0], 0, "the 0.5 % level is black")
        XCTAssertEqual(c.indices[5 * w + w - 1], UInt8(Overlay.greyLevels - 1), "the 99.5 % level is white")
        let row = (0..<w).map { c.indices[5 * w + $0] }
        XCTAssertEqual(row, row.sorted(), "grey rises with the ramp")
        XCTAssertEqual(c.indices[60 * w + 71], Overlay.outline, "the disc's left edge is outlined")
        XCTAssertEqual(c.indices[60 * w + 72] < Overlay.outline, true, "inside the edge the micrograph shows")
        XCTAssertTrue(c.indices.contains(Overlay.label), "the id is drawn")
        XCTAssertEqual(Overlay.palette[Int(Overlay.outline)].0, 255)

        let url = FileManager.default.temporaryDirectory.appendingPathComponent("overlay-\(getpid()).png")
        defer { try? FileManager.default.removeItem(at: url) }
        try c.write(to: url)
        let back = try PNGReader.read(url)
        XCTAssertEqual(back.channels, 3)
        XCTAssertEqual(back.data, c.rgb, "a palette PNG reads back as the palette's colours")
    }

    /// A report's thumbnail keeps 1-pixel outlines (the box's outline colour wins over grey) and
    /// the mean grey elsewhere, within the requested size.
    func testThumbnailKeepsOutlinesAndShrinks() throws {
        let (raw, m) = rampWithDisc(1000, 600, radius: 150)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("overlay-thumb-\(getpid()).png")
        defer { try? FileManager.default.removeItem(at: url) }
        try Overlay.render(raw, labels: m.labels, particles: m.particles).write(to: url)
        let png = try XCTUnwrap(Overlay.thumbnail(of: url, side: 256))
        let thumbURL = url.deletingPathExtension().appendingPathExtension("small.png")
        defer { try? FileManager.default.removeItem(at: thumbURL) }
        try Data(png).write(to: thumbURL)
        let t = try PNGReader.read(thumbURL)
        XCTAssertEqual(t.width, 250); XCTAssertEqual(t.height, 150)
        func colour(_ x: Int, _ y: Int) -> (UInt8, UInt8, UInt8) { let i = 3 * (y * t.width + x); return (t.data[i], t.data[i + 1], t.data[i + 2]) }
        // The disc's left edge (x = 351 in the overlay) falls in thumbnail column 87, row 75.
        XCTAssertEqual(colour(87, 75).0, 255); XCTAssertEqual(colour(87, 75).2, 40, "the outline survives the shrinking")
        let bg = colour(10, 10)
        XCTAssertTrue(bg.0 == bg.1 && bg.1 == bg.2, "background stays grey")
        XCTAssertNil(Overlay.thumbnail(of: url.appendingPathExtension("missing")))
    }

    func testIndexedPNGRefusesIndicesOutsideThePalette() {
        XCTAssertThrowsError(try PNGWriter.encodeIndexed([0, 1, 2, 3], width: 2, height: 2, palette: [(0, 0, 0), (9, 9, 9)]))
        XCTAssertThrowsError(try PNGWriter.encodeIndexed([0], width: 1, height: 1, palette: []))
        XCTAssertThrowsError(try PNGWriter.encodeIndexed([0, 0], width: 1, height: 1, palette: [(0, 0, 0)]))
        XCTAssertNoThrow(try PNGWriter.encodeIndexed([0, 1, 1, 0], width: 2, height: 2, palette: [(0, 0, 0), (9, 9, 9)]))
    }
}

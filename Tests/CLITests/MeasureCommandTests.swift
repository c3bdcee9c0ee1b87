import Foundation
import MicrographIO
import ParticleAnalysis
import Segmentation
import XCTest

/// `nanofind measure` on the masks `segment` wrote gives segment's particle table (same
/// defaults, same columns): calibrated through the mask TIFF or --pixel-size, and in pixels for
/// an uncalibrated image.
final class MeasureCommandTests: XCTestCase {
    func testMeasureOnSegmentsMasksGivesSegmentsTable() throws {
        try XCTSkipUnless(DefaultModel.url != nil, "no default model in this checkout")
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let image = SyntheticMicrograph.discs(side: 1024, pixelSizeNm: 0.05, seed: 3)
        let calibrated = tmp.appendingPathComponent("discs.mrc"), plain = tmp.appendingPathComponent("plain.npy")
        try MRCWriter.write(image, to: calibrated)
        let values = image.data.withUnsafeBytes { $0.bindMemory(to: Int16.self).map { Float(Int16(littleEndian: $0)) } }
        try NPYFile.write(values, shape: [image.height, image.width], to: plain)
        for (input, stem, mask, flags) in [(calibrated, "discs", "discs_mask.tif", []), (calibrated, "discs", "discs_mask.png", ["--pixel-size", "0.05"]),
                                           (calibrated, "discs", "discs_labels.tif", []), (plain, "plain", "plain_mask.png", []),
                                           (plain, "plain", "plain_labels.tif", [])] as [(URL, String, String, [String])] {
            let out = tmp.appendingPathComponent(stem)
            if !FileManager.default.fileExists(atPath: out.path) {
                let r = try CLIRunner.run(["segment", input.path, "-o", out.path])
                XCTAssertEqual(r.status, 0, r.stderr)
            }
            let table = try String(contentsOf: out.appendingPathComponent("\(stem)_particles.csv"), encoding: .utf8)
                .split(separator: "\n").map(String.init)
            XCTAssertGreaterThan(table.count, 5, "segment found too few particles to compare: \(table)")
            let m = try CLIRunner.run(["measure", out.appendingPathComponent(mask).path] + flags)
            XCTAssertEqual(m.status, 0, m.stderr)
            // Sizes in pixels and the pixel limit for small objects are said, once per file.
            XCTAssertEqual(m.stderr.split(separator: "\n").filter { $0.contains("has no pixel size") }.count, stem == "plain" ? 1 : 0, m.stderr)
            let measured = m.stdout.split(separator: "\n").map(String.init)
            XCTAssertEqual(measured.first, "file,image," + table[0], mask)
            XCTAssertEqual(measured.count, table.count, "\(mask) \(flags): \(m.stdout)")
            // Every column but mean_probability (measure has no probability map).
            func columns(_ row: String) -> [Substring] { Array(row.split(separator: ",", omittingEmptySubsequences: false).dropLast()) }
            for (a, b) in zip(measured.dropFirst(), table.dropFirst()) {
                XCTAssertEqual(Array(columns(a).dropFirst(2)), columns(b), "\(mask) \(flags)")
                XCTAssertEqual(columns(a)[1], Substring(stem), "segment's name for the image, so the rows join its table")
            }
        }
    }

    /// A mask wider than the particle analysis takes (its row sums would overflow) is refused
    /// with one line naming the file, exit 2, before any measuring; so are segment and bragg.
    /// An inverted mask (particles 0 on a 255 background, as ImageJ's inverting LUT leaves
    /// them) is measured as it is, one particle covering the background, with a warning saying
    /// so; a mask of a few particles gets none.
    func testAMaskThatIsMostlyParticleIsToldOf() throws {
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let disc = (0..<(100 * 100)).map { i -> UInt8 in (i % 100 - 50) * (i % 100 - 50) + (i / 100 - 50) * (i / 100 - 50) < 400 ? 255 : 0 }
        let plain = tmp.appendingPathComponent("plain_mask.png"), inverted = tmp.appendingPathComponent("inverted_mask.png")
        try PNGWriter.writeGrey8(disc, width: 100, height: 100, to: plain)
        try PNGWriter.writeGrey8(disc.map { 255 - $0 }, width: 100, height: 100, to: inverted)
        let r = try CLIRunner.run(["measure", plain.path, inverted.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let warnings = r.stderr.split(separator: "\n").filter { !$0.contains("has no pixel size") }
        let share = 100 * Double(disc.filter { $0 == 0 }.count) / 10_000
        XCTAssertEqual(warnings, ["warning: \(inverted.path): \(String(format: "%.0f", share)) % of its pixels are particle; a mask marks particles (255 or 1) on a 0 background: is it inverted (ImageJ's inverting LUT)?"])
    }

    func testAMaskTooWideIsRefusedWithOneLine() throws {
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        // 64 rows (segment's smallest) of zeros in a deflated TIFF: a small file, 64 MB of pixels
        // once read. (A PNG this wide is refused by its reader already.)
        let wide = tmp.appendingPathComponent("wide.tif")
        try TIFFWriter.write(Micrograph(width: ParticleMeasurement.largestSide + 1, height: 64, pixelType: .uint8,
                                        data: [UInt8](repeating: 0, count: 64 * (ParticleMeasurement.largestSide + 1)), format: "tiff"),
                             to: wide, deflated: true)
        for args in [["measure", wide.path], ["segment", wide.path, "-o", tmp.appendingPathComponent("out").path],
                     ["bragg", wide.path, "--pixel-size", "0.05", "-o", tmp.appendingPathComponent("bragg").path]] {
            let r = try CLIRunner.run(args)
            XCTAssertEqual(r.status, 2, "\(args[0]): \(r.stderr)")
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(args[0]): \(r.stderr)")
            XCTAssertTrue(lines.first?.contains("wide.tif") == true && lines.first?.contains("\(ParticleMeasurement.largestSide)") == true,
                          "\(args[0]): \(r.stderr)")
        }
    }

    /// Masks as Fiji and drawing programs save them: a binary mask made with an inverting LUT
    /// (stored WhiteIsZero, 255 the particle) is read as stored, not inside out; a disc drawn
    /// with anti-aliased edges measures its area (pixels at least half covered), said in a
    /// warning; label images exported in colours (MorphoLibJ's Labels to RGB) keep touching
    /// particles apart, each colour one.
    func testMasksAsFijiAndDrawingProgramsSaveThem() throws {
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        func rows(_ args: [String]) throws -> (rows: [[Substring]], stderr: String) {
            let r = try CLIRunner.run(["measure", "--no-split-touching"] + args)
            XCTAssertEqual(r.status, 0, r.stderr)
            return (r.stdout.split(separator: "\n").dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false) }, r.stderr)
        }
        let header = Particle.csvHeader, area = 2 + header.firstIndex(of: "area_px")!
        // Two 10×10 squares (255) on 0 in a 60×40 8-bit TIFF, its Photometric patched to 0.
        var squares = [UInt8](repeating: 0, count: 60 * 40)
        for y in 5..<15 { for x in 5..<15 { squares[y * 60 + x] = 255 }; for x in 30..<40 { squares[(y + 20) * 60 + x] = 255 } }
        let inverted = tmp.appendingPathComponent("fiji_mask.tif")
        try TIFFWriter.write(Micrograph(width: 60, height: 40, pixelType: .uint8, data: squares, format: "TIFF"), to: inverted)
        try CLIRunner.markWhiteIsZero(inverted)
        XCTAssertEqual(try MicrographReader.open(inverted).first?.readInverted, true, "the reader shows it inverted, as an image")
        let fiji = try rows([inverted.path])
        XCTAssertEqual(fiji.rows.map { String($0[area]) }, ["100", "100"])
        XCTAssertFalse(fiji.stderr.contains("inverted"), fiji.stderr)
        // A disc of radius 12.3 px, each pixel its covered fraction (16 × 16 samples) of 255.
        let side = 40, r = 12.3, c = 19.7
        var disc = [Float](repeating: 0, count: side * side)
        for y in 0..<side {
            for x in 0..<side {
                var inside = 0
                for sy in 0..<16 { for sx in 0..<16 {
                    let dx = Double(x) + (Double(sx) + 0.5) / 16 - c, dy = Double(y) + (Double(sy) + 0.5) / 16 - c
                    if dx * dx + dy * dy <= r * r { inside += 1 }
                } }
                disc[y * side + x] = (255 * Float(inside) / 256).rounded()
            }
        }
        XCTAssertGreaterThan(Set(disc).count, 10, "graded edges")
        let drawn = tmp.appendingPathComponent("drawn.npy")
        try NPYFile.write(disc, shape: [side, side], to: drawn)
        let aa = try rows([drawn.path])
        XCTAssertEqual(aa.rows.count, 1)
        let measured = try XCTUnwrap(Double(String(aa.rows.first?[area] ?? "")))
        XCTAssertEqual(measured, Double.pi * r * r, accuracy: 0.02 * Double.pi * r * r, "every non-zero pixel gave 11 % more")
        XCTAssertTrue(aa.stderr.contains("\(drawn.path): a mask with graded edges (more than one non-zero value, most at the largest): particle where at least half the largest value"), aa.stderr)
        // Labels in colours: red and green squares touching, a blue one apart.
        var rgb = [UInt8](repeating: 0, count: 60 * 40 * 3)
        func paint(_ x0: Int, _ y0: Int, _ colour: [UInt8]) {
            for y in y0..<(y0 + 10) { for x in x0..<(x0 + 10) { for k in 0..<3 { rgb[(y * 60 + x) * 3 + k] = colour[k] } } }
        }
        paint(5, 5, [255, 0, 0]); paint(15, 5, [0, 255, 0]); paint(40, 25, [0, 0, 255])
        let coloured = tmp.appendingPathComponent("labels_rgb.png")
        try PNGWriter.writeRGB8(rgb, width: 60, height: 40, to: coloured)
        for args in [[coloured.path], ["--input", "labels", coloured.path]] {
            let labelled = try rows(args)
            XCTAssertEqual(labelled.rows.map { String($0[2]) }, ["\(255 << 16)", "\(255 << 8)", "255"], "\(args)")
            XCTAssertEqual(labelled.rows.map { String($0[area]) }, ["100", "100", "100"], "\(args)")
        }
        XCTAssertEqual(try rows(["--input", "mask", coloured.path]).rows.map { String($0[area]) }, ["200", "100"])
        // Ids as a mask, the largest the most pixels: regions, not a rim, so every one stays.
        var ids = [Float](repeating: 0, count: 60 * 60)
        for y in 2..<8 { for x in 2..<8 { ids[y * 60 + x] = 1 } }
        for y in 15..<55 { for x in 15..<55 { ids[y * 60 + x] = 3 } }
        let idsFile = tmp.appendingPathComponent("ids.npy")
        try NPYFile.write(ids, shape: [60, 60], to: idsFile)
        let asMask = try rows(["--input", "mask", "--min-area-px", "1", idsFile.path])
        XCTAssertEqual(asMask.rows.map { String($0[area]) }, ["36", "1600"])
        XCTAssertFalse(asMask.stderr.contains("graded"), asMask.stderr)
        // A stack whose second page alone is stored WhiteIsZero: only that page's values flipped back.
        let pages = tmp.appendingPathComponent("pages.tif")
        try TIFFWriter.write(Micrograph(width: 60, height: 40, frames: 2, pixelType: .uint8, data: squares + squares, format: "TIFF"), to: pages)
        try CLIRunner.markWhiteIsZero(pages, page: 1)
        let both = try rows([pages.path])
        XCTAssertEqual(both.rows.map { String($0[1]) + " " + String($0[area]) }, ["pages_0 100", "pages_0 100", "pages_1 100", "pages_1 100"])
    }

    /// Every frame of a stack is measured and named; a 0/255 mask stored as signed bytes (255
    /// reads as −1) and negative values are particle, NaN is not.
    func testEveryFrameAndEveryNonZeroValue() throws {
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        // Three 40×30 frames: a 10×10 square, nothing, two 6×6 squares.
        var values = [Float](repeating: 0, count: 3 * 40 * 30)
        func square(_ f: Int, _ x0: Int, _ y0: Int, _ side: Int, _ v: Float) {
            for y in y0..<(y0 + side) { for x in x0..<(x0 + side) { values[f * 1200 + y * 40 + x] = v } }
        }
        square(0, 5, 5, 10, -1); square(2, 2, 2, 6, 255); square(2, 20, 10, 6, 200)
        square(1, 3, 3, 6, .nan)  // 36 px: above the 20-px smallest particle, so only its NaN keeps it out
        let stack = tmp.appendingPathComponent("stack.npy")
        try NPYFile.write(values, shape: [3, 30, 40], to: stack)
        let r = try CLIRunner.run(["measure", stack.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        let rows = lines.dropFirst()
        XCTAssertEqual(rows.map { String($0[1]) }, ["stack_0", "stack_2", "stack_2"], r.stdout)
        let area = try XCTUnwrap(lines.first?.firstIndex(of: "area_px"))
        XCTAssertEqual(rows.map { String($0[area]) }, ["100", "36", "36"], r.stdout)
        // Int8 0/255 (MRC mode 0 is signed): 255 is stored as −1.
        let bytes = (0..<(40 * 30)).map { i -> UInt8 in (i % 40 >= 10 && i % 40 < 20 && i / 40 >= 5 && i / 40 < 15) ? 255 : 0 }
        let signed = tmp.appendingPathComponent("signed.mrc")
        try MRCWriter.write(Micrograph(width: 40, height: 30, pixelType: .int8, data: bytes, format: "MRC"), to: signed)
        let s = try CLIRunner.run(["measure", signed.path])
        XCTAssertEqual(s.stdout.split(separator: "\n").count, 2, s.stdout)
    }

    /// A label image's touching particles stay apart, with the file's ids (`--input auto` takes
    /// a 16-bit image of several ids as labels; `--input mask` merges them); a file that is not
    /// a label image given as one is refused with one line naming it.
    func testLabelImagesKeepTouchingParticlesApart() throws {
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        // Two 10×10 squares side by side, ids 12 and 4, in a 40×30 uint16 TIFF at 0.5 nm/px.
        var ids = [UInt16](repeating: 0, count: 40 * 30)
        for y in 10..<20 { for x in 5..<15 { ids[y * 40 + x] = 12 }; for x in 15..<25 { ids[y * 40 + x] = 4 } }
        let labels = tmp.appendingPathComponent("touching_labels.tif")
        try TIFFWriter.writeDeflatedUInt16(width: 40, height: 30, pixelSize: PixelSize(isotropic: 0.5), to: labels) { y0, y1, rows in
            for y in y0..<y1 { for x in 0..<40 { rows[(y - y0) * 40 + x] = ids[y * 40 + x] } }
        }
        func rows(_ args: [String]) throws -> [[Substring]] {
            let r = try CLIRunner.run(["measure"] + args)
            XCTAssertEqual(r.status, 0, r.stderr)
            return r.stdout.split(separator: "\n").dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        }
        let header = Particle.csvHeader, area = 2 + header.firstIndex(of: "area_px")!, areaNm2 = 2 + header.firstIndex(of: "area_nm2")!
        for args in [[labels.path], ["--input", "labels", labels.path]] {
            let measured = try rows(args)
            XCTAssertEqual(measured.map { String($0[2]) }, ["12", "4"], "\(args)")
            XCTAssertEqual(measured.map { String($0[area]) }, ["100", "100"], "\(args)")
            XCTAssertEqual(measured.map { String($0[areaNm2]) }, ["25.0000", "25.0000"], "\(args)")
        }
        let merged = try rows(["--input", "mask", "--no-split-touching", labels.path])
        XCTAssertEqual(merged.map { String($0[area]) }, ["200"])
        // Probabilities are not labels: auto measures them as a mask, --input labels refuses them.
        let probabilities = tmp.appendingPathComponent("prob.npy")
        try NPYFile.write((0..<(40 * 30)).map { Float($0 % 40 >= 5 && $0 % 40 < 15 && $0 / 40 >= 5 && $0 / 40 < 15 ? 0.9 : 0.1) },
                          shape: [30, 40], to: probabilities)
        XCTAssertEqual(try rows([probabilities.path]).count, 1, "the whole image as one particle")
        // A stack whose second image is not labels: refused before any row of the file.
        var frames = (0..<(2 * 40 * 30)).map { Float($0 < 1200 && ($0 % 40) < 10 && $0 / 40 < 10 ? 3 : 0) }
        frames[1200 + 5] = 0.5
        let stack = tmp.appendingPathComponent("stack.npy")
        try NPYFile.write(frames, shape: [2, 30, 40], to: stack)
        let partial = try CLIRunner.run(["measure", "--input", "labels", stack.path])
        XCTAssertEqual(partial.status, 2, partial.stderr)
        XCTAssertEqual(partial.stdout.split(separator: "\n").count, 1, "the header only: \(partial.stdout)")
        XCTAssertTrue(partial.stderr.contains("pixel value 0.5 in image 1, at column 5, row 0"), partial.stderr)
        let r = try CLIRunner.run(["measure", "--input", "labels", probabilities.path])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stdout.split(separator: "\n").count, 1, "the header only: \(r.stdout)")
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, r.stderr)
        XCTAssertTrue(lines.first?.contains("prob.npy") == true && lines.first?.contains("not a label") == true, r.stderr)
    }
}

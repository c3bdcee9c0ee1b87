import Foundation
import MicrographIO
import XCTest

/// report.html in a real headless browser (Debian's chromium): the page loads with no network,
/// every image decodes, the particle table has a row per particle, and a screenshot shows it.
final class ReportRenderingTests: XCTestCase {
    static var browser: String? {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    func runBrowser(_ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.browser!)
        p.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"] + args
        let out = Pipe()
        p.standardOutput = out; p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    func testReportRendersImagesAndTableInABrowser() throws {
        guard Self.browser != nil else {
            throw XCTSkip("no chromium on this machine (make test installs Debian's chromium; on macOS install it to run this check)")
        }
        let tmp = try CLIRunner.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: tmp) }
        let input = tmp.appendingPathComponent("in")
        try FileManager.default.createDirectory(at: input, withIntermediateDirectories: true)
        // Fringed discs on noise, calibrated like the default model's training data.
        for (i, centres) in [[(60.0, 70.0), (180.0, 150.0)], [(120.0, 110.0)]].enumerated() {
            var pixels = [UInt8](), state: UInt64 = UInt64(i + 1)
            for y in 0..<256 { for x in 0..<256 {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                var v = 1000.0 + 40 * (Double(state >> 40) / Double(1 << 24) - 0.5)
                for (cx, cy) in centres where (Double(x) - cx) * (Double(x) - cx) + (Double(y) - cy) * (Double(y) - cy) < 40 * 40 {
                    v += 150 * cos(Double(x) * 2.3) * cos(Double(y) * 2.3)
                }
                let s = Int16(v)
                pixels += [UInt8(truncatingIfNeeded: s), UInt8(truncatingIfNeeded: s >> 8)]
            } }
            try MRCWriter.write(Micrograph(width: 256, height: 256, pixelType: .int16, data: pixels,
                                           pixelSize: PixelSize(isotropic: 0.055), format: "mrc"),
                                to: input.appendingPathComponent("image\(i).mrc"))
        }
        let out = tmp.appendingPathComponent("out")
        let r = try CLIRunner.run(["segment", input.path, "-o", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = try String(contentsOf: out.appendingPathComponent("particles.csv"), encoding: .utf8)
            .split(separator: "\n").count - 1
        let page = "file://" + out.appendingPathComponent("report.html").path
        let dom = try runBrowser(["--dump-dom", page])
        XCTAssertTrue(dom.contains("data-images-decoded=\"3\""), "2 overlays + the histogram should decode: \(dom.prefix(300))")
        XCTAssertTrue(dom.contains("data-particle-rows=\"\(rows)\""), "table rows: \(dom.prefix(300))")
        XCTAssertTrue(dom.contains("image0") && dom.contains("image1"))
        let shot = tmp.appendingPathComponent("shot.png")
        _ = try runBrowser(["--window-size=1200,1000", "--screenshot=\(shot.path)", page])
        let png = try PNGReader.read(shot)
        XCTAssertEqual(png.width, 1200)
        let s = png.statistics(frame: 0)
        XCTAssertLessThan(s.min, 100, "the screenshot should show dark content (images, text), not a blank page")
        XCTAssertGreaterThan(s.max, 200)
    }
}

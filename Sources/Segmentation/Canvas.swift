import MicrographIO
import NanoTensor

/// A small RGB raster for the plots NanoFind writes as PNG (loss curves, size histograms,
/// confusion matrices, overlays): filled rectangles, lines, and digits/letters in a 5×7 font.
public struct Canvas: Sendable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public typealias Colour = (UInt8, UInt8, UInt8)
    public static let white: Colour = (255, 255, 255), black: Colour = (0, 0, 0), grey: Colour = (200, 200, 200)
    public static let blue: Colour = (31, 119, 180), orange: Colour = (255, 127, 14), red: Colour = (220, 30, 30)

    public init(width: Int, height: Int, background: Colour = Canvas.white) {
        self.width = width; self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        fill(x0: 0, y0: 0, x1: width, y1: height, background)
    }

    public mutating func set(_ x: Int, _ y: Int, _ c: Colour) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = 3 * (y * width + x)
        pixels[i] = c.0; pixels[i + 1] = c.1; pixels[i + 2] = c.2
    }

    public mutating func fill(x0: Int, y0: Int, x1: Int, y1: Int, _ c: Colour) {
        for y in max(0, y0)..<max(max(0, y0), min(height, y1)) { for x in max(0, x0)..<max(max(0, x0), min(width, x1)) { set(x, y, c) } }
    }

    /// A line from (x0, y0) to (x1, y1), `thickness` pixels wide.
    public mutating func line(_ x0: Double, _ y0: Double, _ x1: Double, _ y1: Double, _ c: Colour, thickness: Int = 1) {
        let steps = Int(max(abs(x1 - x0), abs(y1 - y0)).rounded(.up)) + 1
        for s in 0...steps {
            let t = Double(s) / Double(steps)
            let x = Int((x0 + t * (x1 - x0)).rounded()), y = Int((y0 + t * (y1 - y0)).rounded())
            for dy in 0..<thickness { for dx in 0..<thickness { set(x + dx - thickness / 2, y + dy - thickness / 2, c) } }
        }
    }

    /// Text in a 5×7 font scaled by `scale` (digits, capitals, a few signs; lower case is drawn
    /// as capitals, anything else as a blank).
    public mutating func text(_ s: String, x: Int, y: Int, _ c: Colour = Canvas.black, scale: Int = 1) {
        Canvas.glyphCells(s, x: x, y: y, scale: scale) { fill(x0: $0, y0: $1, x1: $2, y1: $3, c) }
    }

    /// Calls `plot(x0, y0, x1, y1)` for every filled cell of `s` in the 5×7 font scaled by `scale`
    /// (the text drawing of `Canvas` and `IndexedCanvas`).
    static func glyphCells(_ s: String, x: Int, y: Int, scale: Int, _ plot: (Int, Int, Int, Int) -> Void) {
        var cx = x
        for ch in s.uppercased() {
            if let rows = Canvas.glyphs[ch] {
                for (r, bits) in rows.enumerated() {
                    for b in 0..<5 where bits & (1 << (4 - b)) != 0 {
                        plot(cx + b * scale, y + r * scale, cx + (b + 1) * scale, y + (r + 1) * scale)
                    }
                }
            }
            cx += 6 * scale
        }
    }

    public static func textWidth(_ s: String, scale: Int = 1) -> Int { s.count * 6 * scale }

    public func write(to url: URL) throws { try PNGWriter.writeRGB8(pixels, width: width, height: height, to: url) }

    static let glyphs: [Character: [UInt8]] = [
        "0": [14, 17, 19, 21, 25, 17, 14], "1": [4, 12, 4, 4, 4, 4, 14], "2": [14, 17, 1, 2, 4, 8, 31],
        "3": [31, 2, 4, 2, 1, 17, 14], "4": [2, 6, 10, 18, 31, 2, 2], "5": [31, 16, 30, 1, 1, 17, 14],
        "6": [6, 8, 16, 30, 17, 17, 14], "7": [31, 1, 2, 4, 8, 8, 8], "8": [14, 17, 17, 14, 17, 17, 14],
        "9": [14, 17, 17, 15, 1, 2, 12], ".": [0, 0, 0, 0, 0, 12, 12], "-": [0, 0, 0, 31, 0, 0, 0],
        ":": [0, 12, 12, 0, 12, 12, 0], "/": [1, 1, 2, 4, 8, 16, 16], "%": [24, 25, 2, 4, 8, 19, 3],
        "(": [2, 4, 8, 8, 8, 4, 2], ",": [0, 0, 0, 0, 12, 4, 8], "+": [0, 4, 4, 31, 4, 4, 0], "²": [12, 2, 4, 14, 0, 0, 0], ")": [8, 4, 2, 2, 2, 4, 8], "=": [0, 0, 31, 0, 31, 0, 0], "_": [0, 0, 0, 0, 0, 0, 31],
        "A": [14, 17, 17, 31, 17, 17, 17], "B": [30, 17, 17, 30, 17, 17, 30], "C": [14, 17, 16, 16, 16, 17, 14],
        "D": [28, 18, 17, 17, 17, 18, 28], "E": [31, 16, 16, 30, 16, 16, 31], "F": [31, 16, 16, 30, 16, 16, 16],
        "G": [14, 17, 16, 23, 17, 17, 15], "H": [17, 17, 17, 31, 17, 17, 17], "I": [14, 4, 4, 4, 4, 4, 14],
        "J": [7, 2, 2, 2, 2, 18, 12], "K": [17, 18, 20, 24, 20, 18, 17], "L": [16, 16, 16, 16, 16, 16, 31],
        "M": [17, 27, 21, 21, 17, 17, 17], "N": [17, 17, 25, 21, 19, 17, 17], "O": [14, 17, 17, 17, 17, 17, 14],
        "P": [30, 17, 17, 30, 16, 16, 16], "Q": [14, 17, 17, 17, 21, 18, 13], "R": [30, 17, 17, 30, 20, 18, 17],
        "S": [15, 16, 16, 14, 1, 1, 30], "T": [31, 4, 4, 4, 4, 4, 4], "U": [17, 17, 17, 17, 17, 17, 14],
        "V": [17, 17, 17, 17, 17, 10, 4], "W": [17, 17, 17, 21, 21, 21, 10], "X": [17, 17, 10, 4, 10, 17, 17],
        "Y": [17, 17, 10, 4, 4, 4, 4], "Z": [31, 1, 2, 4, 8, 16, 31],
    ]
}

/// An 8-bit palette raster: one byte per pixel naming one of up to 256 colours. Overlays are
/// drawn on one: a third of an RGB canvas's bytes to fill, deflate and write.
public struct IndexedCanvas: Sendable {
    public let width: Int
    public let height: Int
    public var indices: [UInt8]
    public let palette: [Canvas.Colour]

    /// All pixels index 0.
    public init(width: Int, height: Int, palette: [Canvas.Colour]) {
        require((1...256).contains(palette.count), "IndexedCanvas: \(palette.count) palette entries")
        self.width = width; self.height = height; self.palette = palette
        indices = [UInt8](repeating: 0, count: width * height)
    }

    public mutating func fill(x0: Int, y0: Int, x1: Int, y1: Int, _ index: UInt8) {
        let xa = max(0, x0), xb = min(width, x1)
        guard xa < xb else { return }
        for y in max(0, y0)..<max(max(0, y0), min(height, y1)) { for x in xa..<xb { indices[y * width + x] = index } }
    }

    public mutating func text(_ s: String, x: Int, y: Int, _ index: UInt8, scale: Int = 1) {
        Canvas.glyphCells(s, x: x, y: y, scale: scale) { fill(x0: $0, y0: $1, x1: $2, y1: $3, index) }
    }

    /// The colour of every pixel, R G B interleaved.
    public var rgb: [UInt8] {
        var out = [UInt8](repeating: 0, count: 3 * indices.count)
        for (k, i) in indices.enumerated() { let c = palette[Int(i)]; out[3 * k] = c.0; out[3 * k + 1] = c.1; out[3 * k + 2] = c.2 }
        return out
    }

    public func write(to url: URL) throws {
        try PNGWriter.writeIndexed(indices, width: width, height: height, palette: palette, to: url)
    }
}

import Foundation

/// A line chart of one or more series against a shared x axis, with labelled axes.
/// `yFromZero`: the y axis starts at 0 (else at the data's minimum).
public func lineChart(series: [(name: String, colour: Canvas.Colour, points: [(Double, Double)])], title: String,
                      xLabel: String, yFromZero: Bool = true, width: Int = 640, height: Int = 400) -> Canvas {
    var c = Canvas(width: width, height: height)
    let left = 60, right = width - 20, top = 40, bottom = height - 40
    let all = series.flatMap(\.points).filter { $0.0.isFinite && $0.1.isFinite }
    let xs = all.map(\.0), ys = all.map(\.1)
    let xMin = xs.min() ?? 0, xMax = max(xs.max() ?? 1, xMin + 1e-9)
    let yMin = yFromZero ? min(0, ys.min() ?? 0) : (ys.min() ?? 0), yMax = max(ys.max() ?? 1, yMin + 1e-9)
    func px(_ x: Double) -> Double { Double(left) + (x - xMin) / (xMax - xMin) * Double(right - left) }
    func py(_ y: Double) -> Double { Double(bottom) - (y - yMin) / (yMax - yMin) * Double(bottom - top) }
    for k in 0...4 {
        let y = yMin + Double(k) / 4 * (yMax - yMin)
        c.line(Double(left), py(y), Double(right), py(y), Canvas.grey)
        c.text(String(format: "%.3g", y), x: 4, y: Int(py(y)) - 3)
    }
    c.line(Double(left), Double(bottom), Double(right), Double(bottom), Canvas.black)
    c.line(Double(left), Double(top), Double(left), Double(bottom), Canvas.black)
    c.text(String(format: "%.3g", xMin), x: left, y: bottom + 8)
    c.text(String(format: "%.3g", xMax), x: right - Canvas.textWidth(String(format: "%.3g", xMax)), y: bottom + 8)
    c.text(xLabel, x: (left + right) / 2 - Canvas.textWidth(xLabel) / 2, y: bottom + 22)
    c.text(title, x: left, y: 12, scale: 2)
    var legendX = right - 10
    for s in series.reversed() {
        legendX -= Canvas.textWidth(s.name) + 24
        c.fill(x0: legendX, y0: 16, x1: legendX + 14, y1: 20, s.colour)
        c.text(s.name, x: legendX + 18, y: 14)
    }
    for s in series {
        let pts = s.points.filter { $0.0.isFinite && $0.1.isFinite }
        for (a, b) in zip(pts, pts.dropFirst()) { c.line(px(a.0), py(a.1), px(b.0), py(b.1), s.colour, thickness: 2) }
        if pts.count == 1 { c.fill(x0: Int(px(pts[0].0)) - 2, y0: Int(py(pts[0].1)) - 2, x1: Int(px(pts[0].0)) + 3, y1: Int(py(pts[0].1)) + 3, s.colour) }
    }
    return c
}

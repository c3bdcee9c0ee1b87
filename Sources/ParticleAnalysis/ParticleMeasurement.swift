import Foundation
import Preprocessing

/// Particles of a segmentation mask: holes filled, 8-connected components, small objects
/// removed, every particle measured (see `Particle`).
public struct ParticleMeasurement: Sendable {
    /// Particle ids per pixel (0 = background), numbered 1… in raster order after removal.
    public var labels: ComponentLabels
    public var particles: [Particle]

    /// - Parameters:
    ///   - probability: the particle probability per pixel, for `meanProbability`.
    ///   - pixelSizeNm: nm per pixel, for the nm columns and `minimumAreaNm2`.
    ///   - minimumAreaNm2: objects smaller than this are removed (needs the pixel size);
    ///   - minimumAreaPx: … and smaller than this many pixels.
    public init(mask: BinaryMask, probability: [Float]? = nil, pixelSizeNm: Double? = nil,
                minimumAreaNm2: Double = 0, minimumAreaPx: Int = 1) {
        let filled = mask.holesFilled()
        var labels = ComponentLabels(filled)
        let w = mask.width, h = mask.height
        var minimum = max(1, minimumAreaPx)
        if let p = pixelSizeNm, p > 0, minimumAreaNm2 > 0 { minimum = max(minimum, Int((minimumAreaNm2 / (p * p)).rounded(.up))) }
        // Areas first, to drop the small ones and renumber the rest.
        var area = [Int](repeating: 0, count: labels.count + 1)
        for l in labels.labels where l != 0 { area[Int(l)] += 1 }
        var newId = [Int32](repeating: 0, count: labels.count + 1)
        var kept: Int32 = 0
        for l in 1..<max(1, labels.count + 1) where area[l] >= minimum { kept += 1; newId[l] = kept }
        for i in 0..<labels.labels.count where labels.labels[i] != 0 { labels.labels[i] = newId[Int(labels.labels[i])] }
        labels.count = Int(kept)
        self.labels = labels
        particles = ParticleMeasurement.measure(labels, width: w, height: h, probability: probability, pixelSizeNm: pixelSizeNm)
    }

    struct Sums {
        var n = 0, sx = 0.0, sy = 0.0, sxx = 0.0, syy = 0.0, sxy = 0.0, prob = 0.0
        var x0 = Int.max, y0 = Int.max, x1 = 0, y1 = 0, border = false
        var perimeter = 0.0
        var corners: [(Double, Double)] = []
    }

    static func measure(_ labels: ComponentLabels, width w: Int, height h: Int, probability: [Float]?,
                        pixelSizeNm: Double?) -> [Particle] {
        var sums = [Sums](repeating: Sums(), count: labels.count + 1)
        let L = labels.labels
        func at(_ x: Int, _ y: Int) -> Int32 { x < 0 || y < 0 || x >= w || y >= h ? 0 : L[y * w + x] }
        // A border pixel: in the particle with a 4-neighbour outside it (scikit-image erodes with a cross).
        func isBorder(_ x: Int, _ y: Int, _ l: Int32) -> Bool {
            at(x, y) == l && (at(x - 1, y) != l || at(x + 1, y) != l || at(x, y - 1) != l || at(x, y + 1) != l)
        }
        let sqrt2 = 2.0.squareRoot()
        for y in 0..<h {
            for x in 0..<w {
                let l = L[y * w + x]
                guard l != 0 else { continue }
                let fx = Double(x) + 0.5, fy = Double(y) + 0.5
                let li = Int(l)
                sums[li].n += 1; sums[li].sx += fx; sums[li].sy += fy; sums[li].sxx += fx * fx; sums[li].syy += fy * fy; sums[li].sxy += fx * fy
                if let probability { sums[li].prob += Double(probability[y * w + x]) }
                sums[li].x0 = min(sums[li].x0, x); sums[li].y0 = min(sums[li].y0, y); sums[li].x1 = max(sums[li].x1, x + 1); sums[li].y1 = max(sums[li].y1, y + 1)
                if x == 0 || y == 0 || x == w - 1 || y == h - 1 { sums[li].border = true }
                if isBorder(x, y, l) {
                    // scikit-image's perimeter: code = 1 + 2·(4-neighbours on the border) + 10·(diagonal ones)
                    var code = 1
                    if isBorder(x - 1, y, l) { code += 2 }
                    if isBorder(x + 1, y, l) { code += 2 }
                    if isBorder(x, y - 1, l) { code += 2 }
                    if isBorder(x, y + 1, l) { code += 2 }
                    if isBorder(x - 1, y - 1, l) { code += 10 }
                    if isBorder(x + 1, y - 1, l) { code += 10 }
                    if isBorder(x - 1, y + 1, l) { code += 10 }
                    if isBorder(x + 1, y + 1, l) { code += 10 }
                    switch code {
                    case 5, 7, 15, 17, 25, 27: sums[li].perimeter += 1
                    case 21, 33: sums[li].perimeter += sqrt2
                    case 13, 23: sums[li].perimeter += (1 + sqrt2) / 2
                    default: break
                    }
                    sums[li].corners.append((Double(x), Double(y))); sums[li].corners.append((Double(x + 1), Double(y)))
                    sums[li].corners.append((Double(x), Double(y + 1))); sums[li].corners.append((Double(x + 1), Double(y + 1)))
                }
            }
        }
        return (1..<max(1, labels.count + 1)).map { id in
            let s = sums[id]
            let n = Double(s.n)
            let cx = s.sx / n, cy = s.sy / n
            // Second central moments of the pixel centres, plus 1/12 for each pixel's own extent.
            let cxx = s.sxx / n - cx * cx + 1.0 / 12, cyy = s.syy / n - cy * cy + 1.0 / 12, cxy = s.sxy / n - cx * cy
            let common = ((cxx - cyy) * (cxx - cyy) / 4 + cxy * cxy).squareRoot()
            let l1 = (cxx + cyy) / 2 + common, l2 = max(0, (cxx + cyy) / 2 - common)
            var angle = 0.5 * atan2(2 * cxy, cxx - cyy) * 180 / Double.pi
            if angle <= -90 { angle += 180 }
            let hull = convexHullArea(s.corners)
            let perimeter = s.perimeter
            return Particle(id: id, centroidX: cx, centroidY: cy, areaPx: s.n, majorAxisPx: 4 * l1.squareRoot(),
                            minorAxisPx: 4 * l2.squareRoot(), orientationDeg: angle, perimeterPx: perimeter,
                            circularity: perimeter > 0 ? 4 * Double.pi * n / (perimeter * perimeter) : 0,
                            eccentricity: l1 > 0 ? (1 - l2 / l1).squareRoot() : 0,
                            solidity: hull > 0 ? min(1, n / hull) : 1,
                            boundingBox: (s.x0, s.y0, s.x1, s.y1), touchesBorder: s.border,
                            meanProbability: probability == nil ? nil : s.prob / n, pixelSizeNm: pixelSizeNm)
        }
    }
}

/// Area of the convex hull of points (Andrew's monotone chain, then the shoelace formula).
func convexHullArea(_ points: [(Double, Double)]) -> Double {
    let p = points.sorted { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
    guard p.count >= 3 else { return 0 }
    func cross(_ o: (Double, Double), _ a: (Double, Double), _ b: (Double, Double)) -> Double {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    }
    var lower: [(Double, Double)] = [], upper: [(Double, Double)] = []
    for q in p {
        while lower.count >= 2 && cross(lower[lower.count - 2], lower[lower.count - 1], q) <= 0 { lower.removeLast() }
        lower.append(q)
    }
    for q in p.reversed() {
        while upper.count >= 2 && cross(upper[upper.count - 2], upper[upper.count - 1], q) <= 0 { upper.removeLast() }
        upper.append(q)
    }
    let hull = Array(lower.dropLast()) + Array(upper.dropLast())
    var area = 0.0
    for i in 0..<hull.count {
        let a = hull[i], b = hull[(i + 1) % hull.count]
        area += a.0 * b.1 - b.0 * a.1
    }
    return abs(area) / 2
}

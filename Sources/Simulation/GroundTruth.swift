import Foundation

extension Simulator {
    /// Mask, labels and per-particle truth: each particle's outline is the convex hull of its
    /// atoms' projections grown by `growth` Å (about half an interatomic distance), rasterised by
    /// pixel centres; where outlines overlap the later particle's id wins in the labels, and each
    /// particle's area, centre and border flag are taken from the final labels (so two that touch
    /// do not both count the pixels they share). Particles left with no pixel are dropped.
    static func truth(_ particles: [[(Element, SIMD3<Double>)]], placed: [(x: Double, y: Double, r: Double)], zones: [String],
                      shapes: [ParticleShape], touching: [Bool], _ p: SimulationParameters,
                      growth: Double = 1.0) -> ([UInt8], [UInt16], [ParticleTruth]) {
        let n = p.size, d = p.pixelSizeNm * 10
        var mask = [UInt8](repeating: 0, count: n * n), labels = [UInt16](repeating: 0, count: n * n)
        for (index, atoms) in particles.enumerated() {
            let hull = convexHull(atoms.map { SIMD2($0.1.x, $0.1.y) })
            guard hull.count >= 3 else { continue }
            let xs = hull.map(\.x), ys = hull.map(\.y)
            let x0 = max(0, Int(((xs.min()! - growth) / d).rounded(.down))), x1 = min(n - 1, Int(((xs.max()! + growth) / d).rounded(.up)))
            let y0 = max(0, Int(((ys.min()! - growth) / d).rounded(.down))), y1 = min(n - 1, Int(((ys.max()! + growth) / d).rounded(.up)))
            guard x0 <= x1 && y0 <= y1 else { continue }
            for y in y0...y1 { for x in x0...x1 {
                let c = SIMD2((Double(x) + 0.5) * d, (Double(y) + 0.5) * d)
                guard inside(c, hull) || distance(c, hull) <= growth else { continue }
                mask[y * n + x] = 255; labels[y * n + x] = UInt16(index + 1)
            } }
        }
        var area = [Int](repeating: 0, count: particles.count + 1), sx = [Double](repeating: 0, count: particles.count + 1)
        var sy = sx, border = [Bool](repeating: false, count: particles.count + 1)
        for y in 0..<n { for x in 0..<n where labels[y * n + x] != 0 {
            let l = Int(labels[y * n + x])
            area[l] += 1; sx[l] += Double(x) + 0.5; sy[l] += Double(y) + 0.5
            if x == 0 || y == 0 || x == n - 1 || y == n - 1 { border[l] = true }
        } }
        var truths: [ParticleTruth] = [], finalId = [UInt16](repeating: 0, count: particles.count + 1)
        for index in particles.indices where area[index + 1] > 0 {
            let l = index + 1, a = Double(area[l])
            let areaNm2 = a * p.pixelSizeNm * p.pixelSizeNm
            finalId[l] = UInt16(truths.count + 1)
            truths.append(ParticleTruth(id: truths.count + 1, material: p.material.rawValue, diameterNm: placed[index].r / 5,
                                        centerPx: [sx[l] / a, sy[l] / a], centerNm: [sx[l] / a * p.pixelSizeNm, sy[l] / a * p.pixelSizeNm],
                                        areaPx: area[l], areaNm2: areaNm2, eqDiameterNm: 2 * (areaNm2 / Double.pi).squareRoot(),
                                        zoneAxis: zones[index], touchesBorder: border[l],
                                        shape: p.shapes == nil ? nil : shapes[index].rawValue,
                                        touchesParticle: p.touchingFraction > 0 ? touching[index] : nil))
        }
        for i in labels.indices where labels[i] != 0 { labels[i] = finalId[Int(labels[i])] }
        return (mask, labels, truths)
    }

    static func convexHull(_ points: [SIMD2<Double>]) -> [SIMD2<Double>] {
        let p = points.sorted { $0.x < $1.x || ($0.x == $1.x && $0.y < $1.y) }
        guard p.count >= 3 else { return p }
        func cross(_ o: SIMD2<Double>, _ a: SIMD2<Double>, _ b: SIMD2<Double>) -> Double { (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x) }
        var lower: [SIMD2<Double>] = [], upper: [SIMD2<Double>] = []
        for q in p { while lower.count >= 2 && cross(lower[lower.count - 2], lower[lower.count - 1], q) <= 0 { lower.removeLast() }; lower.append(q) }
        for q in p.reversed() { while upper.count >= 2 && cross(upper[upper.count - 2], upper[upper.count - 1], q) <= 0 { upper.removeLast() }; upper.append(q) }
        return Array(lower.dropLast()) + Array(upper.dropLast())
    }

    /// Inside a convex polygon given counter-clockwise.
    static func inside(_ c: SIMD2<Double>, _ hull: [SIMD2<Double>]) -> Bool {
        for i in 0..<hull.count {
            let a = hull[i], b = hull[(i + 1) % hull.count]
            if (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x) < 0 { return false }
        }
        return true
    }

    static func distance(_ c: SIMD2<Double>, _ hull: [SIMD2<Double>]) -> Double {
        var best = Double.infinity
        for i in 0..<hull.count {
            let a = hull[i], b = hull[(i + 1) % hull.count], ab = b - a
            let t = max(0, min(1, ((c - a) * ab).sum() / max((ab * ab).sum(), 1e-12)))
            let e = c - (a + t * ab)
            best = min(best, (e * e).sum().squareRoot())
        }
        return best
    }
}

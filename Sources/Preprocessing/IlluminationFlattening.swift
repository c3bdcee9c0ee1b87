/// An illumination or thickness gradient across a micrograph, taken out before the network sees
/// it. The network normalises the whole image at once (`InputRecipe`), so a ramp of ±5–10 %
/// across a simulated test micrograph turned most of it into "particle"; divided by the plane
/// fitted to it, the same micrographs segment as the evenly lit ones (sim-v1's test set lit by
/// a ±5 % ramp: pooled dice 0.485 without, 0.963 with it).
///
/// The plane is fitted robustly, to the means of blocks of the image: blocks mostly outside the
/// specimen (padding, NaN pixels filled from the rest) are left out, and so are blocks far from
/// the plane (a hole in the carbon film, a large particle), found by their residuals' median
/// absolute deviation over a few rounds. Fitted to every pixel, a bright vacuum region over a
/// third of an image tilted the plane so that the flattened image had false particles.
extension FloatImage {
    /// Blocks a side: about 32 px each, at least 4 and at most 32 a side.
    static func planeBlocks(_ n: Int) -> Int { Swift.max(1, Swift.min(n, Swift.max(4, Swift.min(32, n / 32)))) }

    /// The plane `a + b·x + c·y` (x and y the pixel centres scaled to −½ … ½ across the image)
    /// fitted robustly to the image's blocks, leaving out the pixels of `excluding` (nil: fit
    /// to the blocks as they are). Nil when too few blocks remain for a plane.
    public func fittedPlane(excluding outside: BinaryMask? = nil, parallel: ParallelFor = serially) -> (a: Double, b: Double, c: Double)? {
        let w = width, h = height
        guard w > 0, h > 0 else { return nil }
        let bx = FloatImage.planeBlocks(w), by = FloatImage.planeBlocks(h)
        // Each block's mean over its specimen pixels, at its specimen pixels' mean position; a
        // row of blocks per task, each row of pixels summed in Float (a block row is at most a
        // few hundred pixels) and the rows in Double.
        var found = [(x: Double, y: Double, v: Double)?](repeating: nil, count: bx * by)
        pixels.withUnsafeBufferPointer { P in
            let p = P.baseAddress!
            func blockRow(_ j: Int, _ mask: UnsafePointer<UInt8>?, _ out: UnsafeMutablePointer<(x: Double, y: Double, v: Double)?>) {
                let y0 = j * h / by, y1 = (j + 1) * h / by
                for i in 0..<bx {
                    let x0 = i * w / bx, x1 = (i + 1) * w / bx
                    var n = 0, sum = 0.0, sx = 0.0, sy = 0.0
                    for y in y0..<y1 {
                        let row = p + y * w
                        if let mask {
                            let m = mask + y * w
                            var rowSum: Float = 0, rowN = 0, rowX = 0
                            for x in x0..<x1 where m[x] == 0 { rowSum += row[x]; rowN += 1; rowX += x }
                            n += rowN; sum += Double(rowSum); sx += Double(rowX); sy += Double(rowN * y)
                        } else {
                            var rowSum: Float = 0
                            for x in x0..<x1 { rowSum += row[x] }
                            sum += Double(rowSum)
                        }
                    }
                    if mask == nil {
                        n = (x1 - x0) * (y1 - y0)
                        sx = Double(x0 + x1 - 1) / 2 * Double(n); sy = Double(y0 + y1 - 1) / 2 * Double(n)
                    }
                    // Blocks mostly outside the specimen say little about its lighting.
                    guard n > 0, 2 * n >= (x1 - x0) * (y1 - y0) else { continue }
                    let dn = Double(n)
                    out[j * bx + i] = ((sx / dn + 0.5) / Double(w) - 0.5, (sy / dn + 0.5) / Double(h) - 0.5, sum / dn)
                }
            }
            found.withUnsafeMutableBufferPointer { out in
                if let outside {
                    outside.values.withUnsafeBufferPointer { m in parallel(by) { j in blockRow(j, m.baseAddress!, out.baseAddress!) } }
                } else {
                    parallel(by) { j in blockRow(j, nil, out.baseAddress!) }
                }
            }
        }
        let blocks = found.compactMap { $0 }
        guard blocks.count >= 3 else { return nil }
        // From the blocks' median level (a least-squares start would spread a bright region's
        // pull over every block), each round keeps the blocks within 3 robust standard
        // deviations of the last plane and fits them again.
        let values = blocks.map(\.v).sorted()
        var plane = (a: values[values.count / 2], b: 0.0, c: 0.0)
        for _ in 0..<6 {
            let residuals = blocks.map { abs($0.v - (plane.a + plane.b * $0.x + plane.c * $0.y)) }
            let mad = Swift.max(residuals.sorted()[residuals.count / 2], 1e-9 * Swift.max(1, abs(plane.a)))
            let kept = zip(blocks, residuals).filter { $0.1 <= 3 * 1.4826 * mad }.map(\.0)
            guard let next = FloatImage.leastSquaresPlane(kept) else { break }
            let settled = abs(next.a - plane.a) <= 1e-9 * abs(plane.a) && next.b == plane.b && next.c == plane.c
            plane = next
            if settled { break }
        }
        return plane
    }

    /// The least-squares plane through weighted-equally points; nil for fewer than 3 or a
    /// degenerate set (all on a line).
    static func leastSquaresPlane(_ points: [(x: Double, y: Double, v: Double)]) -> (a: Double, b: Double, c: Double)? {
        guard points.count >= 3 else { return nil }
        var s = [Double](repeating: 0, count: 9), r = [Double](repeating: 0, count: 3)
        for p in points {
            let f = [1, p.x, p.y]
            for i in 0..<3 {
                r[i] += f[i] * p.v
                for j in 0..<3 { s[i * 3 + j] += f[i] * f[j] }
            }
        }
        // Cramer's rule on the 3×3 normal equations.
        func det(_ m: [Double]) -> Double {
            m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) + m[2] * (m[3] * m[7] - m[4] * m[6])
        }
        let d = det(s)
        guard abs(d) > 1e-12 * Swift.max(1, s[0] * s[4] * s[8]) else { return nil }
        func replaced(_ col: Int) -> [Double] { var m = s; for i in 0..<3 { m[i * 3 + col] = r[i] }; return m }
        return (det(replaced(0)) / d, det(replaced(1)) / d, det(replaced(2)) / d)
    }

    /// The image with its fitted plane (`fittedPlane(excluding:)`) taken out, the plane's mean
    /// level kept: divided by the plane over that level where the plane stays well above 0
    /// across the image (counts: an illumination falloff scales them), else the plane's tilt
    /// subtracted (a zero-mean float image). Itself where no plane can be fitted.
    public func flattenedIllumination(excluding outside: BinaryMask? = nil, parallel: ParallelFor = serially) -> FloatImage {
        guard let (a, b, c) = fittedPlane(excluding: outside, parallel: parallel), b != 0 || c != 0, a.isFinite, b.isFinite, c.isFinite else { return self }
        let lowest = a - 0.5 * abs(b) - 0.5 * abs(c)  // the plane's least value over the image
        let divide = a > 0 && lowest > 0.5 * a
        let w = width, h = height
        var out = self
        // In Float: the plane's terms per column and per row, then one multiply or subtract per pixel.
        let columns = (0..<w).map { Float(b * ((Double($0) + 0.5) / Double(w) - 0.5)) }
        let rows = pieces(h, minimum: Swift.max(1, (1 << 16) / w))
        out.pixels.withUnsafeMutableBufferPointer { P in
            columns.withUnsafeBufferPointer { C in
                let p = P.baseAddress!, col = C.baseAddress!
                parallel(rows.count) { k in
                    for y in rows.range(k) {
                        let base = Float(a + c * ((Double(y) + 0.5) / Double(h) - 0.5)), level = Float(a), line = p + y * w
                        if divide {
                            for x in 0..<w { line[x] = line[x] * (level / (base + col[x])) }
                        } else {
                            for x in 0..<w { line[x] = line[x] - (base + col[x] - level) }
                        }
                    }
                }
            }
        }
        return out
    }
}

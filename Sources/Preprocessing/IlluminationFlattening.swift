/// An illumination or thickness gradient across a micrograph, taken out before the network sees
/// it. The network normalises the whole image at once (`InputRecipe`), so a ramp of ±5–10 %
/// across a simulated test micrograph turned most of it into "particle"; and a bright centre
/// falling off by as little as ±2 % towards the corners (a beam not spread evenly) took sim-v1's
/// test dice from 0.963 to 0.674 (±5 %: 0.365; with a plane divided out, 0.716 and 0.358).
/// Divided by the quadratic surface fitted to it,
/// the same micrographs segment as the evenly lit ones (ramps of ±5 % and ±10 %, centres of ±2,
/// ±5 and ±10 %: pooled dice 0.9628–0.9629). A plane removed the ramps but not the centres; a
/// surface of degree 4 followed crowded images' particles (16 simulated images 30–40 %
/// particle: dice 0.914 against 0.928 evenly lit, 0.896 against 0.928 with a ±5 % centre).
///
/// The surface is fitted robustly, to the means of blocks of the image: blocks mostly outside
/// the specimen (padding, NaN pixels filled from the rest) are left out, and so are blocks far
/// from the surface (a hole in the carbon film, a large particle), found by their residuals'
/// median absolute deviation over a few rounds. Fitted to every pixel, a bright vacuum region
/// over a third of an image tilted the surface so that the flattened image had false particles.
/// A smooth illumination over an image: `a + b·x + c·y + d·x² + e·x·y + f·y²`, with x and y
/// the pixel centres scaled to −½ … ½ across the image (a plane where d, e and f are 0).
public struct IlluminationSurface: Equatable, Sendable {
    public var a: Double, b: Double, c: Double, d: Double, e: Double, f: Double
    public init(a: Double, b: Double = 0, c: Double = 0, d: Double = 0, e: Double = 0, f: Double = 0) {
        self.a = a; self.b = b; self.c = c; self.d = d; self.e = e; self.f = f
    }
    /// The terms' coefficients in the order of `terms`.
    init(_ k: [Double]) { self.init(a: k[0], b: k[1], c: k[2], d: k[3], e: k[4], f: k[5]) }
    /// 1, x, y, x², x·y, y².
    static func terms(_ x: Double, _ y: Double) -> [Double] { [1, x, y, x * x, x * y, y * y] }

    public func value(x: Double, y: Double) -> Double { a + b * x + c * y + d * x * x + e * x * y + f * y * y }
    /// The mean over the image (x and y spread evenly over −½ … ½).
    public var mean: Double { a + (d + f) / 12 }
    /// Whether it is not level.
    public var varies: Bool { b != 0 || c != 0 || d != 0 || e != 0 || f != 0 }
    var isFinite: Bool { [a, b, c, d, e, f].allSatisfy(\.isFinite) }
    /// Its least value over a span of x and y (the whole image: −½ … ½ each), from a 65 × 65
    /// grid over it (close enough to decide whether dividing by it is safe, which leaves a wide
    /// margin).
    func lowest(over span: (x: ClosedRange<Double>, y: ClosedRange<Double>) = (-0.5...0.5, -0.5...0.5)) -> Double {
        var least = Double.infinity
        for j in 0...64 {
            let y = span.y.lowerBound + Double(j) / 64 * (span.y.upperBound - span.y.lowerBound)
            for i in 0...64 { least = Swift.min(least, value(x: span.x.lowerBound + Double(i) / 64 * (span.x.upperBound - span.x.lowerBound), y: y)) }
        }
        return least
    }
}

extension FloatImage {
    /// Blocks a side: about 32 px each, at least 4 and at most 32 a side.
    static func planeBlocks(_ n: Int) -> Int { Swift.max(1, Swift.min(n, Swift.max(4, Swift.min(32, n / 32)))) }

    /// The quadratic surface (`IlluminationSurface`) fitted robustly to the image's blocks,
    /// leaving out the pixels of `excluding` (nil: fit to the blocks as they are): a plane
    /// where the blocks do not span three positions along an axis (an image a block or two
    /// high). Nil when too few blocks remain for a plane.
    public func fittedIllumination(excluding outside: BinaryMask? = nil, parallel: ParallelFor = serially) -> IlluminationSurface? {
        fitIllumination(excluding: outside, parallel: parallel)?.surface
    }

    /// The fitted surface and the span of x and y its blocks cover (where it was fitted: the
    /// specimen's share of the image, without the padding a mask leaves out).
    func fitIllumination(excluding outside: BinaryMask?, parallel: ParallelFor)
        -> (surface: IlluminationSurface, span: (x: ClosedRange<Double>, y: ClosedRange<Double>))? {
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
        // The terms the blocks can tell apart: x² and x·y need three and two columns of blocks,
        // y² and x·y rows (counted by the blocks' places in the grid, not their mean positions,
        // which a mask makes all different); else the plane's.
        let xs = Set(found.indices.filter { found[$0] != nil }.map { $0 % bx }).count
        let ys = Set(found.indices.filter { found[$0] != nil }.map { $0 / bx }).count
        let used = [true, true, true, xs >= 3, xs >= 2 && ys >= 2, ys >= 3]
        let plane = [true, true, true, false, false, false]
        let fitted = blocks.count >= used.filter({ $0 }).count
            ? FloatImage.robustFit(blocks, terms: used) ?? FloatImage.robustFit(blocks, terms: plane)
            : blocks.count >= 3 ? FloatImage.robustFit(blocks, terms: plane) : nil
        guard let surface = fitted else { return nil }
        let bxs = blocks.map(\.x), bys = blocks.map(\.y)
        return (surface, (bxs.min()!...bxs.max()!, bys.min()!...bys.max()!))
    }

    /// From the blocks' median level (a least-squares start would spread a bright region's
    /// pull over every block), each round keeps the blocks within 3 robust standard deviations
    /// of the last surface and fits them again, with the terms `terms` says (of
    /// `IlluminationSurface.terms`). Nil where the blocks cannot fix those terms.
    static func robustFit(_ blocks: [(x: Double, y: Double, v: Double)], terms: [Bool]) -> IlluminationSurface? {
        let values = blocks.map(\.v).sorted()
        var surface = IlluminationSurface(a: values[values.count / 2])
        var fitted = false
        for _ in 0..<6 {
            let residuals = blocks.map { abs($0.v - surface.value(x: $0.x, y: $0.y)) }
            let mad = Swift.max(residuals.sorted()[residuals.count / 2], 1e-9 * Swift.max(1, abs(surface.a)))
            let kept = zip(blocks, residuals).filter { $0.1 <= 3 * 1.4826 * mad }.map(\.0)
            guard let next = leastSquares(kept, terms: terms) else { break }
            var level = next
            level.a = surface.a
            let settled = abs(next.a - surface.a) <= 1e-9 * abs(surface.a) && level == surface
            surface = next; fitted = true
            if settled { break }
        }
        return fitted ? surface : nil
    }

    /// The least-squares surface with the terms `terms` through points weighted equally; nil
    /// for fewer points than terms or a degenerate set (the normal equations singular).
    static func leastSquares(_ points: [(x: Double, y: Double, v: Double)], terms: [Bool]) -> IlluminationSurface? {
        let index = terms.indices.filter { terms[$0] }, k = index.count
        guard points.count >= k else { return nil }
        // The normal equations, solved by Gaussian elimination with partial pivoting.
        var m = [Double](repeating: 0, count: k * (k + 1))
        for p in points {
            let all = IlluminationSurface.terms(p.x, p.y), t = index.map { all[$0] }
            for i in 0..<k {
                m[i * (k + 1) + k] += t[i] * p.v
                for j in 0..<k { m[i * (k + 1) + j] += t[i] * t[j] }
            }
        }
        let scale = (0..<k).map { abs(m[$0 * (k + 1) + $0]) }.max() ?? 0
        for col in 0..<k {
            guard let pivot = (col..<k).max(by: { abs(m[$0 * (k + 1) + col]) < abs(m[$1 * (k + 1) + col]) }),
                  abs(m[pivot * (k + 1) + col]) > 1e-12 * Swift.max(scale, 1e-300) else { return nil }
            if pivot != col { for j in 0...k { m.swapAt(pivot * (k + 1) + j, col * (k + 1) + j) } }
            for row in 0..<k where row != col {
                let factor = m[row * (k + 1) + col] / m[col * (k + 1) + col]
                if factor != 0 { for j in col...k { m[row * (k + 1) + j] -= factor * m[col * (k + 1) + j] } }
            }
        }
        var coefficients = [Double](repeating: 0, count: 6)
        for (i, term) in index.enumerated() { coefficients[term] = m[i * (k + 1) + k] / m[i * (k + 1) + i] }
        return IlluminationSurface(coefficients)
    }

    /// The image with its fitted surface (`fittedIllumination(excluding:)`) taken out, the
    /// surface's mean level kept: divided by the surface over that level where the surface stays
    /// well above 0 across the image (counts: an illumination falloff scales them), else the
    /// surface's variation subtracted (a zero-mean float image). Itself where none can be fitted.
    public func flattenedIllumination(excluding outside: BinaryMask? = nil, parallel: ParallelFor = serially) -> FloatImage {
        guard let (s, span) = fitIllumination(excluding: outside, parallel: parallel), s.varies, s.isFinite else { return self }
        let level = s.mean
        // Its least value where it was fitted (over its blocks: the specimen's share of the
        // image): outside, in padding, a quadratic's extrapolation may dive, and the values
        // there are filled later.
        let divide = level > 0 && s.lowest(over: span) > 0.5 * level
        let w = width, h = height
        var out = self
        // In Float: per column x and d·x², per row the rest, then a multiply-add and one divide
        // or subtract per pixel.
        let xs = (0..<w).map { (Double($0) + 0.5) / Double(w) - 0.5 }
        let columns = xs.map { Float($0) }, squares = xs.map { Float(s.d * $0 * $0) }
        let rows = pieces(h, minimum: Swift.max(1, (1 << 16) / w))
        out.pixels.withUnsafeMutableBufferPointer { P in
            columns.withUnsafeBufferPointer { C in
                squares.withUnsafeBufferPointer { Q in
                    let p = P.baseAddress!, col = C.baseAddress!, sq = Q.baseAddress!
                    parallel(rows.count) { k in
                        for y in rows.range(k) {
                            let yy = (Double(y) + 0.5) / Double(h) - 0.5
                            let base = Float(s.a + s.c * yy + s.f * yy * yy), slope = Float(s.b + s.e * yy)
                            let mean = Float(level), line = p + y * w
                            if divide {
                                for x in 0..<w { line[x] = line[x] * (mean / (base + slope * col[x] + sq[x])) }
                            } else {
                                for x in 0..<w { line[x] = line[x] - (base + slope * col[x] + sq[x] - mean) }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}

/// An illumination or thickness gradient across a micrograph, taken out before the network sees
/// it. The network normalises the whole image at once (`InputRecipe`), so a ramp of ±5–10 %
/// across a simulated test micrograph turned most of it into "particle"; divided by the plane
/// fitted to it, the same micrographs segment as the evenly lit ones (au_1012, cdse_1009 of
/// sim-v1 at ±5, ±10 and ±20 %: 5 and 4 particles each time, as unramped).
extension FloatImage {
    /// The least-squares plane through the pixels, `a + b·x + c·y` with x and y the pixel
    /// centres scaled to −½ … ½ across the image (`a` is then the mean). Sums in Double.
    public func fittedPlane(parallel: ParallelFor = serially) -> (a: Double, b: Double, c: Double) {
        let w = width, h = height
        guard w > 0, h > 0 else { return (0, 0, 0) }
        // On a full grid of centred coordinates the normal equations are diagonal.
        let xs = (0..<w).map { (Double($0) + 0.5) / Double(w) - 0.5 }
        let rows = pieces(h, minimum: max(1, (1 << 16) / w))
        var parts = [(sum: Double, sx: Double, sy: Double)](repeating: (0, 0, 0), count: rows.count)
        pixels.withUnsafeBufferPointer { p in
            parts.withUnsafeMutableBufferPointer { out in
                parallel(rows.count) { k in
                    var sum = 0.0, sx = 0.0, sy = 0.0
                    for y in rows.range(k) {
                        let yc = (Double(y) + 0.5) / Double(h) - 0.5
                        var row = 0.0, rowX = 0.0
                        for x in 0..<w { let v = Double(p[y * w + x]); row += v; rowX += v * xs[x] }
                        sum += row; sx += rowX; sy += row * yc
                    }
                    out[k] = (sum, sx, sy)
                }
            }
        }
        let sum = parts.reduce(0) { $0 + $1.sum }, sx = parts.reduce(0) { $0 + $1.sx }, sy = parts.reduce(0) { $0 + $1.sy }
        let xx = xs.reduce(0) { $0 + $1 * $1 } * Double(h)
        let ys = (0..<h).map { (Double($0) + 0.5) / Double(h) - 0.5 }
        let yy = ys.reduce(0) { $0 + $1 * $1 } * Double(w)
        return (sum / Double(w * h), xx > 0 ? sx / xx : 0, yy > 0 ? sy / yy : 0)
    }

    /// The image with its fitted plane taken out, its mean kept: divided by the plane over its
    /// mean where the plane stays well above 0 across the image (counts: an illumination
    /// falloff scales them), else the plane's tilt subtracted (a zero-mean float image).
    public func flattenedIllumination(parallel: ParallelFor = serially) -> FloatImage {
        let (a, b, c) = fittedPlane(parallel: parallel)
        guard b != 0 || c != 0, a.isFinite, b.isFinite, c.isFinite else { return self }
        let lowest = a - 0.5 * abs(b) - 0.5 * abs(c)  // the plane's least value over the image
        let divide = a > 0 && lowest > 0.5 * a
        let w = width, h = height
        var out = self
        let rows = pieces(h, minimum: max(1, (1 << 16) / w))
        out.pixels.withUnsafeMutableBufferPointer { p in
            parallel(rows.count) { k in
                for y in rows.range(k) {
                    let yc = (Double(y) + 0.5) / Double(h) - 0.5
                    for x in 0..<w {
                        let xc = (Double(x) + 0.5) / Double(w) - 0.5
                        let plane = a + b * xc + c * yc, i = y * w + x
                        p[i] = divide ? Float(Double(p[i]) * a / plane) : Float(Double(p[i]) - (plane - a))
                    }
                }
            }
        }
        return out
    }
}

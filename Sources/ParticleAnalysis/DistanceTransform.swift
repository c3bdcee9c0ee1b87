/// The exact Euclidean distance transform (Felzenszwalb & Huttenlocher 2012): for every set
/// pixel of a width × height region, the squared distance (in pixels) to the nearest unset
/// pixel, everything outside the region counting as unset. One lower-envelope-of-parabolas pass
/// down each column, then one along each row: O(pixels). Kept as Float (4 bytes a pixel of the
/// region; whole numbers, exact up to 2²⁴ px², about a 4096-pixel radius).
package enum DistanceTransform {
    package static func squared(width w: Int, height h: Int, isSet: (Int, Int) -> Bool) -> [Float] {
        let far = Float(w * w + h * h + 1)
        var d = [Float](repeating: 0, count: w * h)
        for y in 0..<h { for x in 0..<w where isSet(x, y) { d[y * w + x] = far } }
        // Columns, then rows, each with a border of unset pixels just outside the region.
        let n = max(w, h) + 2
        var f = [Double](repeating: 0, count: n), out = f
        var v = [Int](repeating: 0, count: n), z = [Double](repeating: 0, count: n + 1)
        for x in 0..<w {
            f[0] = 0; f[h + 1] = 0
            for y in 0..<h { f[y + 1] = Double(d[y * w + x]) }
            lowerEnvelope(f, count: h + 2, into: &out, &v, &z)
            for y in 0..<h { d[y * w + x] = Float(out[y + 1]) }
        }
        for y in 0..<h {
            f[0] = 0; f[w + 1] = 0
            for x in 0..<w { f[x + 1] = Double(d[y * w + x]) }
            lowerEnvelope(f, count: w + 2, into: &out, &v, &z)
            for x in 0..<w { d[y * w + x] = Float(out[x + 1]) }
        }
        return d
    }

    /// out[q] = min over p of (q − p)² + f[p], for q, p in 0 ..< count (`v`, `z`: scratch of at
    /// least count and count + 1).
    static func lowerEnvelope(_ f: [Double], count n: Int, into out: inout [Double], _ v: inout [Int], _ z: inout [Double]) {
        var k = 0
        v[0] = 0; z[0] = -.infinity; z[1] = .infinity
        for q in 1..<n {
            var s: Double
            repeat {
                let p = v[k]
                s = ((f[q] + Double(q * q)) - (f[p] + Double(p * p))) / Double(2 * q - 2 * p)
                if s <= z[k] { k -= 1 } else { break }
            } while k >= 0
            k += 1
            v[k] = q; z[k] = s; z[k + 1] = .infinity
        }
        k = 0
        for q in 0..<n {
            while z[k + 1] < Double(q) { k += 1 }
            let p = v[k]
            out[q] = Double((q - p) * (q - p)) + f[p]
        }
    }
}

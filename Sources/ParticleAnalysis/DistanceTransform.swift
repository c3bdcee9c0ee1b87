/// The exact Euclidean distance transform (Felzenszwalb & Huttenlocher 2012): for every set
/// pixel of a width × height region, the squared distance (in pixels) to the nearest unset
/// pixel, everything outside the region counting as unset. A binary image's pass down the
/// columns is the distance to the nearest unset pixel above or below (two scans, made row by row
/// so memory is read in order); then one lower-envelope-of-parabolas pass along each row:
/// O(pixels). Kept as Float (4 bytes a pixel of the region; whole numbers, exact up to 2²⁴ px²,
/// about a 4096-pixel radius). (`ParticleMeasurementTests` checks it against the distances
/// found by trying every unset pixel.)
package enum DistanceTransform {
    package static func squared(width w: Int, height h: Int, isSet: (Int, Int) -> Bool) -> [Float] {
        var d = [Float](repeating: 0, count: w * h)
        guard w > 0, h > 0 else { return d }
        // Down the columns: rows up to the nearest unset pixel at or above (row −1 is unset),
        // then below (row h is unset); the nearer one, squared.
        var run = [Int32](repeating: 0, count: w)
        d.withUnsafeMutableBufferPointer { D in run.withUnsafeMutableBufferPointer { R in
            for y in 0..<h { for x in 0..<w {
                R[x] = isSet(x, y) ? R[x] + 1 : 0
                D[y * w + x] = Float(R[x])
            } }
            for x in 0..<w { R[x] = 0 }
            for y in stride(from: h - 1, through: 0, by: -1) { for x in 0..<w {
                let i = y * w + x, above = Int32(D[i])
                R[x] = above > 0 ? R[x] + 1 : 0
                let g = Float(min(above, R[x]))
                D[i] = g * g
            } }
        } }
        // Along the rows, with a border of unset pixels just outside the region: each stretch of
        // set pixels alone, between the unset pixels at its ends (no pixel beyond those can be
        // nearer: any is farther along the row than the end, whose own distance is 0).
        let n = w + 2
        let f = UnsafeMutablePointer<Int>.allocate(capacity: n), out = UnsafeMutablePointer<Int>.allocate(capacity: n)
        let v = UnsafeMutablePointer<Int>.allocate(capacity: n)
        let zn = UnsafeMutablePointer<Int>.allocate(capacity: n + 1), zd = UnsafeMutablePointer<Int>.allocate(capacity: n + 1)
        defer { f.deallocate(); out.deallocate(); v.deallocate(); zn.deallocate(); zd.deallocate() }
        d.withUnsafeMutableBufferPointer { D in
            for y in 0..<h {
                let row = D.baseAddress! + y * w
                var x = 0
                while x < w {
                    while x < w && row[x] == 0 { x += 1 }
                    guard x < w else { break }
                    // Set pixels start .. x − 1; the unset ends start − 1 and x (row positions).
                    let start = x
                    while x < w && row[x] != 0 { x += 1 }
                    let count = x - start + 2
                    f[0] = 0; f[count - 1] = 0
                    for k in 0..<(count - 2) { f[k + 1] = Int(row[start + k]) }
                    lowerEnvelope(f, count: count, into: out, v, zn, zd)
                    for k in 0..<(count - 2) { row[start + k] = Float(out[k + 1]) }
                }
            }
        }
        return d
    }

    /// out[q] = min over p of (q − p)² + f[p], for q, p in 0 ..< count, in whole numbers: the
    /// parabolas' crossings are kept as fractions zn / zd (zd > 0) and compared by cross
    /// multiplication, exact (no division): the products are at most about
    /// 2 · count · (count² + max f), within Int for rows up to `ParticleMeasurement.largestSide`
    /// (`v`: scratch of at least count, `zn`, `zd` count + 1).
    static func lowerEnvelope(_ f: UnsafePointer<Int>, count n: Int, into out: UnsafeMutablePointer<Int>,
                              _ v: UnsafeMutablePointer<Int>, _ zn: UnsafeMutablePointer<Int>, _ zd: UnsafeMutablePointer<Int>) {
        // v[0 ... k]: the parabolas of the envelope; parabola j is lowest from crossing j
        // (zn[j] / zd[j]; the first from −∞) to crossing j + 1 (the last to +∞).
        var k = 0
        v[0] = 0
        for q in 1..<n {
            let fq = f[q] + q * q
            var num = 0, den = 1
            while true {
                let p = v[k]
                num = fq - (f[p] + p * p); den = 2 * (q - p)
                // The crossing with parabola k at or before where k starts: k is hidden.
                if k > 0 && num * zd[k] <= zn[k] * den { k -= 1 } else { break }
            }
            k += 1
            v[k] = q; zn[k] = num; zd[k] = den
        }
        let top = k
        k = 0
        for q in 0..<n {
            while k < top && zn[k + 1] < q * zd[k + 1] { k += 1 }
            let p = v[k]
            out[q] = (q - p) * (q - p) + f[p]
        }
    }
}

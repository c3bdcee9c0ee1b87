/// The exact Euclidean distance transform (Felzenszwalb & Huttenlocher 2012): for every set
/// pixel of a width × height region, the squared distance (in pixels) to the nearest unset
/// pixel, everything outside the region counting as unset. A binary image's pass down the
/// columns is the distance to the nearest unset pixel above or below (two scans, made row by row
/// so memory is read in order); then one lower-envelope-of-parabolas pass along each row:
/// O(pixels). (`ParticleMeasurementTests` checks it against the distances found by trying every
/// unset pixel.)
package enum DistanceTransform {
    /// The squared distances as Float (whole numbers, exact up to 2²⁴ px², about a 4096-pixel
    /// radius), row by row: `framed`'s values without their frame.
    package static func squared(width w: Int, height h: Int, isSet: (Int, Int) -> Bool) -> [Float] {
        guard w > 0, h > 0 else { return [Float](repeating: 0, count: w * h) }
        let framed = squaredFramed(width: w, height: h) { y, flags in
            for x in 0..<w { flags[x] = isSet(x, y) ? 1 : 0 }
        }
        var d = [Float](repeating: 0, count: w * h)
        for y in 0..<h { for x in 0..<w { d[y * w + x] = Float(framed[(y + 1) * (w + 2) + x + 1]) } }
        return d
    }

    /// The squared distances on the region with a one-pixel frame of zeros around it
    /// ((w + 2) × (h + 2) values, row by row; pixel (x, y) at (y + 1)(w + 2) + x + 1), as the
    /// watershed in `TouchingParticles` reads them, whole numbers. `setRow(y, flags)` gives row
    /// y of the region: flags[x] = 1 for a set pixel, 0 for an unset one (x in 0 ..< w).
    /// The smaller side is at most 2¹⁵, so that every distance² fits an Int32.
    package static func squaredFramed(width w: Int, height h: Int, setRow: (Int, UnsafeMutablePointer<Int32>) -> Void) -> [Int32] {
        let pw = w + 2, ph = h + 2
        guard w > 0, h > 0 else { return [Int32](repeating: 0, count: pw * ph) }
        // A check that stays on: this target builds with -Ounchecked, which drops preconditions.
        if min(w, h) > 1 << 15 { fatalError("DistanceTransform: a \(w)×\(h) region has distances² past Int32") }
        // Only the frame is zeroed here: every value inside it is written below (`setRow`, then
        // the passes), so a split box's map is not filled twice.
        var d = [Int32](unsafeUninitializedCapacity: pw * ph) { b, count in
            let base = b.baseAddress!
            base.initialize(repeating: 0, count: pw)
            (base + (ph - 1) * pw).initialize(repeating: 0, count: pw)
            for y in 1...h { (base + y * pw).initialize(to: 0); (base + y * pw + pw - 1).initialize(to: 0) }
            count = pw * ph
        }
        // Along a row, nothing is farther than w + 1 from the unset frame: a column distance
        // above that is cut to it, which changes no row's minimum (that end is nearer still)
        // and keeps its square within Int32 however tall the region.
        let cap = Int32(min(w + 1, h + 1))
        d.withUnsafeMutableBufferPointer { D in
            let base = D.baseAddress!
            // Down the columns: rows up to the nearest unset pixel at or above (the frame row is
            // unset), counted in place.
            for y in 1...h {
                let row = base + y * pw + 1, above = row - pw
                setRow(y - 1, row)
                for x in 0..<w { row[x] = (above[x] &+ 1) & (0 &- row[x]) }
            }
            // Up the columns: rows to the nearest unset pixel at or below, the nearer one squared.
            let below = UnsafeMutablePointer<Int32>.allocate(capacity: w)
            below.initialize(repeating: 0, count: w)
            defer { below.deallocate() }
            for y in stride(from: h, through: 1, by: -1) {
                let row = base + y * pw + 1
                for x in 0..<w {
                    let up = row[x]
                    let down = (below[x] &+ 1) & (0 &- min(up, 1))
                    below[x] = down
                    let g = min(min(up, down), cap)
                    row[x] = g &* g
                }
            }
            // Along the rows: each stretch of set pixels alone, between the unset pixels at its
            // ends (the frame at the row's ends; no pixel beyond those can be nearer: any is
            // farther along the row than the end, whose own distance is 0).
            let n = pw
            let out = UnsafeMutablePointer<Int32>.allocate(capacity: n), v = UnsafeMutablePointer<Int>.allocate(capacity: n)
            let vf = UnsafeMutablePointer<Int>.allocate(capacity: n)
            let zn = UnsafeMutablePointer<Int>.allocate(capacity: n + 1), zd = UnsafeMutablePointer<Int>.allocate(capacity: n + 1)
            defer { out.deallocate(); v.deallocate(); vf.deallocate(); zn.deallocate(); zd.deallocate() }
            for y in 1...h {
                let row = base + y * pw
                var x = 1
                while true {
                    while row[x] == 0 && x <= w { x += 1 }
                    guard x <= w else { break }
                    // Set pixels start ..< x (the frame's last column is 0, so the scan stops).
                    let start = x
                    while row[x] != 0 { x += 1 }
                    let length = x - start
                    // A stretch of one or two pixels: each is next to an end.
                    guard length > 2 else { for k in start..<x { row[k] = 1 }; continue }
                    lowerEnvelope(row + start - 1, count: length + 2, into: out, v, vf, zn, zd)
                    (row + start).update(from: out + 1, count: length)
                }
            }
        }
        return d
    }

    /// out[q] = min over p of (q − p)² + f[p], for q, p in 0 ..< count, in whole numbers: the
    /// parabolas' crossings are kept as fractions zn / zd (zd > 0) and compared by cross
    /// multiplication, exact (no division): the products are at most about
    /// 2 · count · (count² + max f), within Int for rows up to `ParticleMeasurement.largestSide`
    /// (`v`, `vf`: scratch of at least count, `zn`, `zd` count + 1). The first and last crossings
    /// are sentinels, ∓2⁴⁰, beyond any other (|num| ≤ f + count² < 2⁴¹ and den ≥ 2), their
    /// products within 2⁶¹.
    static func lowerEnvelope(_ f: UnsafePointer<Int32>, count n: Int, into out: UnsafeMutablePointer<Int32>,
                              _ v: UnsafeMutablePointer<Int>, _ vf: UnsafeMutablePointer<Int>,
                              _ zn: UnsafeMutablePointer<Int>, _ zd: UnsafeMutablePointer<Int>) {
        // v[0 ... k]: the parabolas of the envelope (vf: f[p] + p² of each); parabola j is
        // lowest from crossing j (zn[j] / zd[j]; the first from −∞, a crossing every other is
        // after) to crossing j + 1 (the last to +∞, set once the envelope is made).
        var k = 0
        v[0] = 0; vf[0] = Int(f[0]); zn[0] = -(1 << 40); zd[0] = 1
        for q in 1..<n {
            let fq = Int(f[q]) + q * q
            var num = fq - vf[k], den = 2 * (q - v[k])
            // The crossing with parabola k at or before where k starts: k is hidden.
            while num * zd[k] <= zn[k] * den {
                k -= 1
                num = fq - vf[k]; den = 2 * (q - v[k])
            }
            k += 1
            v[k] = q; vf[k] = fq; zn[k] = num; zd[k] = den
        }
        zn[k + 1] = 1 << 40; zd[k + 1] = 1
        k = 0
        for q in 0..<n {
            while zn[k + 1] < q * zd[k + 1] { k += 1 }
            let p = v[k]
            out[q] = Int32(truncatingIfNeeded: (q - p) * (q - p) + Int(f[p]))
        }
    }
}

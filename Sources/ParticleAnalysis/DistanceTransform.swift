/// The exact Euclidean distance transform: for every set pixel of a width × height region, the
/// squared distance (in pixels) to the nearest unset pixel, everything outside the region
/// counting as unset. A binary image's pass down the columns is the distance to the nearest
/// unset pixel above or below (two scans, made row by row so memory is read in order); then a
/// pass along each row takes, for each pixel, the least of (x − p)² + column distance² over the
/// row's pixels p. That pass tries the offsets 1, 2, … of 16 pixels at once until no pixel can
/// come nearer (`largestWindow`), and rows whose pixels lie farther from every unset pixel take
/// the lower envelope of parabolas instead (Felzenszwalb & Huttenlocher 2012: O(pixels), but a
/// data-dependent branch or two a pixel). (`ParticleMeasurementTests` checks both against the
/// distances found by trying every unset pixel, and against each other on larger discs.)
package enum DistanceTransform {
    /// The farthest offset the row pass tries before a row takes the envelope: windows cost about
    /// a sixteenth of the offsets they try a pixel, the envelope about as much as 128 of them (a
    /// disc of radius 130 took as long either way, AMD EPYC fam 26 mod 2), so particles of
    /// radius 128 px and less take windows throughout.
    package static let largestWindow: Int32 = 128

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
    /// The smaller side is at most 2¹⁵, so that every distance² fits an Int32. `window`: the
    /// farthest offset the row pass tries (at most `largestWindow`, so that k² + a column
    /// distance² stays within Int32; 0 gives the envelope to every row where a column distance²
    /// is above 1, as the tests compare them). `envelopeRows`, where given, is told how many rows
    /// took the envelope.
    package static func squaredFramed(width w: Int, height h: Int, window: Int32 = largestWindow,
                                      envelopeRows: ((Int) -> Void)? = nil,
                                      setRow: (Int, UnsafeMutablePointer<Int32>) -> Void) -> [Int32] {
        let pw = w + 2, ph = h + 2
        guard w > 0, h > 0 else { envelopeRows?(0); return [Int32](repeating: 0, count: pw * ph) }
        // A check that stays on: this target builds with -Ounchecked, which drops preconditions.
        if min(w, h) > 1 << 15 { fatalError("DistanceTransform: a \(w)×\(h) region has distances² past Int32") }
        // Only the frame is zeroed here: every value inside it is written below (`setRow`, then
        // the passes), so a split box's map is not filled twice. The row pass's last vector of
        // the last row reads up to 15 + 3 values past the frame's end (`padding`, zeros, dropped).
        let padding = 32
        var d = [Int32](unsafeUninitializedCapacity: pw * ph + padding) { b, count in
            let base = b.baseAddress!
            base.initialize(repeating: 0, count: pw)
            (base + (ph - 1) * pw).initialize(repeating: 0, count: pw + padding)
            for y in 1...h { (base + y * pw).initialize(to: 0); (base + y * pw + pw - 1).initialize(to: 0) }
            count = pw * ph + padding
        }
        // Along a row, nothing is farther than w + 1 from the unset frame: a column distance
        // above that is cut to it, which changes no row's minimum (that end is nearer still)
        // and keeps its square within Int32 however tall the region.
        let cap = Int32(min(w + 1, h + 1))
        let window = min(window, largestWindow)
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
            // Along the rows.
            let n = pw
            let out = UnsafeMutablePointer<Int32>.allocate(capacity: n + 16), v = UnsafeMutablePointer<Int>.allocate(capacity: n)
            let vf = UnsafeMutablePointer<Int>.allocate(capacity: n)
            let zn = UnsafeMutablePointer<Int>.allocate(capacity: n + 1), zd = UnsafeMutablePointer<Int>.allocate(capacity: n + 1)
            defer { out.deallocate(); v.deallocate(); vf.deallocate(); zn.deallocate(); zd.deallocate() }
            typealias Lanes = SIMD16<Int32>
            let lane = Lanes(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
            func lanes(_ p: UnsafePointer<Int32>) -> Lanes { UnsafeRawPointer(p).loadUnaligned(as: Lanes.self) }
            var rowsByEnvelope = 0
            defer { envelopeRows?(rowsByEnvelope) }
            for y in 1...h {
                let row = base + y * pw
                // Windows: for 16 pixels at a time, the least (x − p)² + g(p)² over p = x ± k for
                // k = 1, 2, … (four at a time), while any of them may still come nearer (its best
                // above k²). A read past the row's frame (k beyond the pixel's distance to it, the
                // frame's 0 already tried) lands in the rows beside, values ≥ 0, so its candidate
                // is above k², above that pixel's best: harmless. k stays below half the width
                // plus 4 (every pixel is that near the frame), so reads stay within `d`.
                var windowed = true
                var x = 1
                while x <= w {
                    // Lanes past the row's end start at 0 (nothing to find), the others at g².
                    var best = lanes(row + x) & ((lane &- Int32(w - x + 1)) &>> 31)
                    var k: Int32 = 1
                    while best.max() > k &* k {
                        guard k <= window else { windowed = false; break }
                        for _ in 0..<4 {
                            let a = lanes(row + x - Int(k)), b = lanes(row + x + Int(k))
                            let candidate = a.replacing(with: b, where: b .< a) &+ k &* k
                            best = best.replacing(with: candidate, where: candidate .< best)
                            k += 1
                        }
                    }
                    guard windowed else { break }
                    UnsafeMutableRawPointer(out + x).storeBytes(of: best, as: Lanes.self)
                    x += Lanes.scalarCount
                }
                if windowed {
                    (row + 1).update(from: out + 1, count: w)
                    continue
                }
                rowsByEnvelope += 1
                // The envelope: each stretch of set pixels alone, between the unset pixels at its
                // ends (the frame at the row's ends; no pixel beyond those can be nearer: any is
                // farther along the row than the end, whose own distance is 0).
                x = 1
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
        d.removeLast(padding)
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

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
        // Along the rows, with a border of unset pixels just outside the region.
        let n = w + 2
        let f = UnsafeMutablePointer<Double>.allocate(capacity: n), out = UnsafeMutablePointer<Double>.allocate(capacity: n)
        let v = UnsafeMutablePointer<Int>.allocate(capacity: n), z = UnsafeMutablePointer<Double>.allocate(capacity: n + 1)
        defer { f.deallocate(); out.deallocate(); v.deallocate(); z.deallocate() }
        d.withUnsafeMutableBufferPointer { D in
            for y in 0..<h {
                let row = D.baseAddress! + y * w
                f[0] = 0; f[w + 1] = 0
                for x in 0..<w { f[x + 1] = Double(row[x]) }
                lowerEnvelope(f, count: n, into: out, v, z)
                for x in 0..<w { row[x] = Float(out[x + 1]) }
            }
        }
        return d
    }

    /// out[q] = min over p of (q − p)² + f[p], for q, p in 0 ..< count (`v`, `z`: scratch of at
    /// least count and count + 1).
    static func lowerEnvelope(_ f: UnsafePointer<Double>, count n: Int, into out: UnsafeMutablePointer<Double>,
                              _ v: UnsafeMutablePointer<Int>, _ z: UnsafeMutablePointer<Double>) {
        var k = 0
        v[0] = 0; z[0] = -.infinity; z[1] = .infinity
        for q in 1..<n {
            var s: Double
            let fq = f[q] + Double(q * q)
            repeat {
                let p = v[k]
                s = (fq - (f[p] + Double(p * p))) / Double(2 * q - 2 * p)
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

/// Flat regions: blocks of pixels of exactly one value. A detector's noise makes neighbouring
/// pixels differ, so such a block records no specimen: the fill around an aligned or rotated
/// sum, a padded crop, the gaps of a mosaic, or an area clipped in an export (a saturated
/// vacuum hole, say). `edgePadding` keeps those shaped like a fill.
extension FloatImage {
    /// A pixel is flat when it lies in a row of at least this many equal pixels and in a column
    /// of as many (16: a clipped speck is no block, nor is a fill thinner than this everywhere;
    /// `edgePadding` follows a fill from its blocks down to its thinnest parts).
    public static let flatRun = 16

    /// The flat pixels (in a horizontal and a vertical run of at least `run` equal finite
    /// values), or nil when there are none. Rows are read first, side by side: most images have
    /// no such run and are done then; the columns of the pixels in one are read only if there are.
    public func flatPixels(run: Int = FloatImage.flatRun, parallel: ParallelFor = serially) -> BinaryMask? {
        require(run >= 2 && run <= 255, "flatPixels: run \(run) is not within 2 ... 255")
        let w = width, h = height
        guard w >= run, h >= run else { return nil }
        let rows = pieces(h, maximum: 16, minimum: Swift.max(1, (1 << 16) / w))
        // Whether row y has a run of at least `run` equal finite pixels; each one is marked in
        // `out` when given.
        func scan(_ p: UnsafePointer<Float>, row y: Int, marking out: UnsafeMutablePointer<UInt8>?) -> Bool {
            let row = p + y * w
            var x = 0, found = false
            while x + 1 < w {
                // Past neighbours that differ, 16 at a time.
                if x + 17 <= w {
                    let a = UnsafeRawPointer(row + x).loadUnaligned(as: SIMD16<Float>.self)
                    let b = UnsafeRawPointer(row + x + 1).loadUnaligned(as: SIMD16<Float>.self)
                    if !any(a .== b) { x += 16; continue }
                }
                guard row[x] == row[x + 1] else { x += 1; continue }
                let start = x, v = row[x]
                x += 1
                while x < w && row[x] == v { x += 1 }
                if x - start >= run && v.isFinite {
                    guard let out else { return true }
                    (out + y * w + start).update(repeating: 1, count: x - start)
                    found = true
                }
            }
            return found
        }
        // First only whether any row has a run (most images have none: no mask is made for them).
        var found = [Bool](repeating: false, count: rows.count)
        pixels.withUnsafeBufferPointer { p in
            found.withUnsafeMutableBufferPointer { found in
                parallel(rows.count) { k in found[k] = rows.range(k).contains { scan(p.baseAddress!, row: $0, marking: nil) } }
            }
        }
        guard found.contains(true) else { return nil }
        var flat = [UInt8](repeating: 0, count: w * h)
        pixels.withUnsafeBufferPointer { p in
            flat.withUnsafeMutableBufferPointer { f in
                parallel(rows.count) { k in for y in rows.range(k) { _ = scan(p.baseAddress!, row: y, marking: f.baseAddress!) } }
            }
        }
        // Columns, in pieces of columns side by side: per pixel, how many pixels of its value
        // lie next to each other at and above it (`up`, at most 255), then below it; the
        // column's run is their sum less one.
        var up = [UInt8](repeating: 0, count: w * h)
        let columns = pieces(w, maximum: 16, minimum: 64)
        pixels.withUnsafeBufferPointer { p in
            flat.withUnsafeMutableBufferPointer { f in
                up.withUnsafeMutableBufferPointer { u in
                    parallel(columns.count) { k in
                        let xs = columns.range(k)
                        for y in 0..<h {
                            for x in xs {
                                let i = y * w + x
                                u[i] = y > 0 && p[i - w] == p[i] ? Swift.min(u[i - w], 254) + 1 : 1
                            }
                        }
                        var down = [UInt8](repeating: 0, count: xs.count)
                        for y in stride(from: h - 1, through: 0, by: -1) {
                            for x in xs {
                                let i = y * w + x, c = x - xs.lowerBound
                                down[c] = y + 1 < h && p[i + w] == p[i] ? Swift.min(down[c], 254) + 1 : 1
                                if f[i] != 0 && Int(u[i]) + Int(down[c]) - 1 < run { f[i] = 0 }
                            }
                        }
                    }
                }
            }
        }
        let mask = BinaryMask(width: w, height: h, values: flat)
        return mask.values.contains(1) ? mask : nil
    }

    /// The fill around an aligned, shifted or rotated image (or a padded crop): the pixels of
    /// one value that reach the image's edges along their row and along their column (each in
    /// its row's first or last run of equal pixels, and in its column's), of a value some flat
    /// pixel so placed has (`flatPixels`: a block of at least `run` across and down). The
    /// specimen of such an image is a convex region, so its fill reaches the edges both ways,
    /// down to a rotated fill's thinnest wedge; a flat area that does not, such as a saturated
    /// vacuum hole cut by the image's edge, is left to the network. Nil when there is none.
    public func edgePadding(run: Int = FloatImage.flatRun, parallel: ParallelFor = serially) -> BinaryMask? {
        guard let flat = flatPixels(run: run, parallel: parallel) else { return nil }
        let w = width, h = height
        // Per row the end of its first run and the start of its last; per column the same.
        var left = [Int](repeating: 0, count: h), right = [Int](repeating: 0, count: h)
        var top = [Int](repeating: h, count: w), bottom = [Int](repeating: 0, count: w)
        pixels.withUnsafeBufferPointer { p in
            for y in 0..<h {
                let row = p.baseAddress! + y * w
                var a = 1
                while a < w && row[a] == row[0] { a += 1 }
                var b = w - 1
                while b > 0 && row[b - 1] == row[w - 1] { b -= 1 }
                left[y] = a; right[y] = b
            }
            var open = Array(0..<w)
            for y in 1..<h where !open.isEmpty {
                open.removeAll { x in
                    guard p[y * w + x] != p[x] else { return false }
                    top[x] = y; return true
                }
            }
            open = Array(0..<w)
            for y in stride(from: h - 2, through: 0, by: -1) where !open.isEmpty {
                open.removeAll { x in
                    guard p[y * w + x] != p[(h - 1) * w + x] else { return false }
                    bottom[x] = y + 1; return true
                }
            }
        }
        func reachesEdges(_ x: Int, _ y: Int) -> Bool { (x < left[y] || x >= right[y]) && (y < top[x] || y >= bottom[x]) }
        // The values of flat pixels that reach the edges both ways (a fill has one or a few: the
        // set is asked only when a pixel's value differs from the last one found).
        var values = Set<Float>()
        var last = Float.nan
        for y in 0..<h {
            for x in 0..<w where flat.values[y * w + x] != 0 && pixels[y * w + x] != last && reachesEdges(x, y) {
                last = pixels[y * w + x]; values.insert(last)
            }
        }
        guard !values.isEmpty else { return nil }
        let single = values.count == 1 ? values.first! : nil
        var padding = BinaryMask(width: w, height: h)
        padding.values.withUnsafeMutableBufferPointer { out in
            pixels.withUnsafeBufferPointer { p in
                for y in 0..<h {
                    // Only a row's first and last runs can reach its edges.
                    for x in Array(0..<left[y]) + Array(Swift.max(left[y], right[y])..<w) where y < top[x] || y >= bottom[x] {
                        let v = p[y * w + x]
                        if let single { if v == single { out[y * w + x] = 1 } } else if values.contains(v) { out[y * w + x] = 1 }
                    }
                }
            }
        }
        return padding
    }

    /// Fills the pixels of `mask` with pixels drawn at random (a fixed seed) from the other
    /// finite ones (all of them, or a million taken evenly from more; 0 when there are none),
    /// keeping their histogram and whole numbers; returns their median. A fill of one value
    /// would meet the specimen in an edge the network, trained on texture, reads as something:
    /// it marked particles along the inner edge of an aligned sum's padding, which a fill like
    /// the carbon around does not. (Drawing from the sample, at most 4 MB, rather than from the
    /// whole image keeps each draw in the caches.)
    @discardableResult
    public mutating func fillLikeOthers(_ mask: BinaryMask, parallel: ParallelFor = serially) -> Float {
        require(mask.width == width && mask.height == height, "fillLikeOthers: a \(mask.width)x\(mask.height) mask for a \(width)x\(height) image")
        let n = count
        var others = 0
        for i in 0..<n where mask.values[i] == 0 && pixels[i].isFinite { others += 1 }
        guard others > 0 else { fill(mask, with: 0); return 0 }
        let step = Swift.max(1, others / 1_000_000)
        var sample: [Float] = []
        sample.reserveCapacity(others / step + 1)
        var skip = 0  // others to pass over before the next one taken
        for i in 0..<n where mask.values[i] == 0 && pixels[i].isFinite {
            if skip == 0 { sample.append(pixels[i]); skip = step }
            skip -= 1
        }
        var random = SeededRandom(seed: 0x6E66_6669_6C6C)
        let m = UInt64(sample.count)
        mask.values.withUnsafeBufferPointer { mask in
            pixels.withUnsafeMutableBufferPointer { p in
                sample.withUnsafeBufferPointer { sample in
                    // An index into the sample from 64 random bits: the high word of their product with its size.
                    for i in 0..<n where mask[i] != 0 { p[i] = sample[Int(random.next().multipliedFullWidth(by: m).high)] }
                }
            }
        }
        return percentiles(sample, [50], parallel: parallel)[0]
    }

    /// Sets the pixels of `mask` to `value`.
    public mutating func fill(_ mask: BinaryMask, with value: Float) {
        require(mask.width == width && mask.height == height, "fill: a \(mask.width)x\(mask.height) mask for a \(width)x\(height) image")
        for i in 0..<count where mask.values[i] != 0 { pixels[i] = value }
    }
}

extension BinaryMask {
    /// The pixels set in either mask (of one size), nil when both are nil.
    public static func union(_ a: BinaryMask?, _ b: BinaryMask?) -> BinaryMask? {
        guard var union = a ?? b else { return nil }
        if let a, let b {
            require(a.width == b.width && a.height == b.height, "union: masks of \(a.width)x\(a.height) and \(b.width)x\(b.height)")
            for i in 0..<union.values.count where b.values[i] != 0 { union.values[i] = 1 }
        }
        return union
    }
}

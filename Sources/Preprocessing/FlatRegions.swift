/// Flat regions: blocks of pixels of exactly one value. A detector's noise makes neighbouring
/// pixels differ, so such a block records no specimen: it is the fill around an aligned or
/// rotated sum, a padded crop, the gaps of a mosaic, or an area clipped in an export.
extension FloatImage {
    /// A pixel is flat when it lies in a row of at least this many equal pixels and in a column
    /// of as many (16: a fill of 15 px or less, or a clipped speck, is left to the network).
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

    /// Fills the pixels of `mask` with noise like the others': Gaussian, of the other finite
    /// pixels' median and half their 16th-84th percentile spread (0 when there are none), from a
    /// fixed seed. Returns the median. A fill of one value would meet the specimen in an edge the
    /// network, trained on texture, reads as something: it marked particles along the inner edge
    /// of an aligned sum's padding, which a fill like the carbon around does not.
    @discardableResult
    public mutating func fillLikeOthers(_ mask: BinaryMask, parallel: ParallelFor = serially) -> Float {
        require(mask.width == width && mask.height == height, "fillLikeOthers: a \(mask.width)x\(mask.height) mask for a \(width)x\(height) image")
        var others: [Float] = []
        others.reserveCapacity(count - mask.foregroundCount)
        for i in 0..<count where mask.values[i] == 0 && pixels[i].isFinite { others.append(pixels[i]) }
        let q = others.isEmpty ? [0, 0, 0] : percentiles(others, [15.87, 50, 84.13], parallel: parallel)
        let spread = (q[2] - q[0]) / 2
        var random = SeededRandom(seed: 0x6E66_6669_6C6C)
        for i in 0..<count where mask.values[i] != 0 { pixels[i] = q[1] + spread * random.nextGaussian() }
        return q[1]
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

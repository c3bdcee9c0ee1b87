/// Regions of one value: the pixels covered by a (2r + 1)² window, wholly inside the image, whose
/// values are all equal. A micrograph's signal is never that flat (shot noise alone rules it out
/// at any usable dose), so such a region is masked, saturated, unexposed or padding: a crystal's
/// lattice fringes cannot be there, and the network, which keys on texture, is not to be asked.
///
/// Exact and O(pixels): per row, the runs of values equal to the next (one compare per pixel,
/// vectorised); per column, the rows from each pixel down over which those row windows stay flat with one value;
/// then the flat windows' centres are widened back to the windows (a separable maximum). Bands
/// of rows run through `parallel` (the same mask either way). Nil when there is no such window,
/// which a noisy image settles in the first pass.
public func flatRegions(_ image: FloatImage, radius r: Int = 3, parallel: ParallelFor = serially) -> BinaryMask? {
    let w = image.width, h = image.height, side = 2 * r + 1
    guard r >= 1, w >= side, h >= side else { return nil }
    let rows = pieces(h, minimum: Swift.max(1, (1 << 16) / w))
    // 1. flatH[y·w + x] = 1 where the row window v[y][x − r … x + r] lies inside and is constant.
    //    A first look only asks whether there is any (no array to fill: a noisy image stops here).
    func rowWindows(into f: UnsafeMutablePointer<UInt8>?) -> Bool {
        var found = [Bool](repeating: false, count: rows.count)
        image.pixels.withUnsafeBufferPointer { vb in
            found.withUnsafeMutableBufferPointer { flags in
                parallel(rows.count) { k in
                    let v = vb.baseAddress!
                    var some = false
                    // equal[x] = 1 where a row's value x equals value x + 1 (a loop the compiler
                    // vectorises); a window is flat where 2r of them in a row are 1. A noisy row's
                    // are nearly all 0, skipped 8 at a time.
                    var equal = [UInt8](repeating: 0, count: w + 8)
                    equal.withUnsafeMutableBufferPointer { eb in
                        let e = eb.baseAddress!
                        for y in rows.range(k) where f != nil || !some {
                            let row = v + y * w, out = f.map { $0 + y * w }
                            for x in 0..<(w - 1) { e[x] = row[x] == row[x + 1] ? 1 : 0 }
                            var x = 0
                            while x + 2 * r < w {
                                if x + 8 <= w - 1 && UnsafeRawPointer(e + x).loadUnaligned(as: UInt64.self) == 0 { x += 8; continue }
                                guard e[x] != 0 else { x += 1; continue }
                                var end = x  // the run of equalities x ..< end
                                while end < w - 1 && e[end] != 0 { end += 1 }
                                if end - x >= 2 * r {
                                    some = true
                                    if let out { for start in x...(end - 2 * r) { out[start + r] = 1 } }
                                }
                                x = end + 1
                            }
                        }
                    }
                    flags[k] = some
                }
            }
        }
        return found.contains(true)
    }
    guard rowWindows(into: nil) else { return nil }
    var flatH = [UInt8](repeating: 0, count: w * h)
    _ = flatH.withUnsafeMutableBufferPointer { rowWindows(into: $0.baseAddress!) }
    // 2. Centres whose column of row windows is flat with one value: counted upwards from the
    //    bottom, down[x] = rows from y down whose row window at x is flat and equals row y's value.
    var centres = [UInt8](repeating: 0, count: w * h)
    let columns = pieces(w, minimum: 64)
    image.pixels.withUnsafeBufferPointer { vb in
        flatH.withUnsafeBufferPointer { fb in
            centres.withUnsafeMutableBufferPointer { cb in
                parallel(columns.count) { k in
                    let v = vb.baseAddress!, f = fb.baseAddress!, c = cb.baseAddress!
                    let xs = columns.range(k)
                    var down = [Int](repeating: 0, count: xs.count)
                    for y in stride(from: h - 1, through: 0, by: -1) {
                        for (j, x) in xs.enumerated() {
                            let i = y * w + x
                            if f[i] == 0 {
                                down[j] = 0
                            } else {
                                down[j] = y + 1 < h && down[j] > 0 && v[i + w] == v[i] ? down[j] + 1 : 1
                            }
                            if down[j] >= side { c[(y + r) * w + x] = 1 }
                        }
                    }
                }
            }
        }
    }
    // 3. Each flat window's centre widened back to the window: a maximum over (2r + 1) columns,
    //    then over (2r + 1) rows.
    var wide = [UInt8](repeating: 0, count: w * h)
    centres.withUnsafeBufferPointer { cb in
        wide.withUnsafeMutableBufferPointer { wb in
            parallel(rows.count) { k in
                let c = cb.baseAddress!, o = wb.baseAddress!
                for y in rows.range(k) {
                    // The rightmost centre within reach (at most x + r), scanning right: x is
                    // covered when it is at least x − r.
                    var last = Int.min / 2
                    for x in 0..<w {
                        if x + r < w && c[y * w + x + r] != 0 { last = x + r }
                        if last >= x - r { o[y * w + x] = 1 }
                    }
                }
            }
        }
    }
    var values = [UInt8](repeating: 0, count: w * h)
    wide.withUnsafeBufferPointer { wb in
        values.withUnsafeMutableBufferPointer { ob in
            parallel(rows.count) { k in
                let s = wb.baseAddress!, o = ob.baseAddress!
                for y in rows.range(k) {
                    for dy in Swift.max(0, y - r)...Swift.min(h - 1, y + r) {
                        let src = s + dy * w, dst = o + y * w
                        for x in 0..<w where src[x] != 0 { dst[x] = 1 }
                    }
                }
            }
        }
    }
    return BinaryMask(width: w, height: h, values: values)
}

/// Splits particles that touch into one label each, as a microscopist outlining them would: the
/// distance to the background peaks once inside each particle and dips at the neck where two
/// meet. Pixels are flooded from the highest distance down (a watershed on the distance
/// transform); two basins that meet are one particle unless the neck where they meet is
/// narrower than `neckRatio` of the smaller basin's peak (its inscribed radius). A single
/// particle's bumps and facets dip far less, so it stays whole.
enum TouchingParticles {
    /// Split only components whose solidity (area / convex hull area) is below this (a shortcut:
    /// the neck decides): a pixelated disc, ellipse or polygon alone is above 0.95, two discs
    /// touching 0.88, overlapping by a fifth of their radius 0.92.
    static let solidityBelow = 0.95
    /// A neck narrower than this share of the smaller particle's inscribed radius separates.
    static let neckRatio = 0.7
    /// Particles whose inscribed radius is smaller than this many pixels are not split off.
    static let minimumRadius = 3.0

    /// The basins of one component, given as the pixels of a width × height box where
    /// `inside(x, y)`: per pixel the basin number (−1 outside), and the number of basins.
    static func basins(width w: Int, height h: Int, inside: (Int, Int) -> Bool) -> (basin: [Int32], count: Int) {
        let d2 = DistanceTransform.squared(width: w, height: h, isSet: inside)
        // Highest distance first, ties in raster order: a counting sort on the squared distances
        // (whole numbers of pixels²).
        var top = 0
        for v in d2 where Int(v) > top { top = Int(v) }
        var start = [Int](repeating: 0, count: top + 2)
        for v in d2 where v > 0 { start[top - Int(v) + 1] += 1 }
        for k in 1..<start.count { start[k] += start[k - 1] }
        var order = [Int32](repeating: 0, count: start[top + 1])
        for i in 0..<(w * h) where d2[i] > 0 {
            let k = top - Int(d2[i])
            order[start[k]] = Int32(i); start[k] += 1
        }
        var pixelSet = [Int32](repeating: -1, count: w * h)
        var sets = UnionFind(count: 0)
        var peak: [Double] = []
        var roots: [Int32] = []
        roots.reserveCapacity(8)
        for i32 in order {
            let i = Int(i32), x = i % w, y = i / w
            let level = d2[i].squareRoot()
            roots.removeAll(keepingCapacity: true)
            var best: Int32 = -1, bestLevel = -1.0  // the highest labelled neighbour
            for dy in -1...1 { for dx in -1...1 where dx != 0 || dy != 0 {
                let nx = x + dx, ny = y + dy
                guard nx >= 0, ny >= 0, nx < w, ny < h else { continue }
                let n = ny * w + nx, set = pixelSet[n]
                guard set >= 0 else { continue }
                let r = sets.find(set)
                if !roots.contains(r) { roots.append(r) }
                if d2[n] > bestLevel { bestLevel = d2[n]; best = set }
            } }
            if roots.isEmpty {
                pixelSet[i] = sets.add(); peak.append(level)
                continue
            }
            // Basins meeting here at `level` (their saddle) merge unless the neck is narrow.
            for a in 0..<roots.count { for b in (a + 1)..<roots.count {
                let ra = sets.find(roots[a]), rb = sets.find(roots[b])
                guard ra != rb else { continue }
                let small = min(peak[Int(ra)], peak[Int(rb)])
                if small < minimumRadius || level >= neckRatio * small {
                    let high = max(peak[Int(ra)], peak[Int(rb)])
                    sets.union(ra, rb)
                    peak[Int(sets.find(ra))] = high
                }
            } }
            pixelSet[i] = best  // the pixel joins the basin of its highest neighbour
        }
        // Number the final basins 0, 1, … in raster order.
        var number = [Int32](repeating: -1, count: sets.count)
        var basin = [Int32](repeating: -1, count: w * h), next: Int32 = 0
        for i in 0..<(w * h) where pixelSet[i] >= 0 {
            let r = Int(sets.find(pixelSet[i]))
            if number[r] < 0 { number[r] = next; next += 1 }
            basin[i] = number[r]
        }
        return (basin, Int(next))
    }
}

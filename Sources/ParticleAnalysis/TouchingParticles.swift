/// Splits particles that touch into one label each, as a microscopist outlining them would: the
/// distance to the background peaks once inside each particle and dips at the neck where two
/// meet. Pixels are flooded from the highest distance down (a watershed on the distance
/// transform); two basins that meet are one particle unless the neck where they meet is
/// narrower than `neckRatio` of the smaller basin's peak (its inscribed radius). A single
/// particle's bumps and facets dip far less, so it stays whole.
package enum TouchingParticles {
    /// A neck narrower than this share of the smaller particle's inscribed radius separates.
    package static let neckRatio: Float = 0.7
    /// Components whose bounding box holds more pixels than this (4096²) are left whole: the
    /// split takes `bytesPerBoxPixel` per pixel of the box, which `segment --memory` allows for
    /// up to this.
    package static let largestBox = 1 << 24
    /// The split's scratch per pixel of a component's box: the distances (framed), the flooding
    /// order and the basin numbers (4 bytes each), and the counting sort's table (at most 2
    /// bytes a pixel).
    package static let bytesPerBoxPixel = 16
    /// Particles whose box holds at most this many pixels (1024²) may be looked at side by side
    /// (`ParticleMeasurement`'s split; `segment` looks at two at a time): 16 MB of scratch each.
    package static let largestSideBySideBox = largestBox / 16
    /// The split's scratch for an image of `pixels`, at most: one box alone (at most the image
    /// and `largestBox`), or two side by side and the parts kept from them (at least a byte a
    /// pixel of the image, or of the largest box).
    package static func scratchBytes(pixels: Int) -> Int {
        let box = min(pixels, largestBox)
        return max(box * bytesPerBoxPixel, sideBySideBytes(pixels: pixels) + box)
    }
    /// Two boxes side by side, each at most the image and `largestSideBySideBox`.
    static func sideBySideBytes(pixels: Int) -> Int { 2 * min(pixels, largestSideBySideBox) * bytesPerBoxPixel }
    /// The parts the split keeps between its passes (a byte a pixel of a split particle's box):
    /// what two side-by-side boxes leave of `scratchBytes`.
    package static func keptBytes(pixels: Int) -> Int { scratchBytes(pixels: pixels) - sideBySideBytes(pixels: pixels) }
    /// Particles whose inscribed radius is smaller than this many pixels are not split off.
    package static let minimumRadius: Float = 3
    /// The least d² whose peak (its square root, as the flooding takes it) reaches
    /// `minimumRadius`: where a basin that merges only at a wide neck can start (`hasOnePeak`
    /// looks for such pixels; the flooding counts the sets started there).
    static let leastPeakLevel2: Int32 = {
        var l = Int32((minimumRadius * minimumRadius).rounded(.down))
        while l > 0 && Float(l - 1).squareRoot() >= minimumRadius { l -= 1 }
        while Float(l).squareRoot() < minimumRadius { l += 1 }
        return l
    }()

    /// Basins grouped into particles: each basin of at least `minimumArea` pixels is a part; a
    /// smaller one joins the basin it shares the longest boundary with (repeatedly, so a chain
    /// of small ones ends in a large one). `of[b]` is basin b's part, `largest` the part with the
    /// most pixels; nil when fewer than two parts remain.
    static func parts(_ basin: [Int32], count: Int, width w: Int, minimumArea: Int) -> (of: [Int], count: Int, largest: Int)? {
        let h = basin.count / max(1, w)
        var area = [Int](repeating: 0, count: count)
        for b in basin where b >= 0 { area[Int(b)] += 1 }
        // Shared boundary lengths between basins (4-neighbours).
        var shared: [Int: Int] = [:]
        func note(_ a: Int32, _ b: Int32) {
            guard a >= 0, b >= 0, a != b else { return }
            shared[Int(min(a, b)) * count + Int(max(a, b)), default: 0] += 1
        }
        for y in 0..<h { for x in 0..<w {
            let b = basin[y * w + x]
            if x + 1 < w { note(b, basin[y * w + x + 1]) }
            if y + 1 < h { note(b, basin[(y + 1) * w + x]) }
        } }
        // Each small basin's destination: the neighbour with the longest shared boundary (ties
        // to the lower number), from one pass over the boundaries; large basins are their own.
        var target = Array(0..<count), bestLength = [Int](repeating: 0, count: count)
        for (key, length) in shared {
            for (b, other) in [(key / count, key % count), (key % count, key / count)] where area[b] < minimumArea {
                if length > bestLength[b] || (length == bestLength[b] && other < target[b]) { target[b] = other; bestLength[b] = length }
            }
        }
        func resolve(_ b: Int) -> Int {  // follow small basins' targets to a large one (or a cycle's end)
            var x = b, steps = 0
            while target[x] != x && area[x] < minimumArea && steps < count { x = target[x]; steps += 1 }
            return x
        }
        var partOf = [Int](repeating: -1, count: count), number: [Int: Int] = [:]
        var partArea: [Int] = []
        for b in 0..<count {
            let root = resolve(b)
            if number[root] == nil { number[root] = partArea.count; partArea.append(0) }
            partOf[b] = number[root]!
            partArea[partOf[b]] += area[b]
        }
        let large = partArea.filter { $0 >= minimumArea }.count
        guard large >= 2 else { return nil }
        let largest = partArea.indices.max { partArea[$0] < partArea[$1] }!
        // A small part with no large neighbour (rare: small basins only touching each other)
        // goes with the largest part rather than being a particle below the minimum.
        for b in 0..<count where partArea[partOf[b]] < minimumArea { partOf[b] = largest }
        return (partOf, partArea.count, largest)
    }

    /// Whether the flooding of one 8-connected component is bound to end in one basin (or none),
    /// found without flooding: two basins of a component meet, and stay apart only if both
    /// peaks reach `minimumRadius`; a basin starts at a pixel
    /// none of whose 8 neighbours is higher. Such pixels next to each other are of one level, so
    /// when all those at d ≥ `minimumRadius` form one 8-connected group, they are one plateau,
    /// the highest: the basins started there merge as it floods (at their peak's level), and
    /// every other basin, its peak lower, merges with whatever it meets. `level2`: d² on the box
    /// with a one-pixel frame of zeros. Also the least d² of those pixels, `lowest`: no basin
    /// whose peak reaches `minimumRadius` starts below it (0 where there is one such pixel or none).
    package static func hasOnePeak(_ level2: [Int32], width pw: Int, height ph: Int) -> (one: Bool, lowest: Int32) {
        let least = leastPeakLevel2
        var peaks: [Int] = []
        level2.withUnsafeBufferPointer { L in
            let base = L.baseAddress!
            // A pixel no lower than its 8 neighbours: 8 lanes at a time (the vector loads read
            // the rows above and below and the neighbours beside), the few candidates one by one.
            typealias Lanes = SIMD8<Int32>
            func lanes(_ p: UnsafePointer<Int32>) -> Lanes { UnsafeRawPointer(p).loadUnaligned(as: Lanes.self) }
            func isPeak(_ i: Int) -> Bool {
                let v = base[i]
                return v >= least && base[i - pw - 1] <= v && base[i - pw] <= v && base[i - pw + 1] <= v && base[i - 1] <= v
                    && base[i + 1] <= v && base[i + pw - 1] <= v && base[i + pw] <= v && base[i + pw + 1] <= v
            }
            for y in 1..<max(1, ph - 1) {
                var i = y * pw + 1
                let end = y * pw + pw - 1
                while i + Lanes.scalarCount <= end {
                    let v = lanes(base + i)
                    let up = base + i - pw, down = base + i + pw
                    let around = pointwiseMax(pointwiseMax(pointwiseMax(lanes(up - 1), lanes(up)), pointwiseMax(lanes(up + 1), lanes(base + i - 1))),
                                              pointwiseMax(pointwiseMax(lanes(base + i + 1), lanes(down - 1)), pointwiseMax(lanes(down), lanes(down + 1))))
                    let candidate = (v .>= Lanes(repeating: least)) .& (v .>= around)
                    if any(candidate) {
                        for k in 0..<Lanes.scalarCount where candidate[k] { peaks.append(i + k) }
                    }
                    i += Lanes.scalarCount
                }
                while i < end { if isPeak(i) { peaks.append(i) }; i += 1 }
            }
        }
        guard peaks.count > 1 else { return (true, 0) }
        let lowest = peaks.map { level2[$0] }.min()!
        // One 8-connected group? (A walk from the first, through the others.)
        var unvisited = Set(peaks.dropFirst()), stack = [peaks[0]]
        while let i = stack.popLast() {
            for o in [-pw - 1, -pw, -pw + 1, -1, 1, pw - 1, pw, pw + 1] where unvisited.remove(i + o) != nil { stack.append(i + o) }
        }
        return (unvisited.isEmpty, lowest)
    }

    /// The basins of one component, given as the pixels of a width × height box where
    /// `inside(x, y)`: per pixel the basin number (−1 outside), and the number of basins.
    /// (`TouchingParticlesTests` checks it against a plain twin, pixel for pixel.)
    /// `connected`: the pixels inside are one 8-connected component (a particle), which lets
    /// most be done without flooding (`hasOnePeak`).
    package static func basins(width w: Int, height h: Int, connected: Bool = false, inside: (Int, Int) -> Bool) -> (basin: [Int32], count: Int) {
        basins(width: w, height: h, connected: connected) { y, flags in
            for x in 0..<w { flags[x] = inside(x, y) ? 1 : 0 }
        }
    }

    /// The same, the box given row by row: `setRow(y, flags)` sets flags[x] to 1 for a pixel
    /// inside, 0 for one outside (x in 0 ..< w). `onlyIfSeveral`: the basin numbers are wanted
    /// only where there are two or more (a component found to have one gets none: `basin` empty).
    /// `flooded`, where given, is told how many pixels were flooded (the tests check that the
    /// flooding stops early where it can).
    package static func basins(width w: Int, height h: Int, connected: Bool = false, onlyIfSeveral: Bool = false,
                               flooded: ((Int) -> Void)? = nil,
                               setRow: (Int, UnsafeMutablePointer<Int32>) -> Void) -> (basin: [Int32], count: Int) {
        // The flooding works on the box with a one-pixel frame (never labelled), so a pixel's
        // 8 neighbours are fixed offsets with no bounds checks; `level2` holds d² there. Peak
        // scratch: the framed d², the order and the basins (`bytesPerBoxPixel`).
        let pw = w + 2, ph = h + 2
        let level2 = DistanceTransform.squaredFramed(width: w, height: h, setRow: setRow)
        let peaks = connected ? hasOnePeak(level2, width: pw, height: ph) : (one: false, lowest: Int32.min)
        if peaks.one {
            flooded?(0)
            if onlyIfSeveral { return ([], level2.contains { $0 > 0 } ? 1 : 0) }
            var inside = false
            let basin = level2.withUnsafeBufferPointer { L in
                [Int32](unsafeUninitializedCapacity: w * h) { b, count in
                    for y in 0..<h {
                        let row = L.baseAddress! + (y + 1) * pw + 1, out = b.baseAddress! + y * w
                        var rowMax: Int32 = 0
                        for x in 0..<w { out[x] = row[x] > 0 ? 0 : -1; rowMax = max(rowMax, row[x]) }
                        if rowMax > 0 { inside = true }
                    }
                    count = w * h
                }
            }
            return (basin, inside ? 1 : 0)
        }
        var top = 0
        for v in level2 where Int(v) > top { top = Int(v) }
        // Highest distance first, ties in raster order: a counting sort on the squared distances
        // (whole numbers of pixels²), giving framed indices.
        var start = [Int](repeating: 0, count: top + 2)
        for v in level2 where v > 0 { start[top - Int(v) + 1] += 1 }
        for k in 1..<start.count { start[k] += start[k - 1] }
        var order = [Int32](repeating: 0, count: start[top + 1])
        for i in 0..<level2.count where level2[i] > 0 {  // the frame is 0: interior pixels in raster order
            let k = top - Int(level2[i])
            order[start[k]] = Int32(i); start[k] += 1
        }
        var pixelSet = [Int32](repeating: -1, count: pw * ph)
        var sets = UnionFind(count: 0)
        var peak: [Float] = []
        // The neighbours in the order the rows above, then this row, then the row below are read
        // (ties for the highest go to the first).
        let offsets = [-pw - 1, -pw, -pw + 1, -1, 1, pw - 1, pw, pw + 1]
        var rootsArray = [Int32](repeating: 0, count: 8)
        // Sets whose peak reaches `minimumRadius`, as roots (two such merge only at a wide neck;
        // any other merges with whatever it meets). Once one is left and the flooding is below
        // every pixel where such a set can start (`peaks.lowest`), the sets left all end in it:
        // a component found to have one basin is known without flooding the rest (about half
        // its pixels, the lower ones).
        var significant = 0, oneLeft = false, floodedPixels = 0
        level2.withUnsafeBufferPointer { L in pixelSet.withUnsafeMutableBufferPointer { P in
          offsets.withUnsafeBufferPointer { offsets in rootsArray.withUnsafeMutableBufferPointer { roots in
            for p32 in order {
                let p = Int(p32)
                if onlyIfSeveral && significant == 1 && L[p] < peaks.lowest { oneLeft = true; break }
                floodedPixels += 1
                // The smallest and largest set number among the labelled neighbours (unlabelled:
                // −1, UInt32.max as a bit pattern): integer maxima and minima, no branches.
                let q = P.baseAddress! + p
                let s0 = q[-pw - 1], s1 = q[-pw], s2 = q[-pw + 1], s3 = q[-1], s4 = q[1], s5 = q[pw - 1], s6 = q[pw], s7 = q[pw + 1]
                let highest = max(max(max(s0, s1), max(s2, s3)), max(max(s4, s5), max(s6, s7)))
                func u(_ s: Int32) -> UInt32 { UInt32(bitPattern: s) }
                let lowest = min(min(min(u(s0), u(s1)), min(u(s2), u(s3))), min(min(u(s4), u(s5)), min(u(s6), u(s7))))
                if highest < 0 {
                    P[p] = sets.add(); peak.append(Float(L[p]).squareRoot())
                    if L[p] >= leastPeakLevel2 { significant += 1 }  // its peak reaches minimumRadius
                    continue
                }
                // Neighbours that all carry one set number are one basin (most pixels): the
                // pixel joins it.
                if lowest == u(highest) { P[p] = highest; continue }
                // The highest labelled neighbour (the first of equals) as the largest key
                // 8·d² + 7 − k of neighbour k (−1 when unlabelled: its set, −1, or-ed in).
                var bestKey: Int32 = -1
                for k in 0..<8 {
                    let n = p + offsets[k]
                    bestKey = max(bestKey, (L[n] &<< 3 | Int32(7 - k)) | (P[n] &>> 31))
                }
                let best = P[p + offsets[7 - Int(bestKey & 7)]]
                // Different numbers need their roots, and two roots or more make a saddle.
                var rootCount = 0
                for o in offsets {
                    let set = P[p + o]
                    guard set >= 0 else { continue }
                    let r = sets.find(set)
                    var seen = false
                    for k in 0..<rootCount where roots[k] == r { seen = true; break }
                    if !seen { roots[rootCount] = r; rootCount += 1 }
                }
                if rootCount > 1 {
                    // Basins meeting here at `level` (their saddle) merge unless the neck is narrow.
                    let level = Float(L[p]).squareRoot()
                    for a in 0..<rootCount { for b in (a + 1)..<rootCount {
                        let ra = sets.find(roots[a]), rb = sets.find(roots[b])
                        guard ra != rb else { continue }
                        let small = min(peak[Int(ra)], peak[Int(rb)])
                        if small < minimumRadius || level >= neckRatio * small {
                            if small >= minimumRadius { significant -= 1 }
                            let high = max(peak[Int(ra)], peak[Int(rb)])
                            sets.union(ra, rb)
                            peak[Int(sets.find(ra))] = high
                        }
                    } }
                }
                P[p] = best  // the pixel joins the basin of its highest neighbour
            }
          } }
        } }
        flooded?(floodedPixels)
        if oneLeft { return ([], 1) }
        // The final basins, numbered 0, 1, … in raster order, without the frame: moved in place
        // (a pixel's unframed index is never past its framed one).
        for y in 0..<h { for x in 0..<w {
            let set = pixelSet[(y + 1) * pw + x + 1]
            pixelSet[y * w + x] = set >= 0 ? sets.find(set) : -1
        } }
        pixelSet.removeLast(pixelSet.count - w * h)
        let count = pixelSet.withUnsafeMutableBufferPointer { renumberInOrder($0, maxId: sets.count, first: 0) }
        return (onlyIfSeveral && count < 2 ? [] : pixelSet, count)
    }
}

import CNanoSupport
import Foundation
import MicrographIO
import Preprocessing

/// Particles of a segmentation mask: holes filled, 8-connected components, small objects
/// removed, every particle measured (see `Particle`).
public struct ParticleMeasurement: Sendable {
    /// Particle ids per pixel (0 = background), numbered 1… in raster order after removal.
    public var labels: ComponentLabels
    public var particles: [Particle]

    /// The longest side a mask may have (1 048 576 pixels): runs hold 32-bit columns and rows,
    /// and a row's exact integer sums of x² stay within `Int` up to this length.
    public static let largestSide = 1 << 20

    /// Why a `width` × `height` mask cannot be measured, or nil: callers with a file name say
    /// this as its error instead of reaching the measurement's fatal check.
    public static func sizeProblem(width: Int, height: Int) -> String? {
        width <= largestSide && height <= largestSide ? nil
            : "image is \(width)×\(height) pixels; neither side may be over \(largestSide) to be measured"
    }

    /// - Parameters:
    ///   - probability: the particle probability per pixel, for `meanProbability`.
    ///   - pixelSizeNm: nm per pixel, for the nm columns and `minimumAreaNm2`.
    ///   - minimumAreaNm2: objects smaller than this are removed (needs the pixel size);
    ///   - minimumAreaPx: … and smaller than this many pixels.
    ///   - splitTouching: particles that touch (a narrow neck between two inscribed circles) are
    ///     split along the neck into one particle each (`TouchingParticles`).
    ///   - specimenHeight: the rows that show specimen, when the image's last rows do not (an
    ///     SEM's information bar, left empty in the mask): a particle reaching the last of them is
    ///     cut there, and flagged `touchesBorder` as at the image's edges (a height outside
    ///     1 ... the mask's is ignored).
    ///   - outside: pixels beyond which the specimen is not seen (a micrograph's padding, NaN
    ///     pixels reaching its edges): a particle next to one (a 4-neighbour) is cut there, and
    ///     flagged `touchesBorder` as at the image's edges.
    ///   - parallel: how the split looks at the particles, and the measuring shares them out
    ///     (side by side or `serially`: the same result, bit for bit, either way).
    ///   - labelled: given the labels as soon as they are final, before the particles are
    ///     measured (a caller may start writing them meanwhile): called once, on this thread.
    public init(mask: BinaryMask, probability: [Float]? = nil, pixelSizeNm: Double? = nil,
                minimumAreaNm2: Double = 0, minimumAreaPx: Int = 1, splitTouching: Bool = false,
                specimenHeight: Int? = nil, outside: BinaryMask? = nil, parallel: ParallelFor = serially,
                labelled: (ComponentLabels) -> Void = { _ in }) {
        let w = mask.width, h = mask.height
        // Checks that stay on: this target builds with -Ounchecked, which drops bounds checks.
        if let problem = ParticleMeasurement.sizeProblem(width: w, height: h) { fatalError("ParticleMeasurement: \(problem)") }
        if let probability, probability.count != w * h {
            fatalError("ParticleMeasurement: \(probability.count) probabilities for a \(w)×\(h) mask")
        }
        if let outside, outside.width != w || outside.height != h {
            fatalError("ParticleMeasurement: a \(outside.width)×\(outside.height) outside mask for a \(w)×\(h) mask")
        }
        let runs = mask.values.withUnsafeBufferPointer { Runs(holesFilledOf: $0, width: w, height: h) }
        let (component, count) = runs.components(connectivity8: true)
        let minimum = ParticleMeasurement.minimumPixels(width: w, height: h, px: minimumAreaPx, nm2: minimumAreaNm2,
                                                        pixelSizeNm: pixelSizeNm)
        let (runLabels, kept) = ParticleMeasurement.keepingLarge(runs, component, count: count, minimum: minimum)
        labels = ComponentLabels(runs: runs, runLabels: runLabels, count: kept.count)
        particles = []
        // The last row of specimen (a height outside 1 ... h is the image's).
        let lastRow = (specimenHeight.flatMap { $0 >= 1 && $0 <= h ? $0 : nil } ?? h) - 1
        // Split first (it needs only each particle's box and area), then measure once.
        if splitTouching, let split = splitTouchingParticles(ParticleMeasurement.boxes(runs, runLabels, count: kept.count),
                                                            minimumArea: minimum, parallel: parallel) {
            let (relabelled, splitLabels) = renumberAfterSplit(runs, runLabels, split: split)
            labelled(labels)
            particles = ParticleMeasurement.measure(relabelled, splitLabels, labels, probability: probability, pixelSizeNm: pixelSizeNm,
                                                    lastRow: lastRow, outside: outside, parallel: parallel)
        } else {
            labelled(labels)
            particles = ParticleMeasurement.measure(runs, runLabels, labels, probability: probability, pixelSizeNm: pixelSizeNm,
                                                    lastRow: lastRow, outside: outside, parallel: parallel)
        }
    }

    /// The particles of a label image, each id one particle, measured as the image gives them:
    /// no holes filled (a hole may hold another particle), no splitting, and an id's pixels
    /// need not touch. Ids below the smallest area are dropped, as a mask's small objects.
    /// `labels` numbers the particles kept 1, 2, … in raster order of their first pixels (as a
    /// mask's); each particle's `id` is the image's own, so the table refers to the file.
    public init(labelImage image: LabelImage, probability: [Float]? = nil, pixelSizeNm: Double? = nil,
                minimumAreaNm2: Double = 0, minimumAreaPx: Int = 1, parallel: ParallelFor = serially) {
        let w = image.width, h = image.height
        if let problem = ParticleMeasurement.sizeProblem(width: w, height: h) { fatalError("ParticleMeasurement: \(problem)") }
        if let probability, probability.count != w * h {
            fatalError("ParticleMeasurement: \(probability.count) probabilities for a \(w)×\(h) label image")
        }
        let (runs, component, fileIds) = LabelImage.runs(of: image)
        let minimum = ParticleMeasurement.minimumPixels(width: w, height: h, px: minimumAreaPx, nm2: minimumAreaNm2,
                                                        pixelSizeNm: pixelSizeNm)
        let (runLabels, kept) = ParticleMeasurement.keepingLarge(runs, component, count: fileIds.count, minimum: minimum)
        labels = ComponentLabels(runs: runs, runLabels: runLabels, count: kept.count)
        particles = ParticleMeasurement.measure(runs, runLabels, labels, probability: probability, pixelSizeNm: pixelSizeNm,
                                                lastRow: h - 1, parallel: parallel)
        for k in particles.indices { particles[k].id = Int(fileIds[kept[particles[k].id - 1]]) }
    }

    /// The smallest particle in pixels: `px`, or `nm2` at the pixel size where that is more,
    /// capped where the quotient leaves Int's range (a huge area or a tiny pixel): then no object
    /// of a `width` × `height` image is large enough.
    static func minimumPixels(width w: Int, height h: Int, px: Int, nm2: Double, pixelSizeNm: Double?) -> Int {
        let minimum = max(1, px)
        guard let p = pixelSizeNm, p > 0, nm2 > 0 else { return minimum }
        let pixels = (nm2 / (p * p)).rounded(.up)
        return pixels.isFinite && pixels < Double(w * h + 1) ? max(minimum, Int(pixels)) : w * h + 1
    }

    /// The components (`component[r]`: run r's, 0 ..< count) of at least `minimum` pixels,
    /// numbered 1, 2, … in their order: each run's label (0 for a dropped component), and the
    /// component each label came from (`kept[label − 1]`).
    static func keepingLarge(_ runs: Runs, _ component: [Int32], count: Int, minimum: Int) -> (runLabels: [Int32], kept: [Int]) {
        var area = [Int](repeating: 0, count: count)
        for r in 0..<runs.count { area[Int(component[r])] += Int(runs.x1[r] - runs.x0[r]) }
        var newId = [Int32](repeating: 0, count: count)
        var kept: [Int] = []
        for c in 0..<count where area[c] >= minimum { kept.append(c); newId[c] = Int32(kept.count) }
        return (component.map { newId[Int($0)] }, kept)
    }

    /// Segment's smallest particle, in the two forms the initialiser takes: `nm2` where the pixel
    /// size is known (then at least 1 px), else `uncalibratedPx` pixels. Segment, measure and
    /// evaluate all take it from here.
    public static let smallestParticleNm2 = 0.5, smallestParticlePxUncalibrated = 20
    public static func minimumAreas(pixelSizeNm: Double?, nm2: Double = smallestParticleNm2,
                                    uncalibratedPx: Int = smallestParticlePxUncalibrated) -> (nm2: Double, px: Int) {
        pixelSizeNm == nil ? (0, uncalibratedPx) : (nm2, 1)
    }

    /// Each label's bounding box (first and one-past-last column and row) and area, from its runs.
    static func boxes(_ runs: Runs, _ runLabels: [Int32], count: Int) -> [(x0: Int, y0: Int, x1: Int, y1: Int, area: Int)] {
        var boxes = [(x0: Int, y0: Int, x1: Int, y1: Int, area: Int)](repeating: (Int.max, Int.max, 0, 0, 0), count: count + 1)
        for r in 0..<runs.count where runLabels[r] != 0 {
            let l = Int(runLabels[r]), y = Int(runs.y[r]), a = Int(runs.x0[r]), b = Int(runs.x1[r])
            boxes[l].x0 = min(boxes[l].x0, a); boxes[l].x1 = max(boxes[l].x1, b)
            boxes[l].y0 = min(boxes[l].y0, y); boxes[l].y1 = max(boxes[l].y1, y + 1)
            boxes[l].area += b - a
        }
        return boxes
    }

    /// Splits each particle whose distance transform has separate peaks joined by a narrow neck,
    /// then numbers the labels in raster order again (the caller measures them). Only parts of at
    /// least `minimumArea` pixels become particles: smaller basins join the neighbouring basin
    /// they share the longest boundary with, the largest part keeps the id. Every particle large
    /// enough for two parts is looked at: a cheaper gate on solidity (area / convex hull) missed a
    /// large particle touching a small one (radii 80 and 20 px: solidity 0.95, as a single
    /// pixelated disc of radius 10; the solidity then was the continuous hull's).
    ///
    /// Particles whose box holds more than `TouchingParticles.largestSideBySideBox` pixels are
    /// split first, one at a time. The others in two passes: the first finds which split and how,
    /// reading the labels only, and may look at several side by side (`parallel`), keeping the
    /// parts it finds within `TouchingParticles.keptBytes`; the second writes them (finding again
    /// those it could not keep). The same labels however the pieces run.
    /// `boxes[id]`: each label's box and area (index 0 unused). Returns, when any particle was
    /// split, which ids were (`renumberAfterSplit` numbers the labels in raster order again).
    mutating func splitTouchingParticles(_ boxes: [(x0: Int, y0: Int, x1: Int, y1: Int, area: Int)], minimumArea: Int,
                                         parallel: ParallelFor = serially) -> [Bool]? {
        let w = labels.width
        // Two parts each need `minimumArea` pixels and an inscribed radius of `minimumRadius`:
        // at least the pixels within that distance of a centre pixel (25 for a radius of 3).
        let r = Int(TouchingParticles.minimumRadius.rounded(.up))
        var disc = 0
        for dy in -r...r { for dx in -r...r where Float(dx * dx + dy * dy) < TouchingParticles.minimumRadius * TouchingParticles.minimumRadius { disc += 1 } }
        let smallestPair = 2 * max(minimumArea, disc)
        func boxPixels(_ id: Int) -> Int { (boxes[id].x1 - boxes[id].x0) * (boxes[id].y1 - boxes[id].y0) }
        let candidates = (1..<max(1, boxes.count)).filter { boxes[$0].area >= smallestPair && boxPixels($0) <= TouchingParticles.largestBox }
        guard !candidates.isEmpty else { return nil }
        // Each particle's basins, grouped into parts (nil: it stays whole).
        func parts(_ L: UnsafeBufferPointer<Int32>, _ id: Int) -> (basin: [Int32], of: [Int], count: Int, largest: Int)? {
            let (x0, y0, x1, y1, _) = boxes[id]
            let bw = x1 - x0, id32 = Int32(id)
            let (basin, count) = TouchingParticles.basins(width: bw, height: y1 - y0, connected: true, onlyIfSeveral: true) { y, flags in
                let row = L.baseAddress! + (y0 + y) * w + x0
                // The box's row 4 below asked for now: each row is a jump in the large labels.
                if y0 + y + 4 < y1 { for x in stride(from: 0, to: bw, by: 16) { nf_prefetch(row + 4 * w + x) } }
                for x in 0..<bw { flags[x] = row[x] == id32 ? 1 : 0 }
            }
            guard count > 1, let p = TouchingParticles.parts(basin, count: count, width: bw, minimumArea: minimumArea) else { return nil }
            return (basin, p.of, p.count, p.largest)
        }
        // A particle's parts written: the largest keeps the id, the others take new ones (above
        // every id there was, so no other particle's test `== id` changes; once the labels are
        // numbered in raster order below, they do not depend on the order taken here).
        var next = Int32(labels.count)
        var split = [Bool](repeating: false, count: labels.count + 1)
        func write(_ id: Int, count: Int, largest: Int, part: (Int) -> Int?) {
            let (x0, y0, x1, y1, _) = boxes[id]
            let bw = x1 - x0, bh = y1 - y0
            var newId = [Int32](repeating: Int32(id), count: count)
            for k in 0..<count where k != largest { next += 1; newId[k] = next }
            split[id] = true
            for y in 0..<bh { for x in 0..<bw {
                if let k = part(y * bw + x) { labels.labels[(y0 + y) * w + x0 + x] = newId[k] }
            } }
        }
        // Large boxes, one at a time.
        for id in candidates where boxPixels(id) > TouchingParticles.largestSideBySideBox {
            guard let p = labels.labels.withUnsafeBufferPointer({ parts($0, id) }) else { continue }
            write(id, count: p.count, largest: p.largest) { p.basin[$0] >= 0 ? p.of[Int(p.basin[$0])] : nil }
        }
        // The rest side by side, in interleaved pieces (neighbouring ids are often of similar
        // size): which split, and their parts, kept (a byte a pixel of the box) while they fit
        // `keptBytes`.
        final class Found: @unchecked Sendable {
            let lock = NSLock()
            var parts: [Int: (part: [UInt8], count: Int, largest: Int)] = [:], keptBytes = 0, splits: [Int] = []
        }
        let found = Found(), keptBudget = TouchingParticles.keptBytes(pixels: labels.labels.count)
        let small = candidates.filter { boxPixels($0) <= TouchingParticles.largestSideBySideBox }
        labels.labels.withUnsafeBufferPointer { L in
            let count = min(small.count, 64)
            parallel(count) { k in
                for i in stride(from: k, to: small.count, by: count) {
                    guard let p = parts(L, small[i]) else { continue }
                    found.lock.lock()
                    found.splits.append(small[i])
                    let keep = p.count < 255 && found.keptBytes + p.basin.count <= keptBudget
                    if keep { found.keptBytes += p.basin.count }
                    found.lock.unlock()
                    guard keep else { continue }
                    let part = p.basin.map { $0 >= 0 ? UInt8(p.of[Int($0)]) : 255 }
                    found.lock.lock(); found.parts[small[i]] = (part, p.count, p.largest); found.lock.unlock()
                }
            }
        }
        // Their parts written: those kept first (and let go), then those found again.
        let splits = found.splits.sorted()
        for id in splits.filter({ found.parts[$0] != nil }) + splits.filter({ found.parts[$0] == nil }) {
            if let kept = found.parts.removeValue(forKey: id) {
                write(id, count: kept.count, largest: kept.largest) { kept.part[$0] != 255 ? Int(kept.part[$0]) : nil }
            } else if let p = labels.labels.withUnsafeBufferPointer({ parts($0, id) }) {
                write(id, count: p.count, largest: p.largest) { p.basin[$0] >= 0 ? p.of[Int(p.basin[$0])] : nil }
            }
        }
        return split.contains(true) ? split : nil
    }

    /// After `splitTouchingParticles`: the runs of the labels (those of a particle that was
    /// split, `split[id]`, cut where the label changes, read from the labels in the run's span;
    /// the others as they were), and the labels numbered again in raster order of each
    /// particle's first pixel, painted from the runs. Returns the runs and each run's label.
    /// Works on the particles' runs and pixels only, never the whole image.
    mutating func renumberAfterSplit(_ runs: Runs, _ runLabels: [Int32], split: [Bool]) -> (Runs, [Int32]) {
        let w = runs.width
        var out = Runs(width: w, height: runs.height)
        var outLabels: [Int32] = []
        out.y.reserveCapacity(runs.count); out.x0.reserveCapacity(runs.count); out.x1.reserveCapacity(runs.count)
        outLabels.reserveCapacity(runs.count)
        var largest: Int32 = 0
        labels.labels.withUnsafeBufferPointer { L in
            for row in 0..<runs.height {
                out.beginRow(row)
                for r in runs.rowStart[row]..<runs.rowStart[row + 1] where runLabels[r] != 0 {
                    let a = Int(runs.x0[r]), b = Int(runs.x1[r])
                    guard split[Int(runLabels[r])] else {
                        out.append(row: row, from: a, to: b); outLabels.append(runLabels[r]); continue
                    }
                    // Every pixel of a split particle carries one of its parts' labels (nonzero).
                    let line = L.baseAddress! + row * w
                    var x = a
                    while x < b {
                        let start = x, k = line[x]
                        while x < b && line[x] == k { x += 1 }
                        out.append(row: row, from: start, to: x); outLabels.append(k)
                        largest = max(largest, k)
                    }
                }
            }
        }
        out.finish()
        // Numbers in order of first appearance: runs are in raster order.
        var number = [Int32](repeating: 0, count: Int(max(largest, Int32(split.count - 1))) + 1)
        var next: Int32 = 0
        for r in 0..<outLabels.count {
            let l = Int(outLabels[r])
            if number[l] == 0 { next += 1; number[l] = next }
            outLabels[r] = number[l]
        }
        labels.count = Int(next)
        labels.labels.withUnsafeMutableBufferPointer { L in
            for r in 0..<out.count {
                (L.baseAddress! + Int(out.y[r]) * w + Int(out.x0[r])).update(repeating: outLabels[r], count: Int(out.x1[r] - out.x0[r]))
            }
        }
        return (out, outLabels)
    }

    struct Sums {
        var n = 0, sx = 0.0, sy = 0.0, sxx = 0.0, syy = 0.0, sxy = 0.0, prob = 0.0
        var x0 = Int.max, y0 = Int.max, x1 = 0, y1 = 0, border = false
        var perimeter = 0.0
        /// The hull's points row by row (`HullRows`).
        var hullRows = HullRows()
    }

    /// Every particle's measures from its runs: moments in closed form per run, the perimeter
    /// (scikit-image's, from the border pixels' neighbourhoods) along each run's pixels. A run on
    /// the first or `lastRow` (or past it) or at either side, or next to a pixel `outside`,
    /// touches the border. The particles are shared out by id between `parallel`'s pieces (odd
    /// and even ids: two ranges of about equal pixels measured no faster, 0.067-0.077 s against
    /// 0.066 s for `segment_4096`'s particles, AMD EPYC fam 26 mod 2), each piece going through
    /// every run but taking only its own particles', in the same order: the sums, so the
    /// measures, are those of one pass, bit for bit.
    static func measure(_ runs: Runs, _ runLabels: [Int32], _ labels: ComponentLabels, probability: [Float]?,
                        pixelSizeNm: Double?, lastRow: Int, outside: BinaryMask? = nil, parallel: ParallelFor = serially) -> [Particle] {
        let w = runs.width, h = runs.height
        let pieces = labels.count > 1 ? 2 : 1
        var sums = [Sums](repeating: Sums(), count: labels.count + 1)
        // Whether the run y, a ..< b has a 4-neighbour outside the specimen.
        func nextToOutside(_ y: Int, _ a: Int, _ b: Int) -> Bool {
            guard let outside else { return false }
            return outside.values.withUnsafeBufferPointer { O in
                let o = O.baseAddress!
                return (a > 0 && o[y * w + a - 1] != 0) || (b < w && o[y * w + b] != 0)
                    || (y > 0 && Runs.firstNonzero(o + (y - 1) * w, from: a, to: b) < b)
                    || (y + 1 < h && Runs.firstNonzero(o + (y + 1) * w, from: a, to: b) < b)
            }
        }
        let noProbabilities: [Float] = []
        (probability ?? noProbabilities).withUnsafeBufferPointer { P in
        labels.labels.withUnsafeBufferPointer { L in sums.withUnsafeMutableBufferPointer { sums in parallel(pieces) { piece in
            func at(_ x: Int, _ y: Int) -> Int32 { x < 0 || y < 0 || x >= w || y >= h ? 0 : L[y * w + x] }
            // A border pixel: in the particle with a 4-neighbour outside it (scikit-image erodes with a cross).
            func isBorder(_ x: Int, _ y: Int, _ l: Int32) -> Bool {
                at(x, y) == l && (at(x - 1, y) != l || at(x + 1, y) != l || at(x, y - 1) != l || at(x, y + 1) != l)
            }
            // The probabilities and the rows above and below of the runs ahead, asked for before
            // they are read: each run is a jump to another row of these large maps, where the
            // hardware's prefetching would start only after a few misses.
            func mine(_ r: Int) -> Bool { runLabels[r] != 0 && Int(runLabels[r]) % pieces == piece }
            var asked = 0
            func ask(upTo end: Int) {
                while asked < end {
                    let q = asked
                    asked += 1
                    guard mine(q) else { continue }
                    let start = Int(runs.y[q]) * w + Int(runs.x0[q]), last = start + Int(runs.x1[q] - runs.x0[q]) - 1
                    func lineOf(_ i: Int) {
                        if probability != nil { nf_prefetch(P.baseAddress! + i) }
                        if i >= w { nf_prefetch(L.baseAddress! + i - w) }
                        if i + w < w * h { nf_prefetch(L.baseAddress! + i + w) }
                    }
                    // Every 16 values (a line or two), and the last (a run may end in a line of its own).
                    var i = start
                    while i < last { lineOf(i); i += 16 }
                    lineOf(last)
                }
            }
            for r in 0..<runs.count where mine(r) {
                ask(upTo: min(runs.count, r + 8))
                let l = runLabels[r], li = Int(l)
                let y = Int(runs.y[r]), a = Int(runs.x0[r]), b = Int(runs.x1[r])
                // Σ over the run's pixel centres x + ½ of 1, x, x² (exact integer sums first).
                let len = b - a
                let sumX = (a + b - 1) * len / 2
                func squares(_ n: Int) -> Int { n * (n + 1) * (2 * n + 1) / 6 }  // Σ_{x=0}^{n} x²
                let sumXX = squares(b - 1) - (a > 0 ? squares(a - 1) : 0)
                let n = Double(len), cx = Double(sumX) + 0.5 * n, fy = Double(y) + 0.5
                sums[li].n += len; sums[li].sx += cx; sums[li].sy += n * fy
                sums[li].sxx += Double(sumXX) + Double(sumX) + 0.25 * n; sums[li].syy += n * fy * fy; sums[li].sxy += fy * cx
                if probability != nil {
                    var p = 0.0
                    for x in a..<b { p += Double(P[y * w + x]) }
                    sums[li].prob += p
                }
                sums[li].x0 = min(sums[li].x0, a); sums[li].y0 = min(sums[li].y0, y)
                sums[li].x1 = max(sums[li].x1, b); sums[li].y1 = max(sums[li].y1, y + 1)
                if a == 0 || y == 0 || b == w || y >= lastRow || (!sums[li].border && nextToOutside(y, a, b)) { sums[li].border = true }
                // The edge midpoints of the run's end pixels (in doubled pixel-index coordinates,
                // so they are whole numbers): their hull is that of every pixel's edge midpoints,
                // as scikit-image's convex_hull_image takes it.
                let ya = 2 * y, xa = 2 * a, xb = 2 * (b - 1)
                sums[li].hullRows.extend(ya - 1, xa, xb)
                sums[li].hullRows.extend(ya, xa - 1, xb + 1)
                sums[li].hullRows.extend(ya + 1, xa, xb)
                // The run's border pixels (its ends, and those with the pixel above or below
                // outside the particle), in order along the run.
                var perimeter = 0.0
                func addBorderPixel(_ x: Int) {
                    // scikit-image's perimeter: code = 1 + 2·(4-neighbours on the border) + 10·(diagonal ones)
                    var code = 1
                    if isBorder(x - 1, y, l) { code += 2 }
                    if isBorder(x + 1, y, l) { code += 2 }
                    if isBorder(x, y - 1, l) { code += 2 }
                    if isBorder(x, y + 1, l) { code += 2 }
                    if isBorder(x - 1, y - 1, l) { code += 10 }
                    if isBorder(x + 1, y - 1, l) { code += 10 }
                    if isBorder(x - 1, y + 1, l) { code += 10 }
                    if isBorder(x + 1, y + 1, l) { code += 10 }
                    switch code {
                    case 5, 7, 15, 17, 25, 27: perimeter += 1
                    case 21, 33: perimeter += 2.0.squareRoot()
                    case 13, 23: perimeter += (1 + 2.0.squareRoot()) / 2
                    default: break
                    }
                }
                addBorderPixel(a)
                if y > 0 && y + 1 < h {
                    // Between the ends, 16 pixels at a time: most of a particle's pixels have
                    // their pixels above and below in it.
                    let above = L.baseAddress! + (y - 1) * w, below = above + 2 * w
                    typealias Lanes = SIMD16<Int32>
                    let id = Lanes(repeating: l)
                    var x = a + 1
                    while x + Lanes.scalarCount <= b - 1 {
                        let outside = (UnsafeRawPointer(above + x).loadUnaligned(as: Lanes.self) .!= id)
                            .| (UnsafeRawPointer(below + x).loadUnaligned(as: Lanes.self) .!= id)
                        if any(outside) { for k in 0..<Lanes.scalarCount where outside[k] { addBorderPixel(x + k) } }
                        x += Lanes.scalarCount
                    }
                    while x < b - 1 { if above[x] != l || below[x] != l { addBorderPixel(x) }; x += 1 }
                } else {
                    for x in (a + 1)..<max(a + 1, b - 1) { addBorderPixel(x) }
                }
                if b - 1 > a { addBorderPixel(b - 1) }
                sums[li].perimeter += perimeter
            }
        } } } }
        // Each particle's measures from its sums (its hull the costliest), in the same pieces.
        var particles = [Particle?](repeating: nil, count: labels.count + 1)
        particles.withUnsafeMutableBufferPointer { out in parallel(pieces) { piece in
            for id in stride(from: piece == 0 ? pieces : piece, through: labels.count, by: pieces) { out[id] = particle(id) }  // id % pieces == piece
        } }
        return (1..<max(1, labels.count + 1)).map { particles[$0]! }
        func particle(_ id: Int) -> Particle {
            let s = sums[id]
            let n = Double(s.n)
            let cx = s.sx / n, cy = s.sy / n
            // Second central moments of the pixel centres, plus 1/12 for each pixel's own extent.
            let cxx = s.sxx / n - cx * cx + 1.0 / 12, cyy = s.syy / n - cy * cy + 1.0 / 12, cxy = s.sxy / n - cx * cy
            let common = ((cxx - cyy) * (cxx - cyy) / 4 + cxy * cxy).squareRoot()
            let l1 = (cxx + cyy) / 2 + common, l2 = max(0, (cxx + cyy) / 2 - common)
            var angle = 0.5 * atan2(2 * cxy, cxx - cyy) * 180 / Double.pi
            if angle <= -90 { angle += 180 }
            let hull = Double(s.hullRows.convexHullPixelCount())
            let perimeter = s.perimeter
            return Particle(id: id, centroidX: cx, centroidY: cy, areaPx: s.n, majorAxisPx: 4 * l1.squareRoot(),
                            minorAxisPx: 4 * l2.squareRoot(), orientationDeg: angle, perimeterPx: perimeter,
                            circularity: perimeter > 0 ? 4 * Double.pi * n / (perimeter * perimeter) : 0,
                            eccentricity: l1 > 0 ? (1 - l2 / l1).squareRoot() : 0,
                            solidity: hull > 0 ? min(1, n / hull) : 1,
                            boundingBox: (s.x0, s.y0, s.x1, s.y1), touchesBorder: s.border,
                            meanProbability: probability == nil ? nil : s.prob / n, pixelSizeNm: pixelSizeNm)
        }
    }
}

/// A particle's convex hull image, as scikit-image's `convex_hull_image` makes it
/// (`regionprops`' `area_convex`, which `solidity` divides by): the hull of the pixels' edge
/// midpoints, and every pixel whose centre lies inside it or on it. The points are in doubled
/// pixel-index coordinates (pixel (x, y)'s centre is (2x, 2y)), so the hull's vertices are whole
/// numbers and each row's span is found exactly; they are kept as each doubled row's leftmost
/// and rightmost (the points between lie on the segment joining them, so the hull is the same).
/// Rows come as the runs do, in raster order: a row at most two before the last (a run's rows
/// are its doubled row and the one above and below). (`ParticleMeasurementTests` checks the
/// solidity against a hull of every midpoint and a brute-force count.)
struct HullRows: Sendable {
    var y: [Int] = [], lo: [Int] = [], hi: [Int] = []

    /// Points from x = `from` to `to` on doubled row `row`.
    mutating func extend(_ row: Int, _ from: Int, _ to: Int) {
        var k = y.count - 1
        while k >= 0 && y[k] > row { k -= 1 }
        if k >= 0 && y[k] == row {
            lo[k] = min(lo[k], from); hi[k] = max(hi[k], to)
        } else {
            y.insert(row, at: k + 1); lo.insert(from, at: k + 1); hi.insert(to, at: k + 1)
        }
    }

    /// The pixels of the hull image, the points never sorted: in order of row, then x, they are
    /// sorted for the monotone chain on (row, x).
    func convexHullPixelCount() -> Int {
        var swapped: [(Int, Int)] = []
        swapped.reserveCapacity(2 * y.count)
        for k in y.indices {
            swapped.append((y[k], lo[k]))
            if hi[k] != lo[k] { swapped.append((y[k], hi[k])) }
        }
        return hullPixelCount(monotoneChain(swapped).map { ($0.1, $0.0) })
    }
}

/// Andrew's monotone chain (collinear points dropped) of points sorted by their first
/// coordinate, then the second: the hull's vertices (one point if all are one).
func monotoneChain(_ p: [(Int, Int)]) -> [(Int, Int)] {
    guard let first = p.first else { return [] }
    func cross(_ o: (Int, Int), _ a: (Int, Int), _ b: (Int, Int)) -> Int { (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0) }
    var lower: [(Int, Int)] = [], upper: [(Int, Int)] = []
    for q in p {
        while lower.count >= 2 && cross(lower[lower.count - 2], lower[lower.count - 1], q) <= 0 { lower.removeLast() }
        lower.append(q)
    }
    for q in p.reversed() {
        while upper.count >= 2 && cross(upper[upper.count - 2], upper[upper.count - 1], q) <= 0 { upper.removeLast() }
        upper.append(q)
    }
    let hull = Array(lower.dropLast()) + Array(upper.dropLast())
    return hull.isEmpty ? [first] : hull
}

/// The pixel centres (even doubled coordinates) inside or on a convex polygon (its vertices in
/// order, either way round) in doubled pixel-index coordinates.
func hullPixelCount(_ hull: [(Int, Int)]) -> Int {
    guard !hull.isEmpty else { return 0 }
    // The edges by their lowest row; a sweep down the rows keeps those whose rows hold the
    // current one (a few, the polygon being convex), so each row looks at those alone.
    let edges = (0..<hull.count).map { i in (a: hull[i], b: hull[(i + 1) % hull.count]) }
        .sorted { min($0.a.1, $0.b.1) < min($1.a.1, $1.b.1) }
    let yMin = min(edges[0].a.1, edges[0].b.1), yMax = hull.map(\.1).max()!
    // Rows of pixel centres: even doubled y. On each, the hull's span [lo, hi] as fractions; the
    // centres inside are the even X with lo <= X <= hi.
    func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }  // b > 0
    func ceilDiv(_ a: Int, _ b: Int) -> Int { -floorDiv(-a, b) }
    var count = 0, next = 0
    var active: [(a: (Int, Int), b: (Int, Int))] = []
    var y = yMin + (yMin & 1)
    while y <= yMax {
        while next < edges.count && min(edges[next].a.1, edges[next].b.1) <= y { active.append(edges[next]); next += 1 }
        active.removeAll { max($0.a.1, $0.b.1) < y }
        // Crossing x of each edge whose y-range holds y, as n / d with d > 0; lo = min, hi = max.
        var lo: (n: Int, d: Int)? = nil, hi: (n: Int, d: Int)? = nil
        for (a, b) in active {
            func note(_ c: (n: Int, d: Int)) {
                if lo.map({ c.n * $0.d < $0.n * c.d }) ?? true { lo = c }
                if hi.map({ c.n * $0.d > $0.n * c.d }) ?? true { hi = c }
            }
            if a.1 == b.1 {
                note((a.0, 1)); note((b.0, 1))
            } else {
                note(((a.0 * (b.1 - a.1) + (y - a.1) * (b.0 - a.0)) * (b.1 > a.1 ? 1 : -1), abs(b.1 - a.1)))
            }
        }
        if let lo, let hi {
            // Even X in [lo, hi]: X = 2k with ceil(lo / 2) <= k <= floor(hi / 2).
            let k0 = ceilDiv(lo.n, 2 * lo.d), k1 = floorDiv(hi.n, 2 * hi.d)
            if k1 >= k0 { count += k1 - k0 + 1 }
        }
        y += 2
    }
    return count
}

extension LabelImage {
    /// The image as runs of one id each, each run's id numbered 0, 1, … in raster order of
    /// the ids' first runs, and the image's id of each number.
    static func runs(of image: LabelImage) -> (runs: Runs, id: [Int32], fileIds: [UInt32]) {
        let w = image.width, h = image.height
        var runs = Runs(width: w, height: h)
        var id: [Int32] = [], fileIds: [UInt32] = [], number: [UInt32: Int32] = [:]
        image.values.withUnsafeBufferPointer { v in
            for row in 0..<h {
                runs.beginRow(row)
                guard let line = v.baseAddress.map({ $0 + row * w }) else { continue }
                var x = 0
                while x < w {
                    let value = line[x]
                    guard value != 0 else { x += 1; continue }
                    let start = x
                    while x < w && line[x] == value { x += 1 }
                    runs.append(row: row, from: start, to: x)
                    if let n = number[value] {
                        id.append(n)
                    } else {
                        number[value] = Int32(fileIds.count); id.append(Int32(fileIds.count)); fileIds.append(value)
                    }
                }
            }
        }
        runs.finish()
        return (runs, id, fileIds)
    }

    /// Every image of a file as labels, if it is a label image rather than a mask, for files
    /// that do not say which (`measure --input auto`); nil for a mask. Labels: every pixel of
    /// every image a label (a whole number from 0 to 2³² − 1; NaN counts as 0), each id one
    /// 8-connected piece of its image, and more than one id besides 0 in some image. A mask's
    /// 0/255 (or 0/1, 0/65535) has one id, so it is a mask; so are a mask whose edges a viewer or
    /// a resampling graded and a map of classes or probability levels, whose values lie in many
    /// pieces. (A label image of one particle is the same pixels as a mask of it, and read so.)
    /// Decided once for a file's micrographs (`file`: each one's images, in order).
    /// `pieces` hears why a file of whole numbers with several ids that looks nearly like labels
    /// (its ids in more pieces than ids, but at most twice as many: a label image cropped or
    /// resampled, not a micrograph's thousands of specks) was not taken as labels, so a caller can
    /// say it.
    public static func labelsIfAny(_ file: [Micrograph], pieces: (_ ids: Int, _ pieces: Int) -> Void = { _, _ in }) -> [[LabelImage]]? {
        var all: [[LabelImage]] = [], several = false
        for m in file {
            guard m.channels == 1 || (m.channels == 3 && m.pixelType == .uint8), !m.pixelType.isComplex else { return nil }
            var images: [LabelImage] = []
            for frame in 0..<m.frames {
                guard let image = try? LabelImage(m, frame: frame) else { return nil }
                let (runs, id, fileIds) = LabelImage.runs(of: image)
                if fileIds.count > 1 { several = true }
                // One piece per id: as many 8-connected same-id components as ids.
                let count = runs.components(connectivity8: true, id: id).count
                guard count == fileIds.count else {
                    if fileIds.count > 1 && count <= 2 * fileIds.count { pieces(fileIds.count, count) }
                    return nil
                }
                images.append(image)
            }
            all.append(images)
        }
        return several ? all : nil
    }
}

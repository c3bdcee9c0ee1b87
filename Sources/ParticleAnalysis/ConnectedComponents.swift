import Preprocessing

/// Renumbers the values of `ids` that are ≥ 0 (negative: background) as first, first + 1, … in
/// order of first appearance (raster order for an image); `maxId` bounds the values. Returns how
/// many distinct values there were.
func renumberInOrder(_ ids: UnsafeMutableBufferPointer<Int32>, maxId: Int, first: Int32) -> Int {
    var number = [Int32](repeating: -1, count: maxId + 1)
    var next = first
    for i in 0..<ids.count where ids[i] >= 0 {
        let v = Int(ids[i])
        if number[v] < 0 { number[v] = next; next += 1 }
        ids[i] = number[v]
    }
    return Int(next - first)
}

/// Connected components of a binary mask, numbered 1, 2, … in raster order of their first pixel
/// (the top-most, then left-most); 0 is background.
public struct ComponentLabels: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// One label per pixel, row-major.
    public var labels: [Int32]
    public var count: Int

    /// Labels the pixels where `isSet` holds, with 8-connectivity (diagonal neighbours join) or
    /// 4-connectivity. Two passes with union-find over provisional labels.
    public init(width: Int, height: Int, connectivity8: Bool = true, isSet: (Int) -> Bool) {
        self.width = width; self.height = height
        var labels = [Int32](repeating: 0, count: width * height)
        var sets = UnionFind(count: 1)  // 0: background
        for y in 0..<height {
            let row = y * width, up = row - width
            for x in 0..<width where isSet(row + x) {
                // Neighbours already labelled: left, and the row above (up-left, up, up-right).
                var label: Int32 = 0
                @inline(__always) func join(_ n: Int32) {
                    guard n != 0 else { return }
                    if label == 0 { label = n } else if n != label { sets.union(label, n) }
                }
                if x > 0 { join(labels[row + x - 1]) }
                if y > 0 {
                    join(labels[up + x])
                    if connectivity8 {
                        if x > 0 { join(labels[up + x - 1]) }
                        if x + 1 < width { join(labels[up + x + 1]) }
                    }
                }
                if label == 0 { label = sets.add() }
                labels[row + x] = label
            }
        }
        // Final labels in raster order of each component's first pixel.
        var final = [Int32](repeating: 0, count: sets.count)
        var next: Int32 = 0
        for i in 0..<labels.count where labels[i] != 0 {
            let r = sets.find(labels[i])
            if final[Int(r)] == 0 { next += 1; final[Int(r)] = next }
            labels[i] = final[Int(r)]
        }
        self.labels = labels
        count = Int(next)
    }

    /// The components of a mask's set pixels, found from its runs (see `Runs`): the same labels
    /// as the pixel-by-pixel labelling, several times faster on a large mask.
    public init(_ mask: BinaryMask, connectivity8: Bool = true) {
        let runs = mask.values.withUnsafeBufferPointer { Runs(width: mask.width, height: mask.height, values: $0, set: true) }
        let (component, count) = runs.components(connectivity8: connectivity8)
        self.init(runs: runs, runLabels: component.map { $0 + 1 }, count: count)
    }

    /// Labels painted from runs: run r gets `runLabels[r]` (0 leaves it background). Each row
    /// written once, left to right: zeros up to a run, the run's label, and so on (no clearing
    /// of the whole map first).
    init(runs: Runs, runLabels: [Int32], count: Int) {
        width = runs.width; height = runs.height
        self.count = count
        let w = runs.width
        labels = [Int32](unsafeUninitializedCapacity: runs.width * runs.height) { out, initialised in
            for row in 0..<runs.height {
                let line = out.baseAddress! + row * w
                var x = 0
                for r in runs.rowStart[row]..<runs.rowStart[row + 1] {
                    let a = Int(runs.x0[r]), b = Int(runs.x1[r])
                    (line + x).initialize(repeating: 0, count: a - x)
                    (line + a).initialize(repeating: runLabels[r], count: b - a)
                    x = b
                }
                (line + x).initialize(repeating: 0, count: w - x)
            }
            initialised = runs.width * runs.height
        }
    }
}

extension BinaryMask {
    /// The mask with every hole filled: background pixels that cannot reach the image border
    /// through 4-connected background (the complement of 8-connected foreground) become
    /// foreground (`Runs.init(holesFilledOf:)`).
    public func holesFilled() -> BinaryMask {
        values.withUnsafeBufferPointer { Runs(holesFilledOf: $0, width: width, height: height) }.mask()
    }
}

extension Runs {
    /// The runs of a mask's set pixels with every hole filled: the background's 4-connected
    /// components (from its runs) that touch the border are the background that stays; the
    /// runs are the stretches between those, row by row. One scan of the mask.
    init(holesFilledOf values: UnsafeBufferPointer<UInt8>, width w: Int, height h: Int) {
        self.init(width: w, height: h)
        guard w > 0, h > 0 else { finish(); return }
        let background = Runs(width: w, height: h, values: values, set: false)
        let (component, count) = background.components(connectivity8: false)
        let open = background.reachingEdge(component, count: count)
        for row in 0..<h {
            beginRow(row)
            var x = 0
            for r in background.rowStart[row]..<background.rowStart[row + 1] where open[Int(component[r])] {
                let a = Int(background.x0[r])
                if a > x { append(row: row, from: x, to: a) }
                x = Int(background.x1[r])
            }
            if x < w { append(row: row, from: x, to: w) }
        }
        finish()
    }
}

extension Runs {
    /// Which components (as `components` numbers them, `count` of them) have a run on the
    /// image's edge.
    func reachingEdge(_ component: [Int32], count: Int) -> [Bool] {
        var reaches = [Bool](repeating: false, count: count)
        for r in 0..<self.count where y[r] == 0 || Int(y[r]) == height - 1 || x0[r] == 0 || Int(x1[r]) == width {
            reaches[Int(component[r])] = true
        }
        return reaches
    }
}

extension BinaryMask {
    /// The set pixels whose 4-connected component reaches the image's edge (the background that
    /// is not a hole, in `holesFilled`; a micrograph's padding, in `segment`).
    public func componentsReachingEdge() -> BinaryMask {
        let runs = values.withUnsafeBufferPointer { Runs(width: width, height: height, values: $0, set: true) }
        let (component, count) = runs.components(connectivity8: false)
        let reaches = runs.reachingEdge(component, count: count)
        return runs.mask { reaches[Int(component[$0])] }
    }

    /// The set pixels whose 4-connected component is not wholly enclosed by `enclosing` (a
    /// mask of the same size): those reaching the image's edge, and those with one of their 4
    /// neighbours in neither mask (the neighbours `ParticleMeasurement` looks at for the border).
    /// In `segment`, the NaN pixels that cut a particle: a NaN block beside a particle hides where
    /// it ends, a dead pixel inside one (its 4 neighbours particle) hides nothing.
    public func componentsNotEnclosed(by enclosing: BinaryMask) -> BinaryMask {
        precondition(enclosing.width == width && enclosing.height == height,
                "componentsNotEnclosed: a \(enclosing.width)x\(enclosing.height) mask around a \(width)x\(height) one")
        let runs = values.withUnsafeBufferPointer { Runs(width: width, height: height, values: $0, set: true) }
        let (component, count) = runs.components(connectivity8: false)
        var open = runs.reachingEdge(component, count: count)
        values.withUnsafeBufferPointer { v in
            enclosing.values.withUnsafeBufferPointer { e in
                // A component that does not reach the edge has every neighbour inside the image.
                for r in 0..<runs.count where !open[Int(component[r])] {
                    let y = Int(runs.y[r])
                    for x in Int(runs.x0[r])..<Int(runs.x1[r]) {
                        let p = y * width + x
                        func outside(_ k: Int) -> Bool { v[k] == 0 && e[k] == 0 }
                        if outside(p - width) || outside(p - 1) || outside(p + 1) || outside(p + width) {
                            open[Int(component[r])] = true
                            break
                        }
                    }
                }
            }
        }
        return runs.mask { open[Int(component[$0])] }
    }
}

extension Runs {
    /// A mask with the pixels of the runs r where `keep(r)` set.
    func mask(keeping keep: (Int) -> Bool = { _ in true }) -> BinaryMask {
        var out = BinaryMask(width: width, height: height)
        out.values.withUnsafeMutableBufferPointer { v in
            for r in 0..<count where keep(r) {
                (v.baseAddress! + Int(y[r]) * width + Int(x0[r])).update(repeating: 1, count: Int(x1[r] - x0[r]))
            }
        }
        return out
    }
}

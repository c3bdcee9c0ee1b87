/// The pixels of a binary image as runs: maximal horizontal stretches of set pixels, row by row,
/// left to right (raster order of their first pixels). Labelling, hole filling and the particle
/// moments work on runs rather than pixels: a particle of a few thousand pixels is a few dozen
/// runs, so those passes cost little beside the one scan that finds the runs.
struct Runs {
    let width: Int, height: Int
    /// Row, first column and one past the last column of each run.
    var y: [Int32] = [], x0: [Int32] = [], x1: [Int32] = []
    /// Index of the first run of each row; row r's runs are rowStart[r] ..< rowStart[r + 1].
    var rowStart: [Int]

    var count: Int { y.count }

    /// The runs of pixels where `value(i) != 0` (`set`) or `== 0` (not `set`).
    init(width: Int, height: Int, values: UnsafeBufferPointer<UInt8>, set: Bool) {
        let p = values.baseAddress!
        self.init(width: width, height: height, key: { (p[$0] != 0) == set ? 1 : 0 }, onRun: { _ in })
    }

    /// The runs of a label image: maximal horizontal stretches of one nonzero label, with each
    /// run's label in `runLabels`.
    init(width: Int, height: Int, labels: UnsafeBufferPointer<Int32>, runLabels: inout [Int32]) {
        let p = labels.baseAddress!
        var found: [Int32] = []
        self.init(width: width, height: height, key: { p[$0] }, onRun: { found.append($0) })
        runLabels = found
    }

    /// Runs of equal nonzero `key(pixel index)`, row by row; `onRun(key)` for each.
    @inline(__always)
    private init(width: Int, height: Int, key: (Int) -> Int32, onRun: (Int32) -> Void) {
        self.width = width; self.height = height
        rowStart = [Int](repeating: 0, count: height + 1)
        for row in 0..<height {
            rowStart[row] = y.count
            let base = row * width
            var x = 0
            while x < width {
                while x < width && key(base + x) == 0 { x += 1 }
                guard x < width else { break }
                let start = x, k = key(base + x)
                while x < width && key(base + x) == k { x += 1 }
                y.append(Int32(row)); x0.append(Int32(start)); x1.append(Int32(x)); onRun(k)
            }
        }
        rowStart[height] = y.count
    }

    /// Connected components of the runs, numbered 0, 1, … in raster order of their first run,
    /// with 8-connectivity (runs in neighbouring rows touching diagonally join) or 4. Returns
    /// each run's component and the number of components.
    func components(connectivity8: Bool) -> (component: [Int32], count: Int) {
        var sets = UnionFind(count: count)
        let reach: Int32 = connectivity8 ? 1 : 0
        for row in 1..<max(1, height) {
            // Two pointers over the runs of the row above and this one.
            var a = rowStart[row - 1], b = rowStart[row]
            let aEnd = rowStart[row], bEnd = rowStart[row + 1]
            while a < aEnd && b < bEnd {
                if x0[a] < x1[b] + reach && x0[b] < x1[a] + reach { sets.union(Int32(a), Int32(b)) }
                // Move on the run that ends first (it can meet nothing further right).
                if x1[a] < x1[b] { a += 1 } else { b += 1 }
            }
        }
        // Roots are each component's first run (unions keep the smaller index), so numbering the
        // roots in run order numbers the components in raster order of their first pixel.
        var number = [Int32](repeating: -1, count: count)
        var next: Int32 = 0
        var component = [Int32](repeating: 0, count: count)
        for r in 0..<count {
            let root = Int(sets.find(Int32(r)))
            if number[root] < 0 { number[root] = next; next += 1 }
            component[r] = number[root]
        }
        return (component, Int(next))
    }
}

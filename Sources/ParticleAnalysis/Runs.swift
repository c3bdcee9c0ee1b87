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

    /// No runs yet: rows are added in order with `beginRow` and `append`, then `finish`.
    init(width: Int, height: Int) {
        self.width = width; self.height = height
        rowStart = [Int](repeating: 0, count: height + 1)
    }

    mutating func beginRow(_ row: Int) { rowStart[row] = y.count }
    mutating func append(row: Int, from a: Int, to b: Int) { y.append(Int32(row)); x0.append(Int32(a)); x1.append(Int32(b)) }
    mutating func finish() { rowStart[height] = y.count }

    /// The runs of pixels where `value(i) != 0` (`set`) or `== 0` (not `set`). Reads the row
    /// eight bytes at a time: a mask is mostly long stretches of one value.
    init(width: Int, height: Int, values: UnsafeBufferPointer<UInt8>, set: Bool) {
        self.init(width: width, height: height)
        guard let p = values.baseAddress else { finish(); return }
        for row in 0..<height {
            beginRow(row)
            let base = p + row * width
            var x = 0
            while x < width {
                x = set ? Runs.firstNonzero(base, from: x, to: width) : Runs.firstZero(base, from: x, to: width)
                guard x < width else { break }
                let start = x
                x = set ? Runs.firstZero(base, from: x, to: width) : Runs.firstNonzero(base, from: x, to: width)
                append(row: row, from: start, to: x)
            }
        }
        finish()
    }

    /// The first index in x ..< end whose byte is not zero (end if none).
    @inline(__always)
    static func firstNonzero(_ p: UnsafePointer<UInt8>, from x: Int, to end: Int) -> Int {
        var x = x
        while x + 8 <= end {
            let word = UInt64(littleEndian: UnsafeRawPointer(p + x).loadUnaligned(as: UInt64.self))
            if word != 0 { return x + word.trailingZeroBitCount / 8 }
            x += 8
        }
        while x < end && p[x] == 0 { x += 1 }
        return x
    }

    /// The first index in x ..< end whose byte is zero (end if none).
    @inline(__always)
    static func firstZero(_ p: UnsafePointer<UInt8>, from x: Int, to end: Int) -> Int {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        var x = x
        while x + 8 <= end {
            let word = UInt64(littleEndian: UnsafeRawPointer(p + x).loadUnaligned(as: UInt64.self))
            // The lowest byte flagged here is the lowest zero byte (higher flags may be false).
            let zeros = (word &- ones) & ~word & highs
            if zeros != 0 { return x + zeros.trailingZeroBitCount / 8 }
            x += 8
        }
        while x < end && p[x] != 0 { x += 1 }
        return x
    }

    /// Connected components of the runs, numbered 0, 1, … in raster order of their first run,
    /// with 8-connectivity (runs in neighbouring rows touching diagonally join) or 4. Returns
    /// each run's component and the number of components.
    /// `id`, when given, is each run's id (a label image's runs): runs join only when they hold
    /// the same id.
    func components(connectivity8: Bool, id: [Int32]? = nil) -> (component: [Int32], count: Int) {
        var sets = UnionFind(count: count)
        let reach: Int32 = connectivity8 ? 1 : 0
        for row in 1..<max(1, height) {
            // Two pointers over the runs of the row above and this one.
            var a = rowStart[row - 1], b = rowStart[row]
            let aEnd = rowStart[row], bEnd = rowStart[row + 1]
            while a < aEnd && b < bEnd {
                if x0[a] < x1[b] + reach && x0[b] < x1[a] + reach && (id.map { $0[a] == $0[b] } ?? true) {
                    sets.union(Int32(a), Int32(b))
                }
                // Ending together, b moves on below: the run after a may touch b at a corner. (A
                // mask's runs never do, a gap apart; a label image's runs of two ids abut.)
                if x1[a] == x1[b], a + 1 < aEnd, x0[a + 1] < x1[b] + reach && x0[b] < x1[a + 1] + reach,
                   id.map({ $0[a + 1] == $0[b] }) ?? true {
                    sets.union(Int32(a + 1), Int32(b))
                }
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

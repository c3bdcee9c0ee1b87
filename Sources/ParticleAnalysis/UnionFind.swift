/// Disjoint sets over 0, 1, … with path compression. A union keeps the smaller root, so each
/// set's root is its smallest member (the labellings number components by their first element).
struct UnionFind {
    private var parent: [Int32]

    init(count: Int) { parent = Array(0..<Int32(count)) }

    var count: Int { parent.count }

    /// A new set of one element; returns the element.
    mutating func add() -> Int32 {
        let i = Int32(parent.count)
        parent.append(i)
        return i
    }

    @inline(__always)
    mutating func find(_ a: Int32) -> Int32 {
        if parent[Int(a)] == a { return a }  // most lookups: a root already
        var r = a
        while parent[Int(r)] != r { r = parent[Int(r)] }
        var x = a
        while parent[Int(x)] != r { let n = parent[Int(x)]; parent[Int(x)] = r; x = n }
        return r
    }

    mutating func union(_ a: Int32, _ b: Int32) {
        let ra = find(a), rb = find(b)
        if ra != rb { parent[Int(max(ra, rb))] = min(ra, rb) }
    }
}

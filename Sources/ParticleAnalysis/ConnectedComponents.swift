import Preprocessing

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
        var parent: [Int32] = [0]
        func find(_ a: Int32) -> Int32 {
            var r = a
            while parent[Int(r)] != r { r = parent[Int(r)] }
            var x = a
            while parent[Int(x)] != r { let n = parent[Int(x)]; parent[Int(x)] = r; x = n }
            return r
        }
        func union(_ a: Int32, _ b: Int32) {
            let ra = find(a), rb = find(b)
            if ra != rb { parent[Int(max(ra, rb))] = min(ra, rb) }
        }
        for y in 0..<height {
            let row = y * width, up = row - width
            for x in 0..<width where isSet(row + x) {
                // Neighbours already labelled: left, and the row above (up-left, up, up-right).
                var label: Int32 = 0
                @inline(__always) func join(_ n: Int32) {
                    guard n != 0 else { return }
                    if label == 0 { label = n } else if n != label { union(label, n) }
                }
                if x > 0 { join(labels[row + x - 1]) }
                if y > 0 {
                    join(labels[up + x])
                    if connectivity8 {
                        if x > 0 { join(labels[up + x - 1]) }
                        if x + 1 < width { join(labels[up + x + 1]) }
                    }
                }
                if label == 0 {
                    label = Int32(parent.count)
                    parent.append(label)
                }
                labels[row + x] = label
            }
        }
        // Final labels in raster order of each component's first pixel.
        var final = [Int32](repeating: 0, count: parent.count)
        var next: Int32 = 0
        for i in 0..<labels.count where labels[i] != 0 {
            let r = find(labels[i])
            if final[Int(r)] == 0 { next += 1; final[Int(r)] = next }
            labels[i] = final[Int(r)]
        }
        self.labels = labels
        count = Int(next)
    }

    public init(_ mask: BinaryMask, connectivity8: Bool = true) {
        let v = mask.values
        self.init(width: mask.width, height: mask.height, connectivity8: connectivity8) { v[$0] != 0 }
    }
}

extension BinaryMask {
    /// The mask with every hole filled: background pixels that cannot reach the image border
    /// through 4-connected background (the complement of 8-connected foreground) become
    /// foreground. A flood fill from the border over the background, row spans at a time.
    public func holesFilled() -> BinaryMask {
        let w = width, h = height
        guard w > 0, h > 0 else { return self }
        // 0 foreground, 1 background not yet reached, 2 background reached from the border.
        var state = values.map { $0 == 0 ? UInt8(1) : 0 }
        var stack: [Int] = []
        func seed(_ i: Int) { if state[i] == 1 { state[i] = 2; stack.append(i) } }
        for x in 0..<w { seed(x); seed((h - 1) * w + x) }
        for y in 0..<h { seed(y * w); seed(y * w + w - 1) }
        while let i = stack.popLast() {
            let x = i % w, y = i / w
            if x > 0 { seed(i - 1) }
            if x + 1 < w { seed(i + 1) }
            if y > 0 { seed(i - w) }
            if y + 1 < h { seed(i + w) }
        }
        var out = self
        for i in 0..<out.values.count where state[i] == 1 { out.values[i] = 1 }
        return out
    }
}

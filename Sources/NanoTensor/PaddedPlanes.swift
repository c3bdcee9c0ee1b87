/// Feature maps laid out for the 3×3 convolution kernels: every channel plane has one zero row
/// above and below and `vectorWidth` zero columns on each side (plus the columns up to a whole
/// number of vectors), so the kernels read the 3×3 neighbourhood of any pixel with plain vector
/// loads and never test for borders.
///
/// Pixel (y, x) of channel c of image n is at
/// `data + (n * channels + c) * planeStride + (y + 1) * rowStride + vectorWidth + x`.
public final class PaddedPlanes: @unchecked Sendable {
    public let n: Int, channels: Int, height: Int, width: Int
    public let rowStride: Int, planeStride: Int
    let storage: Tensor

    public init(n: Int, channels: Int, height: Int, width: Int) {
        self.n = n; self.channels = channels; self.height = height; self.width = width
        rowStride = 2 * vectorWidth + roundUp(width, vectorWidth)
        planeStride = (height + 2) * rowStride
        storage = Tensor(Shape(n, channels, 1, planeStride), zeroed: false)
    }

    package var data: UnsafeMutablePointer<Float> { storage.data }

    /// Pointer to interior pixel (0, 0) of channel c of image i.
    @inline(__always) package func origin(_ i: Int, _ c: Int) -> UnsafeMutablePointer<Float> {
        storage.data + (i * channels + c) * planeStride + rowStride + vectorWidth
    }

    /// How a source tensor is copied into a range of channels.
    public enum Transform: Sendable, Equatable {
        case copy
        /// max(x, 0) on the way in (the skip connections' ReLU, fused into the concat).
        case relu
        /// Nearest-neighbour 2× upsampling on the way in (UpSampling2D, fused into the concat).
        case upsample2x
    }

    public struct Source: @unchecked Sendable {
        public var tensor: Tensor
        public var transform: Transform
        public init(_ tensor: Tensor, _ transform: Transform = .copy) { self.tensor = tensor; self.transform = transform }
        var channels: Int { tensor.shape.c }
    }

    /// Fills the planes from sources concatenated along channels (first source first), writing
    /// the zero border too. Runs in parallel over (image, channel).
    public func fill(from sources: [Source], pool: ThreadPool = .shared) {
        require(sources.reduce(0) { $0 + $1.channels } == channels, "concat channels mismatch")
        var firstChannel: [Int] = []
        var acc = 0
        for s in sources {
            firstChannel.append(acc); acc += s.channels
            let sh = s.tensor.shape
            require(sh.n == n, "batch mismatch")
            switch s.transform {
            case .copy, .relu: require(sh.h == height && sh.w == width, "source \(sh) vs \(height)x\(width)")
            case .upsample2x: require(sh.h * 2 == height && sh.w * 2 == width, "upsample source \(sh) vs \(height)x\(width)")
            }
        }
        let h = height, w = width, rs = rowStride, vw = vectorWidth
        // Few planes (a network's one-channel input) are cut into bands of rows, an even number
        // each (an upsampled odd row copies the row above), so that every thread has a share.
        let planes = n * channels
        let bands = planes >= 4 * pool.threadCount ? 1 : min(max(1, h / 2), (4 * pool.threadCount + planes - 1) / planes)
        let band = roundUp((h + bands - 1) / bands, 2)
        pool.parallelFor(planes * bands) { piece, _ in
            let item = piece / bands, y0 = min(h, piece % bands * band), y1 = min(h, y0 + band)
            let i = item / self.channels, c = item % self.channels
            var si = 0
            while si + 1 < sources.count && firstChannel[si + 1] <= c { si += 1 }
            let src = sources[si]
            let sc = c - firstChannel[si]
            let base = self.data + (i * self.channels + c) * self.planeStride
            // Zero rows above and below, and the side columns of every interior row.
            if piece % bands == 0 { self.zeroBorderRows(base) }
            let inPlane = UnsafePointer(src.tensor.plane(i, sc))
            for y in y0..<y1 {
                let row = base + (y + 1) * rs
                self.zeroSides(row)
                let dst = row + vw
                switch src.transform {
                case .copy:
                    dst.update(from: inPlane + y * w, count: w)
                case .relu:
                    let s = inPlane + y * w
                    var x = 0
                    while x + vw <= w { storeVector(vmax(loadVector(s + x), .zero), dst + x); x += vw }
                    while x < w { dst[x] = max(s[x], 0); x += 1 }
                case .upsample2x:
                    if y % 2 == 1 {
                        dst.update(from: dst - rs, count: w)  // same as the row above
                    } else {
                        let s = inPlane + (y / 2) * (w / 2)
                        var x = 0
                        while 2 * x + vw <= w { storeVector(duplicateLanes(loadHalfVector(s + x)), dst + 2 * x); x += vw / 2 }
                        while x < w / 2 { let v = s[x]; dst[2 * x] = v; dst[2 * x + 1] = v; x += 1 }
                    }
                }
            }
        }
    }

    /// Fills plane `item` (image · channels + channel) row by row, its borders zeroed: `row(y, dst)`
    /// writes the `width` interior values of row y at `dst`. Bands of rows run side by side, so
    /// `row` must only write its own row.
    public func fill(plane item: Int, pool: ThreadPool = .shared, rows row: (Int, UnsafeMutablePointer<Float>) -> Void) {
        require(item >= 0 && item < n * channels, "plane \(item) of \(n * channels)")
        let h = height, bands = max(1, min(h, 4 * pool.threadCount)), band = (h + bands - 1) / bands
        pool.parallelFor((h + band - 1) / band) { k, _ in
            for y in (k * band)..<min(h, k * band + band) {
                self.zeroBorders(plane: item, row: y)
                row(y, self.origin(item / self.channels, item % self.channels) + y * self.rowStride)
            }
        }
    }

    /// Zeroes the side columns of interior row `y` of plane `item` (image · channels + channel),
    /// and the border row above or below it when `y` is the first or last row: kernels that write
    /// rows straight into these planes call this per row, so the borders cost no pass of their own.
    /// Call it before writing the row: the right-hand zeroing starts at the row's last whole
    /// vector, which may cover interior columns the writer then fills.
    @inline(__always) public func zeroBorders(plane item: Int, row y: Int) {
        let base = data + item * planeStride
        zeroSides(base + (y + 1) * rowStride)
        if y == 0 { zeroRow(base) }
        if y == height - 1 { zeroRow(base + (height + 1) * rowStride) }
    }

    @inline(__always) func zeroRow(_ row: UnsafeMutablePointer<Float>) {
        var k = 0
        while k < rowStride { storeVector(.zero, row + k); k += vectorWidth }
    }

    /// Zeroes the rows above and below the plane at `base`.
    @inline(__always) func zeroBorderRows(_ base: UnsafeMutablePointer<Float>) {
        zeroRow(base)
        zeroRow(base + (height + 1) * rowStride)
    }

    /// Zeroes the columns left and right of an interior row with whole, aligned vector stores
    /// (a per-row memset call cost more than the zeroing), never past the row: the right-hand
    /// stores start at the last whole vector of the interior, so call it before the row is written.
    @inline(__always) func zeroSides(_ row: UnsafeMutablePointer<Float>) {
        NanoTensor.zeroSides(row, width: width, rowStride: rowStride)
    }

    /// 2×2 max pooling (stride 2) of a plain tensor, written into the interior of these planes.
    public func fillMaxPool2x2(of x: Tensor, pool: ThreadPool = .shared) {
        let s = x.shape
        require(s.n == n && s.c == channels && s.h / 2 == height && s.w / 2 == width, "pool planes do not match")
        pool.parallelFor(n * channels) { item, _ in
            let p = x.data + item * s.plane
            let q = self.data + item * self.planeStride + self.rowStride + vectorWidth
            for r in 0..<self.height {
                self.zeroBorders(plane: item, row: r)
                PoolingKernels.maxPoolRow(p + 2 * r * s.w, p + (2 * r + 1) * s.w, into: q + r * self.rowStride, count: self.width)
            }
        }
    }

    /// The interior as a plain NCHW tensor (for tests and for ops that need plain layout).
    public func interior() -> Tensor {
        let t = Tensor(Shape(n, channels, height, width), zeroed: false)
        for i in 0..<n { for c in 0..<channels { for y in 0..<height {
            (t.plane(i, c) + y * width).update(from: origin(i, c) + y * rowStride, count: width)
        } } }
        return t
    }

    /// Copies a plain NCHW tensor into padded planes.
    public static func from(_ t: Tensor, pool: ThreadPool = .shared) -> PaddedPlanes {
        let p = PaddedPlanes(n: t.shape.n, channels: t.shape.c, height: t.shape.h, width: t.shape.w)
        p.fill(from: [Source(t)], pool: pool)
        return p
    }
}

/// Zeroes the side columns of a padded row (`PaddedPlanes.zeroSides`) of `width` interior
/// columns and `rowStride` floats, from the row's start (the left padding).
@inline(__always) func zeroSides(_ row: UnsafeMutablePointer<Float>, width: Int, rowStride: Int) {
    storeVector(.zero, row)
    var k = vectorWidth + width / vectorWidth * vectorWidth
    while k < rowStride { storeVector(.zero, row + k); k += vectorWidth }
}

import Foundation

/// Shape of a batch of feature maps, NCHW.
public struct Shape: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var n: Int, c: Int, h: Int, w: Int
    public init(_ n: Int, _ c: Int, _ h: Int, _ w: Int) { self.n = n; self.c = c; self.h = h; self.w = w }
    public var count: Int { n * c * h * w }
    public var plane: Int { h * w }
    public var description: String { "[\(n), \(c), \(h), \(w)]" }
}

/// A dense float32 tensor in NCHW layout (row-major within each channel plane), 64-byte aligned.
/// Storage comes from a pool and returns to it when the tensor is released.
///
/// The raw storage pointer is `package`: the kernels of this package use it while they hold the
/// tensor; code outside the package reads and writes through `withUnsafeBufferPointer`,
/// `withUnsafeMutableBufferPointer`, `array`, `assign(from:)` and the subscript, which keep the
/// tensor alive for as long as the pointer is in use.
public final class Tensor: @unchecked Sendable {
    public let shape: Shape
    package let data: UnsafeMutablePointer<Float>

    /// A tensor of the given shape, zero-filled unless `zeroed` is false.
    public init(_ shape: Shape, zeroed: Bool = true) {
        self.shape = shape
        data = BufferPool.shared.take(shape.count)
        if zeroed { data.initialize(repeating: 0, count: shape.count) }
    }

    public convenience init(_ shape: Shape, values: [Float]) {
        require(values.count == shape.count, "\(values.count) values for shape \(shape)")
        self.init(shape, zeroed: false)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: values.count) }
    }

    public convenience init(_ shape: Shape, repeating v: Float) {
        self.init(shape, zeroed: false)
        data.initialize(repeating: v, count: shape.count)
    }

    deinit { BufferPool.shared.give(data, shape.count) }

    public var count: Int { shape.count }
    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// Calls `body` with the values; the tensor stays alive until it returns.
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(UnsafeBufferPointer(start: data, count: count)) }
    }

    /// Calls `body` with the values to change; the tensor stays alive until it returns.
    public func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(UnsafeMutableBufferPointer(start: data, count: count)) }
    }

    /// Replaces every value with `values` (as many as the tensor holds).
    public func assign<C: Collection>(from values: C) where C.Element == Float {
        require(values.count == count, "\(values.count) values for a tensor of shape \(shape)")
        var k = 0
        for v in values { data[k] = v; k += 1 }
    }

    /// Pointer to channel `c` of image `n`.
    @inline(__always) package func plane(_ n: Int, _ c: Int) -> UnsafeMutablePointer<Float> {
        data + (n * shape.c + c) * shape.plane
    }

    public subscript(n: Int, c: Int, y: Int, x: Int) -> Float {
        get { data[((n * shape.c + c) * shape.h + y) * shape.w + x] }
        set { data[((n * shape.c + c) * shape.h + y) * shape.w + x] = newValue }
    }

    public func copy() -> Tensor {
        let t = Tensor(shape, zeroed: false)
        t.data.update(from: data, count: count)
        return t
    }

    public func fill(_ v: Float) { data.update(repeating: v, count: count) }

    /// Gaussian values from a seeded generator (Box-Muller).
    public static func randomNormal(_ shape: Shape, std: Float = 1, rng: inout SplitMix64) -> Tensor {
        let t = Tensor(shape, zeroed: false)
        for i in 0..<t.count { t.data[i] = rng.nextGaussian() * std }
        return t
    }

    public static func randomUniform(_ shape: Shape, in range: ClosedRange<Float>, rng: inout SplitMix64) -> Tensor {
        let t = Tensor(shape, zeroed: false)
        for i in 0..<t.count { t.data[i] = range.lowerBound + (range.upperBound - range.lowerBound) * rng.nextFloat() }
        return t
    }
}

/// A small deterministic generator (SplitMix64): the same seed gives the same numbers everywhere.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    public mutating func nextFloat() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }
    public mutating func nextGaussian() -> Float {
        let u1 = max(Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0), 1e-300)
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}

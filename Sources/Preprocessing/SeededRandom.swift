import Foundation

/// A small deterministic pseudo-random generator: xoshiro256** (Blackman & Vigna), its 256-bit
/// state filled from the seed by SplitMix64.
///
/// Every random choice in this module (augmentation, noise, splits) takes a `SeededRandom`, so a
/// run is reproducible from one `UInt64` seed on any platform and Swift version (the helpers below
/// do not use the standard library's `random(in:using:)`, whose algorithm may change).
public struct SeededRandom: RandomNumberGenerator, Sendable, Equatable {
    private var s0, s1, s2, s3: UInt64

    /// A generator whose whole sequence is determined by `seed`.
    public init(seed: UInt64) {
        var sm = seed
        func splitMix() -> UInt64 {
            sm &+= 0x9E37_79B9_7F4A_7C15
            var z = sm
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitMix(); s1 = splitMix(); s2 = splitMix(); s3 = splitMix()
    }

    /// The next 64 random bits.
    @inlinable
    public mutating func next() -> UInt64 { nextRaw() }

    @usableFromInline
    mutating func nextRaw() -> UInt64 {
        let result = rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
        return result
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// A new generator seeded from this one's next output: an independent stream for a sub-task
    /// (e.g. one per image), so adding draws in one sub-task does not shift the others.
    public mutating func fork() -> SeededRandom { SeededRandom(seed: nextRaw()) }

    /// Uniform in [0, 1), 24 random bits.
    public mutating func nextFloat() -> Float { Float(nextRaw() >> 40) * 0x1p-24 }

    /// Uniform in [0, 1), 53 random bits.
    public mutating func nextDouble() -> Double { Double(nextRaw() >> 11) * 0x1p-53 }

    /// Uniform in `range` (both ends allowed up to rounding).
    public mutating func nextDouble(in range: ClosedRange<Double>) -> Double {
        range.lowerBound + (range.upperBound - range.lowerBound) * nextDouble()
    }

    /// Uniform in `range`.
    public mutating func nextFloat(in range: ClosedRange<Float>) -> Float {
        range.lowerBound + (range.upperBound - range.lowerBound) * nextFloat()
    }

    /// True with probability `p` (p <= 0: never draws true; p >= 1: always).
    public mutating func nextBool(probability p: Double) -> Bool { nextDouble() < p }

    /// Uniform integer in `0..<bound` (Lemire's multiply-and-reject, unbiased). `bound` > 0.
    public mutating func nextInt(below bound: Int) -> Int {
        require(bound > 0, "SeededRandom.nextInt(below:): bound must be positive, got \(bound)")
        let b = UInt64(bound)
        var m = nextRaw().multipliedFullWidth(by: b)
        if m.low < b {
            let threshold = (0 &- b) % b
            while m.low < threshold { m = nextRaw().multipliedFullWidth(by: b) }
        }
        return Int(m.high)
    }

    /// Standard normal deviate (mean 0, variance 1), Box–Muller on two fresh uniforms.
    public mutating func nextGaussian() -> Float { Float(nextGaussianDouble()) }

    /// Standard normal deviate in double precision.
    public mutating func nextGaussianDouble() -> Double {
        let u1 = 1 - nextDouble()          // (0, 1]: log is finite
        let u2 = nextDouble()
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
    }

    /// A Poisson deviate with the given mean (>= 0). Exact (Knuth's product of uniforms) for
    /// means below 30; above, the normal approximation `round(mean + sqrt(mean) z)`, clamped at 0,
    /// whose mean and variance match to O(1/mean).
    public mutating func nextPoisson(mean: Double) -> Int {
        guard mean > 0 else { return 0 }
        if mean < 30 {
            let limit = Foundation.exp(-mean)
            var k = 0
            var p = nextDouble()
            while p > limit { k += 1; p *= nextDouble() }
            return k
        }
        let x = (mean + mean.squareRoot() * nextGaussianDouble()).rounded()
        return x < 0 ? 0 : Int(x)
    }

    /// The elements of `array` in a uniformly random order (Fisher–Yates).
    public mutating func shuffled<T>(_ array: [T]) -> [T] {
        var a = array
        if a.count > 1 {
            for i in stride(from: a.count - 1, to: 0, by: -1) {
                a.swapAt(i, nextInt(below: i + 1))
            }
        }
        return a
    }
}

import Foundation

/// How much cache this run has: the time one load takes when its address comes from the load
/// before (a pointer chase over a random cycle through every cache line of a working set), for
/// working sets from inside a core's L2 to far beyond any L3. Where the time climbs towards
/// memory's is where the caches end. On a virtual machine whose host shares the L3 with other
/// tenants, that is the share this run gets, not the size the CPU model has, and it decides
/// whether a pass's maps come back from cache or from memory (`bench`'s `memory_latency` row,
/// beside `fma_peak` and `memory_bandwidth`).
public enum MemoryLatency {
    /// The working sets `bench` chases over, in KiB: 256 KiB to 64 MiB.
    public static let kilobytes = [256, 1 << 10, 2 << 10, 4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10]

    /// Nanoseconds per dependent load over each working set of `kilobytes` KiB, on the calling
    /// thread: every line touched first (one lap of the cycle), then `loads` loads timed.
    public static func measure(kilobytes sizes: [Int] = kilobytes, loads: Int = 2_000_000) -> [(kilobytes: Int, nanoseconds: Double)] {
        sizes.map { size in
            let lines = max(2, (size << 10) / lineBytes)
            let buffer = chain(lines: lines, seed: UInt64(size))
            defer { buffer.deallocate() }
            var at = 0
            for _ in 0..<lines { at = buffer[at * intsPerLine] }
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<loads { at = buffer[at * intsPerLine] }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            // The last index reached, kept so that the chase is not optimised away.
            if at < 0 { print(at) }
            return (size, seconds * 1e9 / Double(max(1, loads)))
        }
    }

    /// The largest working set, in KiB, whose load took at most half of what the largest one's
    /// did: the cache this run had (0 when even the smallest took more).
    public static func effectiveCache(_ times: [(kilobytes: Int, nanoseconds: Double)]) -> Int {
        guard let memory = times.max(by: { $0.kilobytes < $1.kilobytes })?.nanoseconds else { return 0 }
        return times.filter { $0.nanoseconds <= memory / 2 }.map(\.kilobytes).max() ?? 0
    }

    static let lineBytes = 64
    /// Words per cache line: line k's link to the next is word k · intsPerLine of a `chain`.
    package static let intsPerLine = lineBytes / MemoryLayout<Int>.stride

    /// `lines` cache lines in a random order, each holding in its first word the index of the
    /// line after it in that order, the last the first's: one cycle through every line, so a
    /// chase from any line visits them all before it returns, in an order no prefetcher
    /// follows. The caller deallocates it.
    package static func chain(lines: Int, seed: UInt64) -> UnsafeMutablePointer<Int> {
        var order = Array(0..<lines)
        var rng = SplitMix64(seed: seed)
        order.shuffle(using: &rng)
        let buffer = UnsafeMutablePointer<Int>.allocate(capacity: lines * intsPerLine)
        buffer.initialize(repeating: 0, count: lines * intsPerLine)
        for k in 0..<lines { buffer[order[k] * intsPerLine] = order[(k + 1) % lines] }
        return buffer
    }
}

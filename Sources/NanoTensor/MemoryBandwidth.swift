import Foundation

/// The machine's other ceiling: how fast memory reads and writes on every worker thread, over a
/// buffer far larger than the caches. A pass that moves more bytes per multiply-add than the
/// FMA peak and this allow together is bound by memory, not by its kernel (`bench`'s
/// `memory_bandwidth` row, beside `fma_peak`).
public enum MemoryBandwidth {
    /// GB/s over `megabytes` MiB shared among the threads, each thread a contiguous share, the
    /// best of `runs` runs of each pass: `write`, filling it with 2s by non-temporal stores (no
    /// line read first); `read`, summing it (`ChannelKernels.sum`); `copy`, reading one half into
    /// the other with plain stores (the bytes read and written counted; a plain store also reads
    /// each line before writing it, not counted). `checksum`: what the last read pass summed, 2
    /// per float (the tests' proof that both passes did their work).
    public static func measure(pool: ThreadPool = .shared, megabytes: Int = 256, runs: Int = 3)
        -> (read: Double, write: Double, copy: Double, checksum: Double) {
        let vw = vectorWidth, threads = pool.threadCount
        // A whole number of vectors per thread, in two halves for the copy.
        let perThread = max(2 * vw, (megabytes << 20) / 4 / threads / (2 * vw) * (2 * vw))
        let count = perThread * threads
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count + vw)
        defer { buffer.deallocate() }
        // Aligned to a vector for the non-temporal stores, every page touched before timing.
        let base = buffer + (vw - Int(bitPattern: buffer) / 4 % vw) % vw
        base.initialize(repeating: 1, count: count)
        let sums = UnsafeMutablePointer<Float>.allocate(capacity: threads * 16)
        defer { sums.deallocate() }
        func best(_ body: (UnsafeMutablePointer<Float>, Int, Int) -> Void) -> Double {
            var fastest = Double.infinity
            for _ in 0..<runs {
                let start = DispatchTime.now().uptimeNanoseconds
                pool.parallelFor(threads) { t, _ in body(base + t * perThread, perThread, t) }
                fastest = min(fastest, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            return fastest
        }
        let write = best { p, n, _ in
            var k = 0
            let v = FloatVector(repeating: 2)
            while k < n { streamVector(v, p + k); k += vw }
            storeFence()
        }
        let read = best { p, n, t in sums[16 * t] = ChannelKernels.sum(p, n) }
        let checksum = (0..<threads).reduce(0.0) { $0 + Double(sums[16 * $1]) }
        let copy = best { p, n, _ in
            let half = n / 2
            var k = 0
            while k < half { storeVector(loadVector(p + k), p + half + k); k += vw }
        }
        let bytes = Double(count * 4)
        return (bytes / read / 1e9, bytes / write / 1e9, bytes / copy / 1e9, checksum)
    }
}

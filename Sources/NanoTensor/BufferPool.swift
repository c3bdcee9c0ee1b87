import Foundation

/// Recycles large float buffers by size. A training step allocates the same activation sizes
/// every step; fresh allocations would page-fault gigabytes each time.
public final class BufferPool: @unchecked Sendable {
    static let shared = BufferPool()
    private var free: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private var cachedBytes = 0
    /// Bytes taken from the system so far (diagnostics: flat in steady state).
    private(set) var freshBytes = 0
    private let lock = NSLock()
    /// Beyond this many cached bytes, released buffers go back to the system: half the machine's
    /// memory, so a training step's working set (≈ 3–7 GB at batch 20 on 512² tiles) stays cached.
    var limitBytes = Int(ProcessInfo.processInfo.physicalMemory / 2)

    func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        let n = max(count, 1)
        lock.lock()
        if var list = free[n], let p = list.popLast() {
            free[n] = list
            cachedBytes -= n * 4
            lock.unlock()
            return p
        }
        freshBytes += n * 4
        lock.unlock()
        var raw: UnsafeMutableRawPointer? = nil
        guard posix_memalign(&raw, 64, n * MemoryLayout<Float>.stride) == 0, let r = raw else {
            fatalError("out of memory allocating \(n * 4) bytes")
        }
        return r.bindMemory(to: Float.self, capacity: n)
    }

    func give(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
        let n = max(count, 1)
        lock.lock()
        if cachedBytes + n * 4 <= limitBytes {
            free[n, default: []].append(p)
            cachedBytes += n * 4
            lock.unlock()
        } else {
            lock.unlock()
            Foundation.free(p)
        }
    }

    /// Bytes of buffers the pool had to take from the system so far.
    public static var allocatedFromSystem: Int { shared.lock.lock(); defer { shared.lock.unlock() }; return shared.freshBytes }

    /// Returns every cached buffer to the system.
    func drain() {
        lock.lock(); defer { lock.unlock() }
        for (_, list) in free { for p in list { Foundation.free(p) } }
        free = [:]
        cachedBytes = 0
    }
}

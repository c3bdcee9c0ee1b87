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
        let huge = useHugePages
        lock.unlock()
        return BufferPool.allocate(n, hugePages: huge)
    }

    /// With `hugePages` on, buffers of at least this many bytes are laid on 2 MiB pages where
    /// Linux offers them (transparent huge pages for regions that ask, `madvise`, the common
    /// setting): a 512² batch's activations are gigabytes, and with 4 KiB pages the kernels'
    /// plane-strided accesses miss the TLB. Measured on AMD EPYC fam 25 mod 17 (`thp_fault_alloc`
    /// counts the pages granted): batch-20 training steps 0.426-0.481 s against 0.449-0.685 s
    /// (AVX-512) and 0.465-0.480 s against 0.478-0.523 s (AVX2 build), alternating; the 2 MiB
    /// alignment alone changed nothing. But a huge page's first touch costs more, so a single
    /// pass over fresh buffers (one micrograph's tiles: `segment_4096`'s network 0.69-0.73 s
    /// against 0.63-0.69 s) lost there: training, which recycles the same buffers for thousands
    /// of steps, turns it on, and so does `segment`, measured on Intel Xeon fam 6 mod 207 (see
    /// `prepareMemoryForSegmenting` in the `nanofind` target). (Where the kernel compacts memory synchronously for such regions,
    /// `defrag` = `madvise`, the default), a first touch may also wait for that when memory is
    /// fragmented.)
    public static var hugePages: Bool {
        get { shared.lock.lock(); defer { shared.lock.unlock() }; return shared.useHugePages }
        set { shared.lock.lock(); shared.useHugePages = newValue; shared.lock.unlock() }
    }
    private var useHugePages = false
    static let largeAlignment = 2 << 20

    static func allocate(_ n: Int, hugePages: Bool) -> UnsafeMutablePointer<Float> {
        let bytes = n * MemoryLayout<Float>.stride
        let large = hugePages && bytes >= largeAlignment
        var raw: UnsafeMutableRawPointer? = nil
        guard posix_memalign(&raw, large ? largeAlignment : 64, bytes) == 0, let r = raw else {
            fatalError("out of memory allocating \(bytes) bytes")
        }
        #if os(Linux)
        if large { _ = madvise(r, bytes / largeAlignment * largeAlignment, MADV_HUGEPAGE) }
        #endif
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

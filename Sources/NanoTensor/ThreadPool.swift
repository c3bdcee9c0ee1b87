import CNanoSupport
import Foundation

/// A fixed set of worker threads, each pinned to its own CPU, that run `parallelFor` loops.
///
/// Measured on the 2-vCPU target machine (shared/notes/cpu-kernels.md): unpinned workers or
/// `DispatchQueue.concurrentPerform` often land on one core and give no speed-up; pinning one
/// thread per CPU gives close to 2x. The calling thread works as thread 0. Workers spin briefly
/// before sleeping so that the many short layer loops of a forward pass do not pay a wake-up each.
/// Each thread starts a loop on its own share of the items (see `runItems`).
public final class ThreadPool: @unchecked Sendable {
    public let threadCount: Int

    private var job: UnsafePointer<(Int, Int) -> Void>?
    private var jobCount = 0
    /// The counters the threads share, at addresses the pool owns (a class property's address,
    /// taken with `&`, is only valid for the duration of one call): the workers still running
    /// the current job, the job generation (bumped for each job), the generation the caller
    /// last rested at (`rest`) and each thread's next item.
    private let counters: SharedCounters
    private var stopping = false
    private let mutex = NSCondition()
    private let callerLock = NSLock()
    private var threads: [Thread] = []
    private var callerPinned = false
    private let pin: Bool

    nonisolated(unsafe) private static var _shared: ThreadPool?
    private static let sharedLock = NSLock()

    /// The pool the kernels use. Defaults to one thread per available CPU.
    public static var shared: ThreadPool {
        sharedLock.lock(); defer { sharedLock.unlock() }
        if let p = _shared { return p }
        let p = ThreadPool(threads: Int(nf_available_cpus()))
        _shared = p
        return p
    }

    /// Replaces the shared pool (e.g. `--threads N`).
    public static func setSharedThreadCount(_ n: Int) {
        sharedLock.lock(); defer { sharedLock.unlock() }
        if _shared?.threadCount == n { return }
        _shared?.shutdown()
        _shared = ThreadPool(threads: max(1, n))
    }

    public init(threads: Int, pin: Bool = true) {
        threadCount = max(1, threads)
        counters = SharedCounters(threads: max(1, threads))
        self.pin = pin
        let cpus = Int(nf_available_cpus())
        for i in 1..<threadCount {
            let t = Thread { [self] in
                // Pinned to its own CPU, or free to run on any (not on the CPU its creator may
                // be pinned to, whose mask a new thread inherits).
                if self.pin && self.threadCount <= cpus { _ = nf_pin_current_thread(Int32(i)) } else { _ = nf_unpin_current_thread() }
                self.workerLoop(index: i)
            }
            t.stackSize = 1 << 20
            t.start()
            self.threads.append(t)
        }
    }

    /// Runs `body(0) … body(count − 1)` side by side on Dispatch's threads (the caller takes
    /// one): for independent jobs such as a batch's files or an image's writes beside its
    /// measurement, not for kernels (those use `parallelFor`). A pool pins its calling thread to
    /// the first CPU, and a thread started from a pinned thread inherits that one CPU, so
    /// Dispatch's threads could all share it: each job off the main thread may run on any CPU.
    public static func sideBySide(_ count: Int, _ body: @Sendable (Int) -> Void) {
        DispatchQueue.concurrentPerform(iterations: count) { k in
            if !Thread.isMainThread { _ = nf_unpin_current_thread() }
            body(k)
        }
    }

    /// Runs `body` on a thread of its own, free to run on any CPU (see `sideBySide`), for work
    /// that mostly waits (a large write going to the device); the group's `wait()` joins it.
    public static func detached(_ body: @escaping @Sendable () -> Void) -> DispatchGroup {
        let done = DispatchGroup()
        done.enter()
        Thread.detachNewThread {
            _ = nf_unpin_current_thread()
            body()
            done.leave()
        }
        return done
    }

    /// Tells the workers that no loop is coming soon, so that once idle they sleep at once
    /// rather than spin (up to 200 000 pauses after a loop: 11 ms of a CPU per 4096² image in
    /// `segment_4096`, time its measuring and writing threads (`sideBySide`) could use). The
    /// next loop wakes them as usual.
    public func rest() {
        counters.store(.restAt, counters.load(.generation))
    }

    /// Lets the workers end once idle (a pool made for one job; `shared` is never shut down).
    public func shutdown() {
        mutex.lock(); stopping = true; mutex.broadcast(); mutex.unlock()
    }

    /// Runs `body(item, threadIndex)` for every item in 0..<count, spread over the threads.
    /// `threadIndex` is in 0..<threadCount and lets a loop keep per-thread partial results.
    public func parallelFor(_ count: Int, _ body: (Int, Int) -> Void) {
        if count <= 0 { return }
        if threadCount == 1 || count == 1 {
            for i in 0..<count { body(i, 0) }
            return
        }
        // A nested or concurrent call (from a worker, or while another loop runs) runs serially
        // rather than waiting for the pool it is part of.
        guard callerLock.try() else {
            for i in 0..<count { body(i, 0) }
            return
        }
        defer { callerLock.unlock() }
        if pin && !callerPinned && Thread.isMainThread {
            _ = nf_pin_current_thread(0)
            callerPinned = true
        }
        // Workers call the closure through a pointer to this stack slot, so they never hold a
        // reference to it after their last item (the closure does not escape this call).
        withoutActuallyEscaping(body) { escapable in
            withUnsafePointer(to: escapable) { ptr in
                mutex.lock()
                // A pool shut down (`setSharedThreadCount` replaced it while someone still held
                // it) has workers that may have left: the caller runs the loop alone rather than
                // wait for them forever. Checked under the lock the workers leave under.
                if stopping {
                    mutex.unlock()
                    for i in 0..<count { ptr.pointee(i, 0) }
                    return
                }
                job = ptr
                jobCount = count
                for t in 0..<threadCount { counters.storeNext(t, shareStart(t, of: count)) }
                counters.store(.pending, threadCount - 1)
                _ = counters.add(.generation, 1)
                mutex.broadcast()
                mutex.unlock()
                runItems(ptr, count: count, thread: 0)
                while counters.load(.pending) > 0 { nf_cpu_relax() }
                job = nil
            }
        }
    }

    /// The first item of thread t's share of `count` (t = threadCount: the end of the last share).
    @inline(__always) private func shareStart(_ t: Int, of count: Int) -> Int { t * count / threadCount }

    /// Each thread first takes the items of its own share, `thread` · count / threads up to
    /// the next thread's, in order, then helps the others with theirs (from where each has got
    /// to, so that owner and helper take alternate items there). The convolution kernels
    /// number their items band of rows by band of rows, so a thread works on the same slab of
    /// the image in every convolution of a network: the rows it reads were mostly written by
    /// itself, in its own caches, where a single shared counter dealt neighbouring bands to
    /// alternate threads and half of every pass's input came from the other core's.
    /// A thread's own counter also sits on a line no other thread touches until it helps.
    /// Measured on Intel Xeon fam 6 mod 207, 2 threads, one binary switching between the two
    /// tile by tile (medians of 40 tiles): AVX-512 512² tiles 3.22 against 3.42 ms, 3.06 against
    /// 3.18, 3.02 against 3.13 (a 256² encoder 27 % faster); AVX2 build 5.40 against 5.46 and
    /// 5.47 against 5.53 ms; batch-20 training steps 346 against 354 ms.
    @inline(__always) private func runItems(_ body: UnsafePointer<(Int, Int) -> Void>, count: Int, thread: Int) {
        let threads = threadCount
        for k in 0..<threads {
            let t = (thread + k) % threads, end = shareStart(t + 1, of: count)
            while true {
                let i = counters.addNext(t, 1)
                if i >= end { break }
                body.pointee(i, thread)
            }
        }
    }

    private func workerLoop(index: Int) {
        var seen = 0
        while true {
            // Spin for a short while (a forward pass issues jobs back to back), then sleep; at
            // once when the caller said no job is coming soon (`rest`).
            var spins = 0
            while counters.load(.generation) == seen && spins < 200_000 && counters.load(.restAt) != seen {
                nf_cpu_relax(); spins += 1
            }
            mutex.lock()
            while counters.load(.generation) == seen && !stopping { mutex.wait() }
            // Leave only when no job is waiting for this worker (its caller counts on it).
            if stopping && counters.load(.generation) == seen { mutex.unlock(); return }
            seen = counters.load(.generation)
            let body = job!
            let count = jobCount
            mutex.unlock()
            runItems(body, count: count, thread: index)
            _ = counters.add(.pending, -1)
        }
    }
}

/// Atomic counters in memory of their own, allocated once and freed with the owner, so the C
/// atomics always see one stable address per counter. Each counter sits on its own cache line
/// (a thread's item counter is hammered by that thread; the others only polled): the workers
/// still running the current job, the job generation, the generation the caller last rested
/// at (`rest`), then each thread's next item.
final class SharedCounters: @unchecked Sendable {
    enum Counter: Int { case pending = 0, generation = 1, restAt = 2 }
    private static let stride = 16  // 128 bytes between counters: a cache line on Apple silicon, a pair of lines on x86
    private let base: UnsafeMutablePointer<Int>

    init(threads: Int) {
        base = UnsafeMutableRawPointer.allocate(byteCount: (3 + threads) * Self.stride * MemoryLayout<Int>.stride, alignment: 128)
            .initializeMemory(as: Int.self, repeating: 0, count: (3 + threads) * Self.stride)
        store(.restAt, -1)  // no generation yet
    }
    /// Thread t's next item.
    @inline(__always) func storeNext(_ t: Int, _ v: Int) { nf_atomic_store(next(t), v) }
    /// Takes thread t's next item: adds `v` and returns the value before.
    @inline(__always) func addNext(_ t: Int, _ v: Int) -> Int { nf_atomic_fetch_add(next(t), v) }
    /// Thread t's item counter, after `pending`, `generation` and `restAt`.
    @inline(__always) private func next(_ t: Int) -> UnsafeMutablePointer<Int> { base + (3 + t) * Self.stride }
    deinit { base.deallocate() }

    @inline(__always) private func address(_ c: Counter) -> UnsafeMutablePointer<Int> { base + c.rawValue * Self.stride }
    @inline(__always) func load(_ c: Counter) -> Int { nf_atomic_load(address(c)) }
    @inline(__always) func store(_ c: Counter, _ v: Int) { nf_atomic_store(address(c), v) }
    /// Adds `v` and returns the value before.
    @inline(__always) func add(_ c: Counter, _ v: Int) -> Int { nf_atomic_fetch_add(address(c), v) }
}

/// Per-item partial sums (deterministic reductions): `items` buffers of `stride` floats, each
/// zeroed by the item that fills it (in parallel), then added element by element in item order,
/// in parallel over the elements, so the sum does not depend on the thread count.
struct PartialSums {
    let items: Int, stride: Int
    let buffer: Tensor

    init(items: Int, stride: Int) {
        self.items = items; self.stride = stride
        buffer = Tensor(Shape(items, 1, 1, max(stride, 1)), zeroed: false)
    }

    /// Item `item`'s buffer, zeroed: call once, from the item's own work.
    func take(_ item: Int) -> UnsafeMutablePointer<Float> {
        let p = buffer.data + item * stride
        p.initialize(repeating: 0, count: stride)
        return p
    }

    /// out[k] += Σ_items partial[item][offset + k] for k < count, items in order.
    func add(offset: Int = 0, count: Int, into out: UnsafeMutablePointer<Float>, pool: ThreadPool) {
        let chunk = 2048
        let data = UnsafePointer(buffer.data)
        pool.parallelFor((count + chunk - 1) / chunk) { piece, _ in
            let lo = piece * chunk, hi = min(count, lo + chunk)
            for t in 0..<items {
                let acc = data + t * stride + offset
                for k in lo..<hi { out[k] += acc[k] }
            }
        }
    }
}

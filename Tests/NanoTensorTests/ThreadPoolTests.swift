import NanoTensor
import XCTest

/// `ThreadPool.parallelFor`: every item exactly once, whatever the count and thread count, with
/// thread indices in range, loop after loop on the same pool (each thread's share is set per
/// loop); each thread starts on its own share, and a thread whose share is slow is helped.
final class ThreadPoolTests: XCTestCase {
    /// Runs per item, counted per thread (each thread writes only its own row, so two threads
    /// running one item would show as 2, not as a lost update), and over 2000 short loops back
    /// to back on one 2-thread pool.
    func testEveryItemRunsExactlyOnce() {
        for threads in [1, 2, 3, 5] {
            let pool = ThreadPool(threads: threads, pin: false)
            defer { pool.shutdown() }
            let most = 1000
            let runs = UnsafeMutablePointer<Int>.allocate(capacity: threads * most)
            defer { runs.deallocate() }
            var loops = [0, 1, 2, 3, 4, 7, 16, 33, 100, 1000]
            if threads == 2 { for k in 0..<2000 { loops.append(1 + (k * 7) % 23) } }  // more threads than CPUs would crawl
            for count in loops {
                runs.initialize(repeating: 0, count: threads * most)
                pool.parallelFor(count) { item, thread in
                    XCTAssert((0..<threads).contains(thread))
                    runs[thread * most + item] += 1
                }
                let total = (0..<count).map { item in (0..<threads).reduce(0) { $0 + runs[$1 * most + item] } }
                if total != [Int](repeating: 1, count: count) {
                    XCTFail("\(count) items on \(threads) threads: runs \(total)")
                    return
                }
            }
        }
    }

    /// With thread 0's share slow, thread 1 runs its own share from its start, then takes over
    /// part of the rest (about half of it; fewer than 4 only if thread 1 were held off the CPU
    /// for some 65 ms while thread 0 sleeps).
    func testEachThreadStartsOnItsOwnShareAndHelpsWithASlowOne() {
        let pool = ThreadPool(threads: 2, pin: false)
        defer { pool.shutdown() }
        let count = 40
        let ran = UnsafeMutablePointer<Int>.allocate(capacity: count)
        defer { ran.deallocate() }
        pool.parallelFor(count) { item, thread in
            if item < count / 2 { usleep(5000) }  // thread 0's share: 20 × 5 ms
            ran[item] = thread
        }
        XCTAssertEqual(ran[count / 2], 1, "the first item of thread 1's share")
        let helped = (0..<(count / 2)).filter { ran[$0] == 1 }.count
        XCTAssertGreaterThan(helped, 3, "thread 1 took \(helped) items of thread 0's share")
    }

    /// A pool told to rest (its workers asleep, not spinning) runs the next loops on every
    /// thread as before, whether `rest` came before or after the workers finished the last loop
    /// (here: right away, and after they had long been asleep or spinning), and after rests in
    /// a row.
    func testARestedPoolWakesForTheNextLoop() {
        let pool = ThreadPool(threads: 2, pin: false)
        defer { pool.shutdown() }
        for pause: UInt32 in [0, 20_000, 0] {
            pool.parallelFor(2) { _, _ in }
            pool.rest()
            pool.rest()
            usleep(pause)
            let lock = NSLock()
            var threads = Set<Int>(), items = 0
            pool.parallelFor(2) { _, thread in
                usleep(50_000)  // long enough for the other thread to wake and take the second item
                lock.lock(); threads.insert(thread); items += 1; lock.unlock()
            }
            XCTAssertEqual(items, 2)
            XCTAssertEqual(threads, [0, 1], "after a pause of \(pause) µs")
        }
    }

    /// A pool that was shut down (as `setSharedThreadCount` does to the pool it replaces) still
    /// runs a loop someone gives it, on the caller alone, instead of waiting for workers that
    /// have left.
    func testAShutDownPoolRunsLoopsOnTheCaller() {
        let pool = ThreadPool(threads: 2, pin: false)
        pool.parallelFor(4) { _, _ in }
        pool.shutdown()
        usleep(20_000)  // the workers leave
        var threads: [Int] = []
        pool.parallelFor(5) { _, thread in threads.append(thread) }
        XCTAssertEqual(threads, [0, 0, 0, 0, 0])
    }
}

import NanoTensor
import XCTest

/// `ThreadPool.parallelFor`: every item exactly once, whatever the count and thread count, with
/// thread indices in range, loop after loop on the same pool (each thread's share is set per
/// loop); and a thread whose share is slow is helped by the others.
final class ThreadPoolTests: XCTestCase {
    func testEveryItemRunsExactlyOnce() {
        for threads in [1, 2, 3, 5] {
            let pool = ThreadPool(threads: threads, pin: false)
            defer { pool.shutdown() }
            for count in [0, 1, 2, 3, 4, 7, 16, 33, 100, 1000] {
                let runs = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
                runs.initialize(repeating: 0, count: max(count, 1))
                pool.parallelFor(count) { item, thread in
                    runs[item] += 1  // one item per thread at a time: no two threads write one slot
                    XCTAssert((0..<threads).contains(thread))
                }
                XCTAssertEqual(Array(UnsafeBufferPointer(start: runs, count: count)), [Int](repeating: 1, count: count),
                               "\(count) items on \(threads) threads")
                runs.deallocate()
            }
        }
    }

    /// With thread 0's share slow, thread 1 finishes its own and takes over part of the rest
    /// (about half of it; fewer than 4 only if thread 1 were held off the CPU for ~80 ms).
    func testOtherThreadsHelpWithASlowShare() {
        let pool = ThreadPool(threads: 2, pin: false)
        defer { pool.shutdown() }
        let count = 40
        let ran = UnsafeMutablePointer<Int>.allocate(capacity: count)
        defer { ran.deallocate() }
        pool.parallelFor(count) { item, thread in
            if item < count / 2 { usleep(5000) }  // thread 0's share: 20 × 5 ms
            ran[item] = thread
        }
        let helped = (0..<(count / 2)).filter { ran[$0] == 1 }.count
        XCTAssertGreaterThan(helped, 3, "thread 1 took \(helped) items of thread 0's share")
    }
}

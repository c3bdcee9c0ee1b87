import NanoTensor
import XCTest

final class FMAPeakTests: XCTestCase {
    /// The ceiling bench measures is a plausible rate (at least a few GFLOP/s per thread, below
    /// 64 FLOP per cycle at 6 GHz per thread) and the CPU and ISA are named.
    func testPeakIsPlausibleAndTheCPUIsNamed() {
        let pool = ThreadPool(threads: 1, pin: false)
        let peak = FMAPeak.measure(pool: pool, seconds: 0.06)
        XCTAssertGreaterThan(peak, 2)
        XCTAssertLessThan(peak, 64 * 6)
        XCTAssertFalse(FMAPeak.cpu.model.isEmpty)
        XCTAssertTrue(FMAPeak.cpu.isa.contains("\(vectorWidth) lanes"))
    }
}

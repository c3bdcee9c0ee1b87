import Foundation
import NanoTensor
import XCTest

final class FMAPeakTests: XCTestCase {
    /// The ceiling bench measures is a plausible rate (at least a few GFLOP/s per thread, below
    /// 64 FLOP per cycle at 6 GHz per thread).
    func testPeakIsPlausible() {
        let pool = ThreadPool(threads: 1, pin: false)
        let peak = FMAPeak.measure(pool: pool, seconds: 0.06)
        XCTAssertGreaterThan(peak, 2)
        XCTAssertLessThan(peak, 64 * 6)
    }

    /// Memory's ceiling is a plausible rate for each of its three passes (above 0.2 GB/s, below
    /// 10 TB/s), its writing pass wrote every float and its reading pass read them all back (the
    /// checksum: 2 per float), and the sum the reading pass runs adds every value it reads (whole
    /// blocks of four vectors and the single vectors after them).
    func testMemoryBandwidthIsPlausibleAndReadsEveryValue() {
        let pool = ThreadPool(threads: 2, pin: false)
        let bw = MemoryBandwidth.measure(pool: pool, megabytes: 16, runs: 2)
        for (name, rate) in [("read", bw.read), ("write", bw.write), ("copy", bw.copy)] {
            XCTAssertGreaterThan(rate, 0.2, name); XCTAssertLessThan(rate, 10_000, name)
        }
        XCTAssertEqual(bw.checksum, 2 * Double(16 << 20) / 4)
        let n = 7 * vectorWidth
        let values = (0..<n).map(Float.init)
        XCTAssertEqual(values.withUnsafeBufferPointer { ChannelKernels.sum($0.baseAddress!, n) }, Float(n * (n - 1) / 2))
    }

    /// The chase behind `memory_latency` runs one cycle through every line of its working set
    /// (so each load misses where the set is larger than the caches), its times are plausible
    /// (above 0.05 ns, below 100 µs a load), and the cache it reports is the largest set whose
    /// load took at most half of the largest set's.
    func testMemoryLatencyChasesEveryLineAndReadsItsCache() {
        for lines in [2, 3, 64, 1000] {
            let chain = MemoryLatency.chain(lines: lines, seed: 7)
            defer { chain.deallocate() }
            var seen = Set<Int>(), at = 0
            for _ in 0..<lines { seen.insert(at); at = chain[at * MemoryLatency.intsPerLine] }
            XCTAssertEqual(seen.count, lines, "\(lines) lines")
            XCTAssertEqual(at, 0, "\(lines) lines: back at the start after one lap")
        }
        let times = MemoryLatency.measure(kilobytes: [16, 4096], loads: 20_000)
        XCTAssertEqual(times.map(\.kilobytes), [16, 4096])
        for t in times { XCTAssertGreaterThan(t.nanoseconds, 0.05); XCTAssertLessThan(t.nanoseconds, 100_000) }
        XCTAssertEqual(MemoryLatency.effectiveCache([(256, 4), (1024, 9), (4096, 40), (65536, 100)]), 4096)
        XCTAssertEqual(MemoryLatency.effectiveCache([(256, 4), (1024, 9), (4096, 60), (65536, 100)]), 1024)
        XCTAssertEqual(MemoryLatency.effectiveCache([(256, 60), (65536, 100)]), 0)
    }

    /// The CPU named in bench rows is the one /proc/cpuinfo names (where there is one), and the
    /// ISA is the vector width this build was compiled for (-DNF_SIMD16, -DNF_SIMD4 or neither).
    func testTheCPUAndTheBuildsVectorWidthAreNamed() throws {
        #if NF_SIMD16
        XCTAssertEqual(vectorWidth, 16); XCTAssertEqual(FMAPeak.cpu.isa, "avx512 (16 lanes)")
        #elseif arch(arm64)
        XCTAssertEqual(vectorWidth, 4); XCTAssertEqual(FMAPeak.cpu.isa, "neon (4 lanes)")
        #elseif NF_SIMD4
        XCTAssertEqual(vectorWidth, 4); XCTAssertTrue(FMAPeak.cpu.isa.hasSuffix("(4 lanes)"))
        #else
        XCTAssertEqual(vectorWidth, 8); XCTAssertEqual(FMAPeak.cpu.isa, "avx2 (8 lanes)")
        #endif
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let name = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") })?
                .split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) else {
            throw XCTSkip("no model name in /proc/cpuinfo here: the CPU model is not checked")
        }
        XCTAssertTrue(FMAPeak.cpu.model.hasPrefix(name), "\(FMAPeak.cpu.model) does not start with \(name)")
    }
}

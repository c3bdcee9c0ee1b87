import Preprocessing
import XCTest

final class SeededRandomTests: XCTestCase {
    /// Reference values from an independent Python implementation of SplitMix64 seeding and
    /// xoshiro256** (seed 42).
    func testMatchesReferenceXoshiro256StarStar() {
        var r = SeededRandom(seed: 42)
        XCTAssertEqual(r.next(), 0x1578_0B2E_0C2E_C716)
        XCTAssertEqual(r.next(), 0x6104_D986_6D11_3A7E)
        XCTAssertEqual(r.next(), 0xAE17_5332_39E4_99A1)
    }

    func testSameSeedSameSequenceDifferentSeedDifferent() {
        var a = SeededRandom(seed: 7), b = SeededRandom(seed: 7), c = SeededRandom(seed: 8)
        let sa = (0..<16).map { _ in a.nextFloat() }
        XCTAssertEqual(sa, (0..<16).map { _ in b.nextFloat() })
        XCTAssertNotEqual(sa, (0..<16).map { _ in c.nextFloat() })
    }

    func testUniformRangesAndIntegerBound() {
        var r = SeededRandom(seed: 1)
        var counts = [Int](repeating: 0, count: 7)
        for _ in 0..<70_000 {
            let f = r.nextFloat(); XCTAssert(f >= 0 && f < 1)
            let d = r.nextDouble(); XCTAssert(d >= 0 && d < 1)
            counts[r.nextInt(below: 7)] += 1
        }
        // Each bucket expects 10,000 (sd ≈ 93).
        for c in counts { XCTAssert(abs(c - 10_000) < 500, "\(counts)") }
    }

    func testGaussianMoments() {
        var r = SeededRandom(seed: 3)
        let n = 100_000
        let xs = (0..<n).map { _ in Double(r.nextGaussian()) }
        let mean = xs.reduce(0, +) / Double(n)
        let variance = xs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)
        XCTAssertEqual(mean, 0, accuracy: 0.02)
        XCTAssertEqual(variance, 1, accuracy: 0.02)
    }

    func testPoissonSmallMeanMomentsAndZeroProbability() {
        var r = SeededRandom(seed: 11)
        let n = 100_000
        let ks = (0..<n).map { _ in r.nextPoisson(mean: 4) }
        let mean = Double(ks.reduce(0, +)) / Double(n)
        let variance = ks.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(n)
        XCTAssertEqual(mean, 4, accuracy: 0.03)
        XCTAssertEqual(variance, 4, accuracy: 0.1)
        // P(0) = e^-4 = 0.01832.
        XCTAssertEqual(Double(ks.filter { $0 == 0 }.count) / Double(n), 0.01832, accuracy: 0.002)
        XCTAssertEqual(r.nextPoisson(mean: 0), 0)
    }

    func testShuffleIsAPermutationAndForkIsDeterministic() {
        var r = SeededRandom(seed: 5)
        let s = r.shuffled(Array(0..<50))
        XCTAssertEqual(s.sorted(), Array(0..<50))
        XCTAssertNotEqual(s, Array(0..<50))
        var a = SeededRandom(seed: 9), b = SeededRandom(seed: 9)
        var fa = a.fork(), fb = b.fork()
        XCTAssertEqual(fa.next(), fb.next())
        XCTAssertEqual(a.next(), b.next())
    }
}

import CNanoSupport
import Foundation

/// The machine's ceiling for the kernels: independent chains of vector multiply-adds in the
/// kernels' own vector width on every worker thread, as the notes measured it (12 chains keep
/// the FMA units busy on Zen 3/4/5). `bench` reports every row as a fraction of it.
public enum FMAPeak {
    /// GFLOP/s (2 per lane per multiply-add) of `seconds` of FMA chains on every thread of `pool`.
    public static func measure(pool: ThreadPool = .shared, seconds: Double = 0.3) -> Double {
        let iterations = 2_000_000
        // Calibrate one run, then run long enough on every thread.
        var best = 0.0
        for _ in 0..<3 {
            let start = DispatchTime.now().uptimeNanoseconds
            var rounds = 0
            repeat {
                pool.parallelFor(pool.threadCount) { item, _ in chains(iterations, seed: Float(item)) }
                rounds += 1
            } while Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 < seconds / 3
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            let flops = Double(rounds * pool.threadCount * iterations) * 12 * 2 * Double(vectorWidth)
            best = max(best, flops / elapsed / 1e9)
        }
        return best
    }

    /// 12 independent multiply-add chains; the result is consumed so nothing is optimised away.
    @inline(never)
    static func chains(_ n: Int, seed: Float) {
        let m = FloatVector(repeating: 0.999_999), a = FloatVector(repeating: 1e-7)
        var c0 = FloatVector(repeating: seed), c1 = c0 + 1, c2 = c0 + 2, c3 = c0 + 3, c4 = c0 + 4, c5 = c0 + 5
        var c6 = c0 + 6, c7 = c0 + 7, c8 = c0 + 8, c9 = c0 + 9, c10 = c0 + 10, c11 = c0 + 11
        for _ in 0..<n {
            // c ← a + c·m: one multiply-add per chain and step, values converging to a / (1 − m).
            c0 = a.addingProduct(c0, m); c1 = a.addingProduct(c1, m); c2 = a.addingProduct(c2, m)
            c3 = a.addingProduct(c3, m); c4 = a.addingProduct(c4, m); c5 = a.addingProduct(c5, m)
            c6 = a.addingProduct(c6, m); c7 = a.addingProduct(c7, m); c8 = a.addingProduct(c8, m)
            c9 = a.addingProduct(c9, m); c10 = a.addingProduct(c10, m); c11 = a.addingProduct(c11, m)
        }
        let total = c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11
        if total.sum() == 42 { print("") }
    }

    /// The CPU's model name and the vector instruction set the kernels were built for.
    public static var cpu: (model: String, isa: String) {
        var model = "unknown CPU"
        var brand = [CChar](repeating: 0, count: 256)
        if nf_cpu_brand(&brand, brand.count) == 0 {  // macOS
            model = String(decoding: brand.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        if let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) {
            let field = { (key: String) in
                text.split(separator: "\n").first { $0.hasPrefix(key) }?.split(separator: ":", maxSplits: 1).last
                    .map { $0.trimmingCharacters(in: .whitespaces) }
            }
            model = [field("model name"), field("cpu family").map { "family \($0)" }, field("model\t").map { "model \($0)" }]
                .compactMap { $0 }.joined(separator: ", ")
        }
        #if arch(arm64)
        let isa = "neon (\(vectorWidth) lanes)"
        #else
        let isa = vectorWidth == 16 ? "avx512 (16 lanes)" : vectorWidth == 8 ? "avx2 (8 lanes)" : "sse/neon width (\(vectorWidth) lanes)"
        #endif
        return (model, isa)
    }
}

import Foundation
import MicrographIO
import NanoTensor
import XCTest

/// A numeric field of a seed file worth corrupting (a count, size, offset or dimension).
struct FuzzField {
    var offset: Int
    var size: Int
    var bigEndian: Bool
}

/// Robustness testing of the DM, SER and EMD readers with mutated files.
enum DMSEREMDFuzz {
    struct Seed {
        var name: String
        var bytes: [UInt8]
        /// Known structural fields (from the in-test writers); empty for corpus files.
        var fields: [FuzzField] = []
        /// Values worth writing into fields: offsets of other structures (self-references), sizes.
        var interesting: [UInt64] = []
    }

    static func write(_ v: UInt64, into b: inout [UInt8], _ f: FuzzField) {
        guard f.offset >= 0, f.offset + f.size <= b.count else { return }
        for k in 0..<f.size {
            let shift = UInt64(8 * (f.bigEndian ? f.size - 1 - k : k))
            b[f.offset + k] = UInt8(truncatingIfNeeded: v >> shift)
        }
    }

    static func read(_ b: [UInt8], _ f: FuzzField) -> UInt64 {
        var v: UInt64 = 0
        for k in 0..<f.size {
            let shift = UInt64(8 * (f.bigEndian ? f.size - 1 - k : k))
            v |= UInt64(b[f.offset + k]) << shift
        }
        return v
    }

    /// The `index`-th mutant of `seed`: truncations, bit flips, byte overwrites, extreme or
    /// self-referencing values in structural fields, insertions, deletions and copied chunks.
    static func mutate(_ seed: Seed, index: Int, rng: inout SplitMix64) -> (String, [UInt8]) {
        var b = seed.bytes
        let n = b.count
        guard n > 0 else { return ("empty", b) }
        func pickField() -> FuzzField {
            if let f = seed.fields.randomElement(using: &rng) { return f }
            let size = [1, 2, 4, 8].randomElement(using: &rng) ?? 4
            return FuzzField(offset: Int.random(in: 0..<max(1, n - size), using: &rng), size: min(size, n),
                             bigEndian: Bool.random(using: &rng))
        }
        func extreme(_ f: FuzzField) -> UInt64 {
            let maxV: UInt64 = f.size >= 8 ? UInt64.max : (UInt64(1) << UInt64(8 * f.size)) - 1
            var choices: [UInt64] = [0, 1, 2, 3, maxV, maxV >> 1, (maxV >> 1) + 1, maxV - 1,
                                     UInt64(n), UInt64(n) + 1, UInt64(n) * 2, UInt64(n) / 2,
                                     0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 31, 1 << 40,
                                     rng.next() & maxV]
            choices += seed.interesting
            return (choices.randomElement(using: &rng) ?? 0) & maxV
        }
        switch index % 8 {
        case 0:  // truncation: evenly spread over the file, plus random cuts
            let cut = index % 16 == 0 ? Int.random(in: 0..<n, using: &rng) : (index / 8 * 7919) % n
            return ("truncate@\(cut)", Array(b[0..<cut]))
        case 1:  // bit flips, mostly in the structure (first 4 KiB)
            let region = min(n, 4096)
            let flips = Int.random(in: 1...4, using: &rng)
            for _ in 0..<flips { b[Int.random(in: 0..<region, using: &rng)] ^= UInt8(1) << UInt8.random(in: 0...7, using: &rng) }
            return ("bitflip", b)
        case 2:  // random bytes anywhere
            for _ in 0..<Int.random(in: 1...16, using: &rng) { b[Int.random(in: 0..<n, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            return ("bytes", b)
        case 3:  // one structural field set to an extreme / self-referencing value
            let f = pickField(); let v = extreme(f); write(v, into: &b, f)
            return ("field@\(f.offset)=\(v)", b)
        case 4:  // one field nudged
            let f = pickField()
            let delta = UInt64(Int.random(in: 1...16, using: &rng))
            let v = Bool.random(using: &rng) ? read(b, f) &+ delta : read(b, f) &- delta
            write(v, into: &b, f)
            return ("nudge@\(f.offset)", b)
        case 5:  // two or three fields at once
            for _ in 0..<Int.random(in: 2...3, using: &rng) { let f = pickField(); write(extreme(f), into: &b, f) }
            return ("fields", b)
        case 6:  // insert or delete a run of bytes (shifts everything after it)
            let at = Int.random(in: 0..<n, using: &rng)
            let len = Int.random(in: 1...16, using: &rng)
            if Bool.random(using: &rng) {
                b.insert(contentsOf: (0..<len).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: at)
                return ("insert@\(at)", b)
            }
            b.removeSubrange(at..<min(n, at + len))
            return ("delete@\(at)", b)
        default:  // copy a chunk of the file over another place (repeated structures, loops)
            let len = Int.random(in: 1...min(n, 256), using: &rng)
            let from = Int.random(in: 0...(n - len), using: &rng)
            let to = Int.random(in: 0...(n - len), using: &rng)
            let chunk = Array(b[from..<(from + len)])
            b.replaceSubrange(to..<(to + len), with: chunk)
            return ("copy \(from)->\(to)", b)
        }
    }

    struct Report: CustomStringConvertible {
        var total = 0, accepted = 0, rejected = 0
        var slowest = 0.0, seconds = 0.0
        var description: String {
            "\(total) mutants: \(accepted) read, \(rejected) rejected with MicrographError, " +
            "slowest \(String(format: "%.4f", slowest)) s, total \(String(format: "%.2f", seconds)) s"
        }
    }

    /// Runs `count` mutants spread over `seeds` through `parse`; every one must succeed or throw
    /// a `MicrographError`, within 1 s, and a success may not hold more pixel bytes than the file.
    @discardableResult
    static func run(_ label: String, seeds: [Seed], count: Int, rngSeed: UInt64,
                    parse: ([UInt8]) throws -> [Micrograph],
                    file: StaticString = #filePath, line: UInt = #line) -> Report {
        // NANOFIND_FUZZ_SEED explores other mutants; NANOFIND_FUZZ_KEEP=<path> saves each mutant
        // there before it is parsed (to reproduce a crash).
        let env = ProcessInfo.processInfo.environment
        let seedValue = env["NANOFIND_FUZZ_SEED"].flatMap { UInt64($0) }.map { $0 &+ rngSeed } ?? rngSeed
        let keepPath = env["NANOFIND_FUZZ_KEEP"]
        var rng = SplitMix64(seed: seedValue)
        var report = Report()
        var failures = 0
        let start = Date()
        guard !seeds.isEmpty else { XCTFail("\(label): no seeds", file: file, line: line); return report }
        for i in 0..<count {
            let seed = seeds[i % seeds.count]
            let (kind, bytes) = mutate(seed, index: i / seeds.count, rng: &rng)
            if let keep = keepPath {
                // A crash inside a C library cannot be caught: leave the mutant where it can be found.
                try? Data(bytes).write(to: URL(fileURLWithPath: keep))
            }
            let t0 = Date()
            var problem: String? = nil
            do {
                let images = try parse(bytes)
                report.accepted += 1
                for m in images where m.data.count > bytes.count {
                    problem = "returned \(m.data.count) pixel bytes from a \(bytes.count)-byte file"
                }
            } catch is MicrographError {
                report.rejected += 1
            } catch {
                problem = "threw \(type(of: error)) instead of MicrographError: \(error)"
            }
            let dt = Date().timeIntervalSince(t0)
            report.slowest = max(report.slowest, dt)
            if dt >= 1.0 { problem = (problem.map { $0 + "; " } ?? "") + "took \(dt) s" }
            report.total += 1
            if let problem {
                failures += 1
                if failures <= 10 {
                    // Keep the mutant so the failure can be reproduced.
                    let keep = FileManager.default.temporaryDirectory
                        .appendingPathComponent("nanofind-fuzz-\(label.replacingOccurrences(of: " ", with: "_"))-\(i).bin")
                    try? Data(bytes).write(to: keep)
                    XCTFail("\(label) mutant \(i) of \(seed.name) (\(kind)): \(problem) [saved as \(keep.path)]",
                            file: file, line: line)
                }
            }
        }
        report.seconds = Date().timeIntervalSince(start)
        XCTAssertEqual(failures, 0, "\(label): \(failures) mutants misbehaved", file: file, line: line)
        print("\(label) fuzz: \(report)")
        return report
    }

    /// Corpus files of the given extensions under `formats/<folder>` no larger than `maxBytes`.
    static func corpusSeeds(folder: String, extensions: Set<String>, maxBytes: Int) -> [Seed] {
        guard DMSEREMDCorpus.isAvailable else { return [] }
        let dir = DMSEREMDCorpus.formatsDirectory.appendingPathComponent(folder)
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
        return names.compactMap { name in
            guard extensions.contains((name as NSString).pathExtension.lowercased()),
                  let b = try? readFileBytes(dir.appendingPathComponent(name)), b.count <= maxBytes else { return nil }
            return Seed(name: name, bytes: b)
        }
    }
}

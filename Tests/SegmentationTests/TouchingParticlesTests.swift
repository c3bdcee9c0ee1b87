import NanoTensor
import ParticleAnalysis
import Preprocessing
import XCTest

/// The watershed that splits touching particles (`TouchingParticles.basins`, which floods a
/// framed box through fixed neighbour offsets) against its plain twin below, pixel for pixel.
final class TouchingParticlesTests: XCTestCase {
    /// The plain flooding: bounds-checked neighbours, coordinates from the pixel index.
    static func referenceBasins(width w: Int, height h: Int, inside: (Int, Int) -> Bool) -> (basin: [Int32], count: Int) {
        let d2 = DistanceTransform.squared(width: w, height: h, isSet: inside)
        var parent: [Int32] = []
        func find(_ a: Int32) -> Int32 { var r = a; while parent[Int(r)] != r { r = parent[Int(r)] }; return r }
        let pixels = (0..<(w * h)).filter { d2[$0] > 0 }
        // Highest distance first, ties in raster order.
        let order = pixels.sorted { d2[$0] > d2[$1] || (d2[$0] == d2[$1] && $0 < $1) }
        var pixelSet = [Int32](repeating: -1, count: w * h)
        var peak: [Float] = []
        for i in order {
            let x = i % w, y = i / w, level = d2[i].squareRoot()
            var roots: [Int32] = []
            var best: Int32 = -1, bestLevel: Float = -1
            for dy in -1...1 { for dx in -1...1 where dx != 0 || dy != 0 {
                let nx = x + dx, ny = y + dy
                guard nx >= 0, ny >= 0, nx < w, ny < h, pixelSet[ny * w + nx] >= 0 else { continue }
                let n = ny * w + nx, r = find(pixelSet[n])
                if !roots.contains(r) { roots.append(r) }
                if d2[n] > bestLevel { bestLevel = d2[n]; best = pixelSet[n] }
            } }
            if roots.isEmpty {
                parent.append(Int32(parent.count)); pixelSet[i] = Int32(parent.count - 1); peak.append(level)
                continue
            }
            for a in 0..<roots.count { for b in (a + 1)..<roots.count {
                let ra = find(roots[a]), rb = find(roots[b])
                guard ra != rb else { continue }
                let small = min(peak[Int(ra)], peak[Int(rb)])
                if small < TouchingParticles.minimumRadius || level >= TouchingParticles.neckRatio * small {
                    let high = max(peak[Int(ra)], peak[Int(rb)])
                    parent[Int(max(ra, rb))] = min(ra, rb)
                    peak[Int(min(ra, rb))] = high
                }
            } }
            pixelSet[i] = best
        }
        // Number the basins 0, 1, … in raster order of their first pixel.
        var number: [Int32: Int32] = [:]
        var basin = [Int32](repeating: -1, count: w * h)
        for i in 0..<(w * h) where pixelSet[i] >= 0 {
            let r = find(pixelSet[i])
            if number[r] == nil { number[r] = Int32(number.count) }
            basin[i] = number[r]!
        }
        return (basin, number.count)
    }

    func testBasinsMatchThePlainFloodingOnRandomBlobs() {
        var rng = SplitMix64(seed: 12)
        var splits = 0, components = 0, connectedSplits = 0
        for trial in 0..<60 {
            let w = 8 + Int(rng.next() % 120), h = 8 + Int(rng.next() % 90)
            let discs = (0..<(1 + Int(rng.next() % 4))).map { _ in
                (Double(rng.next() % UInt64(w)), Double(rng.next() % UInt64(h)), 2 + Double(rng.next() % 30))
            }
            // Discs, some with a notch, and an occasional hole: shapes with several peaks.
            let inside = { (x: Int, y: Int) -> Bool in
                let px = Double(x) + 0.5, py = Double(y) + 0.5
                let inDisc = discs.contains { (px - $0.0) * (px - $0.0) + (py - $0.1) * (py - $0.1) < $0.2 * $0.2 }
                return inDisc && !(trial % 5 == 0 && (x * 7 + y * 3) % 23 == 0)
            }
            let fast = TouchingParticles.basins(width: w, height: h, inside: inside)
            let plain = Self.referenceBasins(width: w, height: h, inside: inside)
            XCTAssertEqual(fast.count, plain.count, "trial \(trial): \(w)x\(h), discs \(discs)")
            XCTAssertEqual(fast.basin, plain.basin, "trial \(trial): \(w)x\(h), discs \(discs)")
            if plain.count > 1 { splits += 1 }
            // One component (a particle, as the split looks at them): the same basins, most
            // found without flooding.
            var mask = BinaryMask(width: w, height: h)
            for y in 0..<h { for x in 0..<w where inside(x, y) { mask.values[y * w + x] = 1 } }
            if ComponentLabels(mask).count == 1 {
                let particle = TouchingParticles.basins(width: w, height: h, connected: true, inside: inside)
                XCTAssertEqual(particle.count, plain.count, "trial \(trial): one component")
                XCTAssertEqual(particle.basin, plain.basin, "trial \(trial): one component")
                // Asked for basin numbers only where there are several: the same, or none.
                let several = TouchingParticles.basins(width: w, height: h, connected: true, onlyIfSeveral: true) { y, flags in
                    for x in 0..<w { flags[x] = inside(x, y) ? 1 : 0 }
                }
                XCTAssertEqual(several.count, plain.count, "trial \(trial): one component")
                XCTAssertEqual(several.basin, plain.count > 1 ? plain.basin : [], "trial \(trial): one component")
                components += 1
                if plain.count > 1 { connectedSplits += 1 }
            }
        }
        XCTAssertGreaterThan(splits, 10, "the random blobs should include many with several basins")
        XCTAssertGreaterThan(components, 20, "many of the blobs should be one component")
        XCTAssertGreaterThan(connectedSplits, 3, "some one-component blobs should have several basins")
    }

    /// Particles of overlapping discs and ellipses (some with specks flipped), as a split looks
    /// at them: the basins asked for only where there are several against the plain flooding.
    /// Many have several peaks and one basin, found without flooding their lower pixels.
    func testParticlesOfOverlappingDiscsMatchThePlainFlooding() {
        var rng = SplitMix64(seed: 31)
        var severalPeaksOneBasin = 0, split = 0, stoppedEarly = 0
        for trial in 0..<150 {
            let spread = 10 + rng.next() % 60
            let discs = (0..<(2 + Int(rng.next() % 3))).map { _ in
                (Double(rng.next() % spread), Double(rng.next() % spread), 3 + Double(rng.next() % 30), 0.5 + Double(rng.next() % 100) / 100)
            }
            // Disc k: (x − cx)² + ((y − cy) / aspect)² < r², reaching r · aspect up and down.
            let x0 = discs.map { $0.0 - $0.2 }.min()! - 1, y0 = discs.map { $0.1 - $0.2 * $0.3 }.min()! - 1
            let w = Int(discs.map { $0.0 + $0.2 }.max()! - x0) + 2, h = Int(discs.map { $0.1 + $0.2 * $0.3 }.max()! - y0) + 2
            var mask = BinaryMask(width: w, height: h)
            for y in 0..<h { for x in 0..<w {
                let inDisc = discs.contains { d in
                    let dx = Double(x) + x0 - d.0, dy = (Double(y) + y0 - d.1) / d.3
                    return dx * dx + dy * dy < d.2 * d.2
                }
                mask.values[y * w + x] = (inDisc != (trial % 3 == 0 && rng.next() % 40 == 0)) ? 1 : 0
            } }
            // The largest component alone, as a particle.
            let labels = ComponentLabels(mask)
            guard labels.count > 0 else { continue }
            var area = [Int](repeating: 0, count: labels.count + 1)
            for l in labels.labels { area[Int(l)] += 1 }
            let largest = Int32((1...labels.count).max { area[$0] < area[$1] }!)
            let inside = { (x: Int, y: Int) in labels.labels[y * w + x] == largest }
            let plain = Self.referenceBasins(width: w, height: h, inside: inside)
            var flooded = -1
            let several = TouchingParticles.basins(width: w, height: h, connected: true, onlyIfSeveral: true, flooded: { flooded = $0 }) { y, flags in
                for x in 0..<w { flags[x] = inside(x, y) ? 1 : 0 }
            }
            let pixels = labels.labels.filter { $0 == largest }.count
            XCTAssertTrue((0...pixels).contains(flooded), "trial \(trial): \(flooded) of \(pixels) pixels flooded")
            if flooded > 0 && flooded < pixels { stoppedEarly += 1 }
            XCTAssertEqual(several.count, plain.count, "trial \(trial): \(w)x\(h), discs \(discs)")
            XCTAssertEqual(several.basin, plain.count > 1 ? plain.basin : [], "trial \(trial): \(w)x\(h), discs \(discs)")
            let level2 = DistanceTransform.squaredFramed(width: w, height: h) { y, flags in for x in 0..<w { flags[x] = inside(x, y) ? 1 : 0 } }
            if !TouchingParticles.hasOnePeak(level2, width: w + 2, height: h + 2).one && plain.count == 1 { severalPeaksOneBasin += 1 }
            if plain.count > 1 { split += 1 }
        }
        XCTAssertGreaterThan(severalPeaksOneBasin, 30, "many particles should have several peaks and one basin")
        XCTAssertGreaterThan(2 * stoppedEarly, severalPeaksOneBasin, "the flooding should stop early for most of those")
        XCTAssertGreaterThan(split, 10, "some particles should have several basins")
    }
}

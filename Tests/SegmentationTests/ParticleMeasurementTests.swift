import Foundation
import MicrographIO
import ParticleAnalysis
import Preprocessing
import NanoTensor
import XCTest

/// Particle measures on masks with known answers (as scikit-image's regionprops tests do).
final class ParticleMeasurementTests: XCTestCase {
    func mask(_ w: Int, _ h: Int, _ inside: (Double, Double) -> Bool) -> BinaryMask {
        var m = BinaryMask(width: w, height: h)
        for y in 0..<h { for x in 0..<w where inside(Double(x) + 0.5, Double(y) + 0.5) { m.values[y * w + x] = 1 } }
        return m
    }

    func testDisc() {
        let r = 20.0
        let m = mask(100, 100) { ($0 - 50) * ($0 - 50) + ($1 - 40) * ($1 - 40) < r * r }
        let p = ParticleMeasurement(mask: m, pixelSizeNm: 0.05).particles
        XCTAssertEqual(p.count, 1)
        let d = p[0]
        XCTAssertEqual(d.centroidX, 50, accuracy: 0.01)
        XCTAssertEqual(d.centroidY, 40, accuracy: 0.01)
        XCTAssertEqual(Double(d.areaPx), Double.pi * r * r, accuracy: 0.01 * Double.pi * r * r)
        XCTAssertEqual(d.equivalentDiameterNm!, 2 * r * 0.05, accuracy: 0.01)
        XCTAssertEqual(d.areaNm2!, Double(d.areaPx) * 0.0025, accuracy: 1e-9)
        XCTAssertEqual(d.majorAxisPx, 2 * r, accuracy: 0.4)
        XCTAssertEqual(d.minorAxisPx, 2 * r, accuracy: 0.4)
        XCTAssertLessThan(d.eccentricity, 0.1)
        XCTAssertEqual(d.circularity, 1, accuracy: 0.1)
        XCTAssertEqual(d.solidity, 0.9753, accuracy: 1e-4)  // scikit-image's value (below)
        XCTAssertFalse(d.touchesBorder)
        XCTAssertEqual(d.perimeterPx, 2 * Double.pi * r, accuracy: 0.05 * 2 * Double.pi * r)
    }

    /// Solidity as scikit-image's regionprops gives it: the area over the pixels of
    /// `convex_hull_image` (the hull of the pixels' edge midpoints, pixel centres inside or on
    /// it). Reference values from that definition computed independently (exact fractions, brute
    /// force): small discs are convex (1), a diagonal line too; radius 10: 0.9518, two touching
    /// discs of radius 20: 0.8747.
    func testSolidityIsScikitImages() {
        func disc(_ r: Double) -> BinaryMask { mask(100, 100) { ($0 - 50) * ($0 - 50) + ($1 - 40) * ($1 - 40) < r * r } }
        XCTAssertEqual(ParticleMeasurement(mask: disc(3)).particles[0].solidity, 1, accuracy: 1e-12)
        XCTAssertEqual(ParticleMeasurement(mask: disc(10)).particles[0].solidity, 0.9518, accuracy: 1e-4)
        var line = BinaryMask(width: 12, height: 12)
        for i in 1..<11 { line.values[i * 12 + i] = 1 }
        XCTAssertEqual(ParticleMeasurement(mask: line).particles[0].solidity, 1, accuracy: 1e-12)
        let pair = mask(160, 60) { x, y in (x - 30) * (x - 30) + (y - 30) * (y - 30) < 400 || (x - 69.9) * (x - 69.9) + (y - 30) * (y - 30) < 400 }
        XCTAssertEqual(ParticleMeasurement(mask: pair).particles[0].solidity, 0.8747, accuracy: 1e-4)
        // Random blobs against a brute-force count: every pixel centre tested against the hull's
        // edges (Double arithmetic, a small tolerance for the points on them).
        var rng = SplitMix64(seed: 21)
        for _ in 0..<20 {
            var m = BinaryMask(width: 30, height: 24)
            for _ in 0..<3 {
                let cx = 8 + 14 * Double(rng.nextFloat()), cy = 6 + 12 * Double(rng.nextFloat()), r = 2 + 5 * Double(rng.nextFloat())
                for y in 0..<24 { for x in 0..<30 where (Double(x) + 0.5 - cx) * (Double(x) + 0.5 - cx) + (Double(y) + 0.5 - cy) * (Double(y) + 0.5 - cy) < r * r {
                    m.values[y * 30 + x] = 1
                } }
            }
            let measured = ParticleMeasurement(mask: m)
            for p in measured.particles {
                let pixels = (0..<(30 * 24)).filter { measured.labels.labels[$0] == Int32(p.id) }
                XCTAssertEqual(p.solidity, Double(pixels.count) / Double(bruteForceHullPixels(pixels.map { ($0 % 30, $0 / 30) })), accuracy: 1e-12)
            }
        }
    }

    /// Pixel centres (x, y) inside or on the convex hull of the pixels' edge midpoints.
    func bruteForceHullPixels(_ pixels: [(Int, Int)]) -> Int {
        var points: [(Double, Double)] = []
        for (x, y) in pixels { points += [(Double(x) - 0.5, Double(y)), (Double(x) + 0.5, Double(y)), (Double(x), Double(y) - 0.5), (Double(x), Double(y) + 0.5)] }
        points.sort { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
        func cross(_ o: (Double, Double), _ a: (Double, Double), _ b: (Double, Double)) -> Double { (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0) }
        var lower: [(Double, Double)] = [], upper: [(Double, Double)] = []
        for q in points { while lower.count >= 2 && cross(lower[lower.count - 2], lower[lower.count - 1], q) <= 0 { lower.removeLast() }; lower.append(q) }
        for q in points.reversed() { while upper.count >= 2 && cross(upper[upper.count - 2], upper[upper.count - 1], q) <= 0 { upper.removeLast() }; upper.append(q) }
        let hull = Array(lower.dropLast()) + Array(upper.dropLast())
        var count = 0
        for y in -1...30 { for x in -1...36 {
            let q = (Double(x), Double(y))
            if (0..<hull.count).allSatisfy({ cross(hull[$0], hull[($0 + 1) % hull.count], q) >= -1e-9 }) { count += 1 }
        } }
        return count
    }

    func testEllipseAxesAndOrientation() {
        let a = 30.0, b = 12.0, theta = 30.0 * Double.pi / 180
        let m = mask(120, 120) { x, y in
            let dx = x - 60, dy = y - 60
            let u = dx * cos(theta) + dy * sin(theta), v = -dx * sin(theta) + dy * cos(theta)
            return u * u / (a * a) + v * v / (b * b) < 1
        }
        let e = ParticleMeasurement(mask: m).particles[0]
        XCTAssertEqual(e.majorAxisPx, 2 * a, accuracy: 0.6)
        XCTAssertEqual(e.minorAxisPx, 2 * b, accuracy: 0.6)
        XCTAssertEqual(e.orientationDeg, 30, accuracy: 1)
        XCTAssertEqual(e.eccentricity, (1 - b * b / (a * a)).squareRoot(), accuracy: 0.01)
        XCTAssertEqual(Double(e.areaPx), Double.pi * a * b, accuracy: 0.01 * Double.pi * a * b)
    }

    func testRectangle() {
        let m = mask(60, 50) { x, y in x > 10 && x < 40 && y > 5 && y < 25 }  // columns 10...39, rows 5...24
        let r = ParticleMeasurement(mask: m).particles[0]
        XCTAssertEqual(r.areaPx, 30 * 20)
        XCTAssertEqual(r.boundingBox.x0, 10); XCTAssertEqual(r.boundingBox.x1, 40)
        XCTAssertEqual(r.boundingBox.y0, 5); XCTAssertEqual(r.boundingBox.y1, 25)
        XCTAssertEqual(r.solidity, 1, accuracy: 1e-12)
        XCTAssertEqual(r.orientationDeg, 0, accuracy: 1e-9)
        // Major/minor of a w×h rectangle's moment ellipse: 4·sqrt(w²/12), 4·sqrt(h²/12).
        XCTAssertEqual(r.majorAxisPx, 4 * (900.0 / 12).squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(r.minorAxisPx, 4 * (400.0 / 12).squareRoot(), accuracy: 1e-6)
        // scikit-image: along straight edges and at right-angle corners every border pixel counts 1.
        XCTAssertEqual(r.perimeterPx, 96, accuracy: 1e-9)
    }

    /// The longest rows a mask may have still give exact moments (the integer sums of x² near
    /// 2⁶¹); the particle analysis builds without overflow checks.
    func testLongestRowsMeasureExactly() {
        let side = ParticleMeasurement.largestSide
        let r = ParticleMeasurement(mask: BinaryMask(width: side, height: 2, values: [UInt8](repeating: 1, count: 2 * side))).particles
        XCTAssertEqual(r.count, 1)
        XCTAssertEqual(r[0].areaPx, 2 * side)
        XCTAssertEqual(r[0].centroidX, Double(side) / 2, accuracy: 1e-6)
        XCTAssertEqual(r[0].majorAxisPx, 4 * (Double(side) * Double(side) / 12).squareRoot(), accuracy: 1e-3)
        // The minor axis is the eigenvalues' difference of a 10¹¹-sized moment and a ⅓-sized one:
        // about 1e-5 of it is lost to rounding at this length (a 100-pixel rod loses 1e-12 or less).
        XCTAssertEqual(r[0].minorAxisPx, 4 * (4.0 / 12).squareRoot(), accuracy: 1e-4)
        XCTAssertNil(ParticleMeasurement.sizeProblem(width: side, height: side))
        XCTAssertNotNil(ParticleMeasurement.sizeProblem(width: side + 1, height: 64))
        XCTAssertNotNil(ParticleMeasurement.sizeProblem(width: 64, height: side + 1))
    }

    func testRingHoleIsFilled() {
        let m = mask(80, 80) { x, y in
            let d2 = (x - 40) * (x - 40) + (y - 40) * (y - 40)
            return d2 < 25 * 25 && d2 >= 12 * 12
        }
        let disc = mask(80, 80) { ($0 - 40) * ($0 - 40) + ($1 - 40) * ($1 - 40) < 25 * 25 }
        let p = ParticleMeasurement(mask: m).particles
        XCTAssertEqual(p.count, 1)
        XCTAssertEqual(p[0].areaPx, disc.foregroundCount)
    }

    func testTouchingDiscsJoinAndSeparatedOnesDoNot() {
        // Two discs whose pixels touch diagonally or share an edge: one particle (8-connectivity).
        let touching = mask(100, 60) { x, y in
            (x - 30) * (x - 30) + (y - 30) * (y - 30) < 400 || (x - 69.9) * (x - 69.9) + (y - 30) * (y - 30) < 400
        }
        XCTAssertEqual(ParticleMeasurement(mask: touching).particles.count, 1)
        let apart = mask(100, 60) { x, y in
            (x - 25) * (x - 25) + (y - 30) * (y - 30) < 400 || (x - 75) * (x - 75) + (y - 30) * (y - 30) < 400
        }
        let p = ParticleMeasurement(mask: apart).particles
        XCTAssertEqual(p.count, 2)
        XCTAssertEqual(p[0].id, 1); XCTAssertLessThan(p[0].centroidX, p[1].centroidX)
    }

    /// Random discs, many of them touching or overlapping (pairs, chains, clusters), of radii
    /// 4–40 px (and one of 600 px, whose box is too large to be looked at side by side).
    static func crowdedDiscs(seed: UInt64, side: Int = 1600) -> BinaryMask {
        let c = Double(side) / 2
        var rng = SplitMix64(seed: seed)
        var discs: [(x: Double, y: Double, r: Double)] = [(c, c, 600)]
        for _ in 0..<220 {
            let r = 4 + 36 * Double(rng.nextFloat()), x = Double(side) * Double(rng.nextFloat()), y = Double(side) * Double(rng.nextFloat())
            discs.append((x, y, r))
            // A neighbour touching it (or just overlapping) in a random direction.
            let a = 2 * Double.pi * Double(rng.nextFloat()), r2 = 4 + 36 * Double(rng.nextFloat()), d = (r + r2) * (0.9 + 0.1 * Double(rng.nextFloat()))
            discs.append((x + d * cos(a), y + d * sin(a), r2))
        }
        var m = BinaryMask(width: side, height: side)
        for d in discs {
            let ys = min(side, max(0, Int(d.y - d.r))), ye = min(side, max(ys, Int(d.y + d.r) + 1))
            let xs = min(side, max(0, Int(d.x - d.r))), xe = min(side, max(xs, Int(d.x + d.r) + 1))
            for y in ys..<ye {
                for x in xs..<xe
                where (Double(x) + 0.5 - d.x) * (Double(x) + 0.5 - d.x) + (Double(y) + 0.5 - d.y) * (Double(y) + 0.5 - d.y) < d.r * d.r {
                    m.values[y * side + x] = 1
                }
            }
        }
        return m
    }

    /// The split looks at particles side by side (pieces in any order, on several threads) and
    /// gives exactly the labels and measures of looking at them one after another. The parts
    /// found in the first pass are kept for the second (within `TouchingParticles.keptBytes`),
    /// except those of a box too large to be looked at side by side (the 600-pixel disc and what
    /// touches it), which are found again.
    func testSplitSideBySideEqualsSerial() {
        XCTAssertGreaterThan(TouchingParticles.keptBytes(pixels: 1400 * 1400), 1400 * 1400 - 1)
        for (seed, side): (UInt64, Int) in [(1, 1600), (2, 1400)] {
            let m = Self.crowdedDiscs(seed: seed, side: side)
            let serial = ParticleMeasurement(mask: m, minimumAreaPx: 20, splitTouching: true)
            let pool = ThreadPool(threads: 2)
            let sideBySide = ParticleMeasurement(mask: m, minimumAreaPx: 20, splitTouching: true) { count, piece in
                pool.parallelFor(count) { k, _ in piece(count - 1 - k) }
            }
            pool.shutdown()
            let whole = ParticleMeasurement(mask: m, minimumAreaPx: 20)
            XCTAssertGreaterThan(serial.particles.count, whole.particles.count + 30, "seed \(seed): many particles split")
            let centre = side / 2 * side + side / 2
            XCTAssertLessThan(serial.particles[Int(serial.labels.labels[centre]) - 1].areaPx,
                              whole.particles[Int(whole.labels.labels[centre]) - 1].areaPx, "seed \(seed): the large disc's particle split")
            XCTAssertEqual(sideBySide.labels, serial.labels, "seed \(seed)")
            XCTAssertEqual(sideBySide.particles.map(\.csvFields), serial.particles.map(\.csvFields), "seed \(seed)")
            XCTAssertEqual(sideBySide.particles, serial.particles, "seed \(seed): measures equal bit for bit")
        }
    }

    /// Measured in pieces (odd and even ids side by side, on two threads), every measure, the
    /// mean probability, the border flags next to an outside mask and the hull included, is the
    /// one-pass value bit for bit.
    func testMeasuresInPiecesEqualOnePass() throws {
        let m = Self.crowdedDiscs(seed: 5, side: 1400)
        var rng = SplitMix64(seed: 6)
        let probability = (0..<(1400 * 1400)).map { _ in Float.random(in: 0...1, using: &rng) }
        let outside = BinaryMask(width: 1400, height: 1400, values: (0..<(1400 * 1400)).map { $0 % 1400 > 1380 ? 1 : 0 })
        let pool = ThreadPool(threads: 2)
        defer { pool.shutdown() }
        for split in [false, true] {
            let serial = ParticleMeasurement(mask: m, probability: probability, pixelSizeNm: 0.07, minimumAreaPx: 20, splitTouching: split,
                                             outside: outside)
            let pieces = ParticleMeasurement(mask: m, probability: probability, pixelSizeNm: 0.07, minimumAreaPx: 20, splitTouching: split,
                                             outside: outside) { count, piece in pool.parallelFor(count) { k, _ in piece(count - 1 - k) } }
            XCTAssertGreaterThan(serial.particles.count, 20)
            XCTAssertTrue(serial.particles.contains { $0.touchesBorder } && serial.particles.contains { !$0.touchesBorder })
            XCTAssertEqual(pieces.particles, serial.particles, "split \(split)")
            // Bit for bit (== takes −0 for +0): the JSON of every measure.
            let json = JSONEncoder()
            json.outputFormatting = .sortedKeys
            XCTAssertEqual(try json.encode(pieces.particles), try json.encode(serial.particles), "split \(split)")
        }
    }

    /// The table's numbers are what `String(format: "%.<d>f")` writes, ties, signs, zeros and
    /// the values printf rounds on their binary value included.
    func testTableNumbersAreFormattedAsPrintfDoes() {
        var rng = SplitMix64(seed: 9)
        let special: [Double] = [0, -0.0, 0.125, 0.375, 2.675, 1.005, -0.00001, 0.5, 1.5, 2.5, -2.5, 1e-300, 123456789.987654321,
                                 1e22, -1e300, .greatestFiniteMagnitude, .leastNonzeroMagnitude, .infinity, -.infinity, .nan]
        let random = (0..<2000).map { _ in Double(Float.random(in: -1...1, using: &rng)) * pow(10, Double(Int.random(in: -6...9, using: &rng))) }
        for v in special + random {
            for digits in [0, 2, 4, 17] {
                XCTAssertEqual(Particle.fixed(v, digits: digits), String(format: "%.\(digits)f", v), "\(v) to \(digits) digits")
            }
        }
    }

    /// After a split the labels are numbered 1, 2, … in raster order of each particle's first
    /// pixel, and every particle's area, box and centroid are those of its label's pixels,
    /// counted pixel by pixel: the runs the split leaves are the labels' own.
    func testSplitLabelsAndMeasuresAgreeWithThePixels() {
        for (seed, side): (UInt64, Int) in [(3, 1400), (4, 1500)] {
            let m = Self.crowdedDiscs(seed: seed, side: side)
            let split = ParticleMeasurement(mask: m, minimumAreaPx: 20, splitTouching: true)
            XCTAssertGreaterThan(split.particles.count, ParticleMeasurement(mask: m, minimumAreaPx: 20).particles.count, "seed \(seed)")
            var next: Int32 = 1
            var area = [Int](repeating: 0, count: split.labels.count + 1), sx = [Double](repeating: 0, count: split.labels.count + 1)
            var box = [(Int, Int, Int, Int)](repeating: (Int.max, Int.max, 0, 0), count: split.labels.count + 1)
            for y in 0..<side { for x in 0..<side {
                let l = Int(split.labels.labels[y * side + x])
                guard l != 0 else { continue }
                if area[l] == 0 { XCTAssertEqual(Int32(l), next, "seed \(seed): raster order at \(x), \(y)"); next += 1 }
                area[l] += 1; sx[l] += Double(x) + 0.5
                box[l] = (min(box[l].0, x), min(box[l].1, y), max(box[l].2, x + 1), max(box[l].3, y + 1))
            } }
            XCTAssertEqual(Int(next) - 1, split.labels.count)
            for p in split.particles {
                XCTAssertEqual(p.areaPx, area[p.id], "seed \(seed) particle \(p.id)")
                XCTAssertEqual(p.centroidX, sx[p.id] / Double(area[p.id]), accuracy: 1e-9)
                XCTAssertTrue(p.boundingBox == box[p.id], "seed \(seed) particle \(p.id)")
            }
        }
    }

    /// With `splitTouching`, two discs that touch or overlap come out as two particles split
    /// along the neck, each with about a disc's area and its centre; a chain of three as three;
    /// single particles of any shape (an elongated ellipse, a square, a dumbbell whose neck is
    /// nearly as wide as its ends) stay whole.
    func testTouchingParticlesSplitAlongTheNeck() {
        let r = 20.0, disc = Double.pi * r * r
        func discs(_ centres: [(Double, Double)], _ w: Int = 160, _ h: Int = 60) -> BinaryMask {
            mask(w, h) { x, y in centres.contains { (x - $0.0) * (x - $0.0) + (y - $0.1) * (y - $0.1) < r * r } }
        }
        for gap in [39.9, 36.0] {  // touching, and overlapping by 4 px
            let p = ParticleMeasurement(mask: discs([(30, 30), (30 + gap, 30)]), splitTouching: true).particles
            XCTAssertEqual(p.count, 2, "discs \(gap) apart")
            guard p.count == 2 else { continue }
            XCTAssertEqual(p[0].centroidX, 30, accuracy: 1.0); XCTAssertEqual(p[1].centroidX, 30 + gap, accuracy: 1.0)
            for q in p { XCTAssertEqual(Double(q.areaPx), disc - (gap < 39 ? 55 : 0), accuracy: 0.05 * disc) }
        }
        XCTAssertEqual(ParticleMeasurement(mask: discs([(25, 30), (63, 30), (101, 30)]), splitTouching: true).particles.count, 3)
        // A large particle touching a small one (radii 100 and 20 px, meeting on a neck of about
        // 20 px): convex enough (solidity 0.956) that a solidity gate let it pass as one.
        let pair = mask(260, 230) { x, y in
            (x - 110) * (x - 110) + (y - 115) * (y - 115) < 10000 || (x - 227) * (x - 227) + (y - 115) * (y - 115) < 400
        }
        XCTAssertGreaterThanOrEqual(ParticleMeasurement(mask: pair).particles.first?.solidity ?? 0, 0.95, "as convex as a single particle")
        let unequal = ParticleMeasurement(mask: pair, splitTouching: true).particles
        XCTAssertEqual(unequal.count, 2, "radii 80 and 20, touching")
        XCTAssertEqual(unequal.map(\.areaPx).sorted().first.map(Double.init) ?? 0, Double.pi * 400, accuracy: 0.1 * Double.pi * 400)
        // Without splitting, the same masks are one particle (8-connected components).
        XCTAssertEqual(ParticleMeasurement(mask: discs([(30, 30), (66, 30)])).particles.count, 1)
        let ellipse = mask(160, 60) { x, y in (x - 80) * (x - 80) / 3600 + (y - 30) * (y - 30) / 400 < 1 }
        let square = mask(80, 80) { x, y in abs(x - 40) < 25 && abs(y - 40) < 25 }
        let dumbbell = mask(160, 60) { x, y in
            (x - 40) * (x - 40) + (y - 30) * (y - 30) < 400 || (x - 110) * (x - 110) + (y - 30) * (y - 30) < 400
                || (x > 40 && x < 110 && abs(y - 30) < 17)
        }
        for (name, m) in [("ellipse 3:1", ellipse), ("square", square), ("dumbbell", dumbbell)] {
            XCTAssertEqual(ParticleMeasurement(mask: m, splitTouching: true).particles.count, 1, name)
        }
    }

    /// The watershed itself on single shapes (their one peak, or a ridge of near-equal ones,
    /// merge into one basin), a satellite below the minimum area staying with its particle, and
    /// touching particles cut by the image's border.
    func testSplitterOnSingleShapesSatellitesAndBorders() {
        for (name, inside) in [("ellipse 3:1", { (x: Double, y: Double) in (x - 80) * (x - 80) / 3600 + (y - 30) * (y - 30) / 400 < 1 }),
                               ("square", { (x: Double, y: Double) in abs(x - 40) < 25 && abs(y - 30) < 25 }),
                               ("hexagon", { (x: Double, y: Double) in
                                   (0..<3).allSatisfy { k in abs((x - 80) * cos(Double(k) * .pi / 3) + (y - 30) * sin(Double(k) * .pi / 3)) < 25 } })] {
            let (_, count) = TouchingParticles.basins(width: 160, height: 60) { x, y in inside(Double(x) + 0.5, Double(y) + 0.5) }
            XCTAssertEqual(count, 1, name)
        }
        // A disc of radius 20 with a touching satellite of radius 7 (about 150 px).
        let satellite = mask(100, 60) { x, y in
            (x - 30) * (x - 30) + (y - 30) * (y - 30) < 400 || (x - 56.5) * (x - 56.5) + (y - 30) * (y - 30) < 49
        }
        XCTAssertEqual(ParticleMeasurement(mask: satellite, minimumAreaPx: 200, splitTouching: true).particles.count, 1)
        let both = ParticleMeasurement(mask: satellite, minimumAreaPx: 100, splitTouching: true).particles
        XCTAssertEqual(both.count, 2)
        XCTAssertEqual(both.map(\.areaPx).reduce(0, +), satellite.values.filter { $0 != 0 }.count)
        // Two touching discs cut by the left border: two particles, both touching the border.
        let cut = mask(100, 100) { x, y in (x - 5) * (x - 5) + (y - 30) * (y - 30) < 400 || (x - 5) * (x - 5) + (y - 69.5) * (y - 69.5) < 400 }
        let parts = ParticleMeasurement(mask: cut, splitTouching: true).particles
        XCTAssertEqual(parts.count, 2)
        XCTAssertTrue(parts.allSatisfy(\.touchesBorder))
    }

    /// The exact distance transform against a brute-force search on random masks, and on
    /// regions all set (only the region's edge is unset: single rows and columns, and larger).
    func testDistanceTransformMatchesBruteForce() {
        var rng = SplitMix64(seed: 8)
        for k in 0..<50 {
            // Dense unset pixels, then sparse ones (long distances, whole columns set), then none.
            let large = k >= 40
            let w = large && k % 5 == 0 ? 1 : 1 + Int(rng.next() % (large ? 70 : 23))
            let h = large && k % 5 == 1 ? 1 : 1 + Int(rng.next() % (large ? 50 : 17))
            let oneIn: UInt64 = k < 20 ? 4 : 60
            let set = (0..<(w * h)).map { _ in large || rng.next() % oneIn != 0 }
            let d = DistanceTransform.squared(width: w, height: h) { x, y in set[y * w + x] }
            for y in 0..<h { for x in 0..<w {
                var best = Double.infinity
                // Unset pixels, and the ring just outside the region.
                for v in -1...h { for u in -1...w where u < 0 || v < 0 || u >= w || v >= h || !set[v * w + u] {
                    best = min(best, Double((u - x) * (u - x) + (v - y) * (v - y)))
                } }
                XCTAssertEqual(Double(d[y * w + x]), set[y * w + x] ? best : 0, "\(w)x\(h) at \(x),\(y)")
            } }
            // The framed form the watershed reads: the same inside, and a frame of zeros, with
            // the row pass's windows and with the envelope on every row.
            for window in [DistanceTransform.largestWindow, 0] {
                let framed = DistanceTransform.squaredFramed(width: w, height: h, window: window) { y, flags in
                    for x in 0..<w { flags[x] = set[y * w + x] ? 1 : 0 }
                }
                XCTAssertEqual(framed.count, (w + 2) * (h + 2))
                for v in 0..<(h + 2) { for u in 0..<(w + 2) {
                    let inside = u > 0 && v > 0 && u <= w && v <= h
                    XCTAssertEqual(framed[v * (w + 2) + u], inside ? Int32(d[(v - 1) * w + u - 1]) : 0, "\(w)x\(h) framed at \(u),\(v), window \(window)")
                } }
            }
        }
    }

    /// The row pass's windows against the envelope where rows need both: discs from a radius
    /// well within `largestWindow` to well beyond it (some rows take the envelope, the others
    /// windows), with and without specks of unset pixels, and long thin regions.
    func testDistanceTransformWindowsMatchEnvelope() {
        var rng = SplitMix64(seed: 21)
        var regions: [(w: Int, h: Int, set: [Bool], radius: Int?)] = []
        for r in [20, 100, 127, 129, 131, 200, 300] {
            let s = 2 * r + 1 + Int(rng.next() % 7)
            let disc = (0..<(s * s)).map { i in (i % s - r) * (i % s - r) + (i / s - r) * (i / s - r) <= r * r }
            regions.append((s, s, disc, r))
            regions.append((s, s, disc.map { $0 && rng.next() % 300 != 0 }, nil))
        }
        for (w, h) in [(2000, 3), (3, 2000), (700, 40), (40, 700)] { regions.append((w, h, [Bool](repeating: true, count: w * h), nil)) }
        for (w, h, set, radius) in regions {
            let rows = { (y: Int, flags: UnsafeMutablePointer<Int32>) in for x in 0..<w { flags[x] = set[y * w + x] ? 1 : 0 } }
            var envelopeRows = -1
            let windows = DistanceTransform.squaredFramed(width: w, height: h, envelopeRows: { envelopeRows = $0 }, setRow: rows)
            let envelope = DistanceTransform.squaredFramed(width: w, height: h, window: 0, setRow: rows)
            XCTAssertEqual(windows.count, envelope.count)
            XCTAssertTrue(windows == envelope, "\(w)x\(h): windows and envelope differ")
            // A disc's centre is its farthest pixel from the unset ones, r² + 1 (at (r, 1)). Rows
            // took the envelope where a pixel's distance² is above the largest window's square
            // (r ≥ 129: 128² + 1 is still below 129²), the others windows.
            if let r = radius {
                XCTAssertEqual(Int(windows.max()!), r * r + 1, "radius \(r)")
                let window = Int(DistanceTransform.largestWindow)
                if r * r + 1 <= (window + 1) * (window + 1) {
                    XCTAssertEqual(envelopeRows, 0, "radius \(r): every row in windows")
                } else {
                    XCTAssertGreaterThan(envelopeRows, 0, "radius \(r): the rows through the centre take the envelope")
                    // A row t rows from the centre has every pixel within r + 1 − |t| of the
                    // background (straight up or down): in windows where that is at most 128.
                    XCTAssertLessThanOrEqual(envelopeRows, 2 * (r - window) - 1, "radius \(r): the rows far from the centre stay in windows")
                }
            }
        }
    }

    func testBorderFlagSmallObjectRemovalAndLabels() {
        var m = mask(50, 50) { x, y in x < 10 && y > 20 && y < 30 }  // touches the left border
        m.values[45 * 50 + 45] = 1  // a single-pixel speck
        let all = ParticleMeasurement(mask: m)
        XCTAssertEqual(all.particles.count, 2)
        XCTAssertTrue(all.particles[0].touchesBorder)
        let filtered = ParticleMeasurement(mask: m, pixelSizeNm: 0.1, minimumAreaNm2: 0.05)  // 5 px
        XCTAssertEqual(filtered.particles.count, 1)
        XCTAssertEqual(filtered.labels.labels[45 * 50 + 45], 0)
        XCTAssertEqual(filtered.labels.labels[25 * 50 + 5], 1)
        XCTAssertNil(all.particles[0].areaNm2)
    }

    /// Rows below `specimenHeight` (an SEM information bar) are not specimen: a particle reaching
    /// the last specimen row is cut there and touches the border; one above it does not.
    func testParticleCutByAnInformationBarTouchesTheBorder() {
        let m = mask(60, 50) { x, y in (x > 10 && x < 20 && y > 30 && y < 40) || (x > 30 && x < 40 && y > 5 && y < 15) }
        XCTAssertEqual(ParticleMeasurement(mask: m).particles.map(\.touchesBorder), [false, false])
        XCTAssertEqual(ParticleMeasurement(mask: m, specimenHeight: 40).particles.map(\.touchesBorder), [false, true])
        XCTAssertEqual(ParticleMeasurement(mask: m, specimenHeight: 41).particles.map(\.touchesBorder), [false, false])
        for ignored in [0, -3, 51] { XCTAssertEqual(ParticleMeasurement(mask: m, specimenHeight: ignored).particles.map(\.touchesBorder), [false, false]) }
        XCTAssertEqual(ParticleMeasurement(mask: BinaryMask(width: 0, height: 0), specimenHeight: 5).particles.count, 0)
    }

    /// A particle next to pixels that show no specimen (a micrograph's padding, its NaN
    /// pixels) is cut there: it touches the border, as one at the image's edge does; one a pixel
    /// away, or touching only diagonally, does not.
    func testParticleBesideTheOutsideTouchesTheBorder() {
        let m = mask(60, 40) { x, y in (x > 10 && x < 20 && y > 10 && y < 20) || (x > 30 && x < 40 && y > 10 && y < 20) }
        var outside = BinaryMask(width: 60, height: 40)
        for y in 5..<25 { outside.values[y * 60 + 9] = 1 }  // beside the first square's left column (x = 10)
        outside.values[20 * 60 + 40] = 1  // diagonal to the second square's corner (39, 19): not a 4-neighbour
        XCTAssertEqual(ParticleMeasurement(mask: m, outside: outside).particles.map(\.touchesBorder), [true, false])
        outside.values[15 * 60 + 40] = 1  // right of the second square's right column (x = 39)
        XCTAssertEqual(ParticleMeasurement(mask: m, outside: outside).particles.map(\.touchesBorder), [true, true])
        XCTAssertEqual(ParticleMeasurement(mask: m).particles.map(\.touchesBorder), [false, false])
        // Two touching discs split: only the one beside the outside pixel is cut.
        let pair = mask(100, 60) { x, y in (x - 30) * (x - 30) + (y - 30) * (y - 30) < 400 || (x - 68) * (x - 68) + (y - 30) * (y - 30) < 400 }
        var right = BinaryMask(width: 100, height: 60)
        right.values[30 * 100 + 88] = 1  // beside the right disc's rightmost column (x = 87)
        XCTAssertEqual(ParticleMeasurement(mask: pair, splitTouching: true, outside: right).particles.map(\.touchesBorder), [false, true])
        // Above and below a run, found through whole rows of the outside mask.
        var above = BinaryMask(width: 60, height: 40)
        above.values[9 * 60 + 35] = 1
        XCTAssertEqual(ParticleMeasurement(mask: m, splitTouching: true, outside: above).particles.map(\.touchesBorder), [false, true])
    }

    func testEmptyMask() {
        XCTAssertEqual(ParticleMeasurement(mask: BinaryMask(width: 20, height: 10)).particles.count, 0)
    }

    /// The run-based labelling and hole filling against pixel-by-pixel twins (a union-find over
    /// pixels, and a flood fill from the border) on random masks of several densities and sizes,
    /// including one-row, one-column and full masks.
    func testRunLabellingAndHoleFillingMatchPixelReferences() {
        var rng = SplitMix64(seed: 7)
        for (w, h) in [(1, 1), (1, 9), (9, 1), (37, 23), (64, 64), (101, 50)] {
            for density in [0.0, 0.2, 0.45, 0.6, 0.9, 1.0] {
                var m = BinaryMask(width: w, height: h)
                for i in 0..<(w * h) { m.values[i] = Double(rng.next() % 1000) / 1000 < density ? 1 : 0 }
                let what = "\(w)x\(h) density \(density)"
                for eight in [true, false] {
                    let byRuns = ComponentLabels(m, connectivity8: eight)
                    let byPixels = ComponentLabels(width: w, height: h, connectivity8: eight) { m.values[$0] != 0 }
                    XCTAssertEqual(byRuns, byPixels, "\(what) 8-connected \(eight)")
                }
                XCTAssertEqual(m.holesFilled().values, floodFilledReference(m).values, what)
                // The background that reaches the edge is what hole filling leaves empty.
                var background = m, notFilled = floodFilledReference(m)
                for i in 0..<(w * h) { background.values[i] = 1 - m.values[i]; notFilled.values[i] = 1 - notFilled.values[i] }
                XCTAssertEqual(background.componentsReachingEdge().values, notFilled.values, what)
            }
        }
    }

    /// Background pixels not reachable from the border through 4-connected background become set.
    func floodFilledReference(_ m: BinaryMask) -> BinaryMask {
        let w = m.width, h = m.height
        var reached = [Bool](repeating: false, count: w * h)
        var stack: [Int] = []
        func seed(_ i: Int) { if m.values[i] == 0 && !reached[i] { reached[i] = true; stack.append(i) } }
        for x in 0..<w { seed(x); seed((h - 1) * w + x) }
        for y in 0..<h { seed(y * w); seed(y * w + w - 1) }
        while let i = stack.popLast() {
            let x = i % w, y = i / w
            if x > 0 { seed(i - 1) }
            if x + 1 < w { seed(i + 1) }
            if y > 0 { seed(i - w) }
            if y + 1 < h { seed(i + w) }
        }
        var out = m
        for i in 0..<(w * h) where m.values[i] == 0 && !reached[i] { out.values[i] = 1 }
        return out
    }

    /// A label image's particles are its ids, each measured exactly as that id's pixels would be
    /// as a mask of their own (neighbours of another id are outside it), touching ones apart,
    /// with the file's ids; the same pixels as one mask make one particle.
    func testLabelImageMeasuresEachIdAsItsOwnMask() {
        let w = 90, h = 60
        var values = [UInt32](repeating: 0, count: w * h)
        // Two squares sharing a side (ids 7 and 3), a disc (id 40 000) wrapped round the second's
        // corner, an id in two pieces (5), and a small one (9) the area limit drops.
        for y in 10..<30 { for x in 10..<30 { values[y * w + x] = 7 }; for x in 30..<50 { values[y * w + x] = 3 } }
        for y in 0..<h { for x in 0..<w where Double((x - 56) * (x - 56) + (y - 38) * (y - 38)) < 144 && values[y * w + x] == 0 { values[y * w + x] = 40_000 } }
        for y in 45..<55 { for x in 5..<15 { values[y * w + x] = 5 }; for x in 25..<35 { values[y * w + x] = 5 } }
        for y in 2..<4 { for x in 70..<72 { values[y * w + x] = 9 } }
        let image = LabelImage(width: w, height: h, values: values)
        let measured = ParticleMeasurement(labelImage: image, pixelSizeNm: 0.1, minimumAreaPx: 5)
        XCTAssertEqual(measured.particles.map(\.id), [7, 3, 40_000, 5], "raster order of first pixels, the file's ids")
        for p in measured.particles {
            let alone = BinaryMask(width: w, height: h, values: values.map { Int($0) == p.id ? 1 : 0 })
            // Alone it is one component (the two-piece id is measured with both pieces: compare moments).
            var expected = ParticleMeasurement(mask: alone, pixelSizeNm: 0.1).particles
            if p.id == 5 {
                XCTAssertEqual(expected.count, 2)
                XCTAssertEqual(p.areaPx, 200)
                XCTAssertEqual(p.centroidX, 20, accuracy: 1e-9)
                XCTAssertEqual(p.boundingBox.x0, 5); XCTAssertEqual(p.boundingBox.x1, 35)
                continue
            }
            XCTAssertEqual(expected.count, 1, "id \(p.id)")
            expected[0].id = p.id
            XCTAssertEqual(p, expected[0], "id \(p.id)")
        }
        let asMask = BinaryMask(width: w, height: h, values: values.map { $0 == 0 ? 0 : 1 })
        XCTAssertEqual(ParticleMeasurement(mask: asMask, minimumAreaPx: 5).particles.count, 3, "as one mask the three touching ids merge")
        // The labels number the particles kept 1… in the same order.
        XCTAssertEqual(measured.labels.count, 4)
        XCTAssertEqual(measured.labels.labels[20 * w + 40], 2)
        XCTAssertEqual(measured.labels.labels[2 * w + 70], 0, "the dropped id is background")
    }

    /// An id inside a hole of another stays its own particle, and the hole is not filled.
    func testLabelImageKeepsHoles() {
        let w = 40, h = 40
        var values = [UInt32](repeating: 0, count: w * h)
        for y in 5..<35 { for x in 5..<35 { values[y * w + x] = (10..<30).contains(y) && (10..<30).contains(x) ? 0 : 1 } }
        for y in 15..<25 { for x in 15..<25 { values[y * w + x] = 2 } }
        let p = ParticleMeasurement(labelImage: LabelImage(width: w, height: h, values: values)).particles
        XCTAssertEqual(p.map(\.id), [1, 2])
        XCTAssertEqual(p.map(\.areaPx), [900 - 400, 100])
    }

    /// Ids are read exactly from every integer and floating-point type; a fraction, a negative
    /// value or an RGB image is refused naming the file; `holdsLabels` takes 16 bits and more
    /// with several ids, never a mask (8-bit, or one id).
    func testLabelImageFromMicrographs() throws {
        func micrograph<T>(_ values: [T], _ type: PixelType, channels: Int = 1) -> Micrograph {
            var m = Micrograph(width: values.count / channels, height: 1, channels: channels, pixelType: type,
                               data: values.withUnsafeBytes { Array($0) }, format: "test")
            m.source = URL(fileURLWithPath: "/data/labels.tif")
            return m
        }
        XCTAssertEqual(try LabelImage(micrograph([0, 16_777_217, 4_000_000_000, 7] as [UInt32], .uint32)).values,
                       [0, 16_777_217, 4_000_000_000, 7])
        XCTAssertEqual(try LabelImage(micrograph([0, 65_535, 2] as [UInt16], .uint16)).values, [0, 65_535, 2])
        // 8-bit colours: each colour an id, R·65536 + G·256 + B (MorphoLibJ's Labels to RGB).
        XCTAssertEqual(try LabelImage(micrograph([0, 1, 2, 3, 4, 5] as [UInt8], .uint8, channels: 3)).values, [0x000102, 0x030405])
        XCTAssertEqual(try LabelImage(micrograph([0, 70_000, .nan, 3] as [Float], .float32)).values, [0, 70_000, 0, 3])
        for (m, what) in [(micrograph([0, 2.5] as [Float], .float32), "2.5"), (micrograph([0, -1] as [Int16], .int16), "-1"),
                          (micrograph([0, 1, 2, 3, 4, 5] as [UInt16], .uint16, channels: 3), "3 channels")] {
            XCTAssertThrowsError(try LabelImage(m)) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains("/data/labels.tif"), text)
                XCTAssertTrue(text.contains(what == "3 channels" ? "3" : what) && text.contains(what == "3 channels" ? "channel" : "column 1"), text)
            }
        }
        // 2³² (a Float's nearest to UInt32.max) is no label, and no crash.
        XCTAssertThrowsError(try LabelImage(micrograph([0, 4_294_967_296] as [Float], .float32)))
        func auto<T>(_ values: [T], _ type: PixelType) -> Bool { LabelImage.labelsIfAny([micrograph(values, type)]) != nil }
        XCTAssertTrue(auto([0, 1, 2, 2, 0, 3] as [UInt16], .uint16))
        XCTAssertTrue(auto([0, 1, 2] as [Float], .float32))
        XCTAssertTrue(auto([0, 1, 1, 0, 2] as [UInt8], .uint8), "an 8-bit label image")
        XCTAssertTrue(auto([0, 70_000, 3] as [Int32], .int32))
        XCTAssertFalse(auto([0, 65_535, 65_535] as [UInt16], .uint16), "one id is a mask")
        XCTAssertFalse(auto([0, 255, 0, 255] as [UInt8], .uint8), "a 0/255 mask of two particles")
        XCTAssertFalse(auto([0, 65_535, 32_768, 0, 65_535] as [UInt16], .uint16), "a mask with graded edges: 65535 in two pieces")
        XCTAssertFalse(auto([0, 1, 0, 1, 2] as [UInt16], .uint16), "classes: 1 in two pieces")
        XCTAssertFalse(auto([0, 0.5, 1] as [Float], .float32), "probabilities are not labels")
        XCTAssertFalse(auto([0, 4_294_967_296, 1] as [Float], .float32))
        // Ids abutting in a row, each one piece that continues at a corner only: [[1,1,2,2],[2,2,1,1]].
        var diagonal = micrograph([1, 1, 2, 2, 2, 2, 1, 1] as [UInt16], .uint16)
        diagonal.width = 4; diagonal.height = 2
        XCTAssertNotNil(LabelImage.labelsIfAny([diagonal]), "ids 1 and 2 each one 8-connected piece")
        var told: (Int, Int)?
        let split = micrograph([1, 0, 1, 2] as [UInt16], .uint16)
        XCTAssertNil(LabelImage.labelsIfAny([split]) { told = ($0, $1) })
        XCTAssertEqual(told.map { [$0.0, $0.1] }, [2, 3], "2 ids in 3 pieces")
        // Decided for the whole file: a stack whose second image has one id is still labels.
        var stack = micrograph([0, 1, 2, 0, 5, 5] as [UInt16], .uint16)
        stack.width = 3; stack.frames = 2
        XCTAssertEqual(LabelImage.labelsIfAny([stack])?.map { $0.map(\.values) }, [[[0, 1, 2], [0, 5, 5]]])
    }
}


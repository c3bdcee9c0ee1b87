import Foundation
import Preprocessing
import Simulation
import TestSupport
import XCTest

/// Each physical step against a closed form or a conservation law.
final class SimulationPhysicsTests: XCTestCase {
    /// The default oversampling: a grid of 0.045 nm or finer, at most 4 points a pixel and
    /// 8192 a side.
    func testDefaultOversamplingKeepsTheFringesWithinTheLargestGrid() {
        for (pixel, o) in [(0.03, 1), (0.045, 1), (0.05, 2), (0.055, 2), (0.09, 2), (0.1, 3), (0.135, 3), (0.15, 4), (0.5, 4)] {
            XCTAssertEqual(SimulationParameters.automaticOversampling(pixelSizeNm: pixel), o, "\(pixel) nm/px")
            XCTAssertLessThanOrEqual(pixel / Double(o), SimulationParameters.fringeGridNm + 1e-12 + (pixel > 0.18 ? 1 : 0), "\(pixel) nm/px")
        }
        XCTAssertEqual(SimulationParameters.automaticOversampling(pixelSizeNm: 0.15, size: 8192), 1)
        XCTAssertEqual(SimulationParameters.automaticOversampling(pixelSizeNm: 0.15, size: 4096), 2)
        XCTAssertEqual(SimulationParameters.automaticOversampling(pixelSizeNm: 0.15, size: 3000), 2)
    }

    func testLatticeSpacingsOfEachStructure() {
        // d(hkl) from the lattice against the textbook formulas.
        let au = Material.Au.crystal
        XCTAssertEqual(au.spacing(1, 1, 1), 4.078 / 3.0.squareRoot(), accuracy: 1e-9)
        XCTAssertEqual(au.spacing(2, 0, 0), 4.078 / 2, accuracy: 1e-9)
        XCTAssertEqual(Material.Pt.crystal.spacing(2, 2, 0), 3.924 / 8.0.squareRoot(), accuracy: 1e-9)
        // Hexagonal: 1/d² = 4/3 (h² + hk + k²)/a² + l²/c².
        let cdse = Material.CdSe.crystal
        XCTAssertEqual(cdse.spacing(1, 0, 0), 1 / (4.0 / 3 / (4.3 * 4.3)).squareRoot(), accuracy: 1e-9)
        XCTAssertEqual(cdse.spacing(0, 0, 2), 7.011 / 2, accuracy: 1e-9)
        XCTAssertEqual(cdse.spacing(1, 0, 1), 1 / (4.0 / 3 / (4.3 * 4.3) + 1 / (7.011 * 7.011)).squareRoot(), accuracy: 1e-9)
        XCTAssertEqual(Material.TiO2.crystal.spacing(1, 1, 0), 4.594 / 2.0.squareRoot(), accuracy: 1e-9)
        XCTAssertEqual(Material.CeO2.crystal.spacing(1, 1, 1), 5.411 / 3.0.squareRoot(), accuracy: 1e-9)
        // Atom counts of a sphere follow the density: fcc has 4 atoms per a³.
        let r = 20.0
        let atoms = au.atoms(within: r, rotation: [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
        XCTAssertEqual(Double(atoms.count), 4 / pow(4.078, 3) * 4 / 3 * Double.pi * r * r * r, accuracy: 0.05 * Double(atoms.count))
        // Wurtzite's nearest Cd–Se distance is about 2.63 Å.
        let w = cdse.atoms(within: 8, rotation: [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
        var nearest = Double.infinity
        for (e1, p1) in w where e1 == .Cd { for (e2, p2) in w where e2 == .Se { nearest = min(nearest, ((p1 - p2) * (p1 - p2)).sum().squareRoot()) } }
        XCTAssertEqual(nearest, 2.63, accuracy: 0.03)
    }

    func testBodyCentredAndHexagonalClosePackedMetals() {
        let identity: [SIMD3<Double>] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
        // The neighbours of the atom nearest the centre of a small cluster, sorted by distance.
        func shells(_ m: Material) -> [Double] {
            let atoms = m.crystal.atoms(within: 9, rotation: identity).map(\.1)
            let centre = atoms.min { ($0 * $0).sum() < ($1 * $1).sum() }!
            return atoms.map { (($0 - centre) * ($0 - centre)).sum().squareRoot() }.filter { $0 > 0.01 }.sorted()
        }
        // bcc: 1/d² = (h² + k² + l²)/a²; 8 nearest neighbours at a√3/2, 6 more at a; 2 atoms per a³.
        for (m, a) in [(Material.Fe, 2.8665), (.W, 3.1652)] {
            XCTAssertEqual(m.crystal.spacing(1, 1, 0), a / 2.0.squareRoot(), accuracy: 1e-9)
            XCTAssertEqual(m.crystal.spacing(2, 0, 0), a / 2, accuracy: 1e-9)
            XCTAssertEqual(m.crystal.spacing(2, 1, 1), a / 6.0.squareRoot(), accuracy: 1e-9)
            let d = shells(m)
            XCTAssertEqual(Array(d.prefix(8)).map { ($0 * 1e6).rounded() / 1e6 }, Array(repeating: ((a * 3.0.squareRoot() / 2) * 1e6).rounded() / 1e6, count: 8), "\(m)")
            XCTAssertEqual(d[8], a, accuracy: 1e-9, "\(m)")
            let r = 15.0, n = m.crystal.atoms(within: r, rotation: identity).count
            XCTAssertEqual(Double(n), 2 / pow(a, 3) * 4 / 3 * Double.pi * r * r * r, accuracy: 0.06 * Double(n), "\(m)")
        }
        // hcp: the hexagonal d(hkl) as for wurtzite; 12 nearest neighbours, 6 in the basal plane at a
        // and 6 in the planes above and below at √(a²/3 + c²/4); 2 atoms per cell of a²c·√3/2.
        for (m, a, c) in [(Material.Co, 2.5071, 4.0695), (.Ru, 2.7059, 4.2815)] {
            XCTAssertEqual(m.crystal.spacing(1, 0, 0), a * 3.0.squareRoot() / 2, accuracy: 1e-9)
            XCTAssertEqual(m.crystal.spacing(0, 0, 2), c / 2, accuracy: 1e-9)
            XCTAssertEqual(m.crystal.spacing(1, 0, 1), 1 / (4.0 / 3 / (a * a) + 1 / (c * c)).squareRoot(), accuracy: 1e-9)
            let d = shells(m), outOfPlane = (a * a / 3 + c * c / 4).squareRoot()
            XCTAssertEqual(d.prefix(12).filter { abs($0 - a) < 1e-9 }.count, 6, "\(m)")
            XCTAssertEqual(d.prefix(12).filter { abs($0 - outOfPlane) < 1e-9 }.count, 6, "\(m)")
            XCTAssertGreaterThan(d[12], max(a, outOfPlane) + 0.5, "\(m)")
            let r = 15.0, n = m.crystal.atoms(within: r, rotation: identity).count
            XCTAssertEqual(Double(n), 2 / (a * a * c * 3.0.squareRoot() / 2) * 4 / 3 * Double.pi * r * r * r, accuracy: 0.06 * Double(n), "\(m)")
        }
        // The published Lobato-Van Dyck coefficients: f(0) = 2 Σ aᵢ.
        XCTAssertEqual(Element.Fe.scatteringFactor(g2: 0), 7.1635, accuracy: 1e-3)
        XCTAssertEqual(Element.W.scatteringFactor(g2: 0), 12.6368, accuracy: 1e-3)
    }

    func testScatteringFactorsAndBeam() {
        // f(0) = 2 Σ aᵢ; carbon ≈ 2.5 Å and gold ≈ 10.6 Å, decreasing with g.
        XCTAssertEqual(Element.C.scatteringFactor(g2: 0), 2.5, accuracy: 0.05)
        XCTAssertEqual(Element.Au.scatteringFactor(g2: 0), 10.58, accuracy: 0.05)
        XCTAssertLessThan(Element.Au.scatteringFactor(g2: 1), Element.Au.scatteringFactor(g2: 0.1))
        XCTAssertEqual(Beam.wavelength(volts: 300_000), 0.019687, accuracy: 1e-6)
        XCTAssertEqual(Beam.wavelength(volts: 200_000), 0.025079, accuracy: 1e-6)
        XCTAssertEqual(Beam.interaction(volts: 300_000), 6.5259e-4, accuracy: 2e-7)
    }

    /// A single atom's projected potential integrates to prefactor · f(0) (its Fourier
    /// coefficient at q = 0) and peaks at the atom.
    func testProjectedPotentialOfOneAtom() {
        let ms = Multislice(n: 128, sampling: 0.25)
        let v = ms.projectedPotential([(.Au, SIMD2(16.1, 15.9))])
        let total = v.reduce(0.0) { $0 + Double($1) } * 0.25 * 0.25
        // The prefactor from the constants, not from the code: h² / (2π m₀ e) in V·Å², with the
        // exact SI h and e and CODATA 2018's electron mass.
        let h = 6.62607015e-34, m0 = 9.1093837015e-31, e = 1.602176634e-19
        let prefactor = h * h / (2 * Double.pi * m0 * e) * 1e20
        XCTAssertEqual(Beam.potentialPrefactor, prefactor, accuracy: 1e-5)
        XCTAssertEqual(total, prefactor * Element.Au.scatteringFactor(g2: 0), accuracy: 0.01 * total)
        let peak = v.indices.max { v[$0] < v[$1] }!
        XCTAssertEqual(Double(peak % 128) * 0.25, 16.1, accuracy: 0.3)
        XCTAssertEqual(Double(peak / 128) * 0.25, 15.9, accuracy: 0.3)
    }

    /// Without absorption the propagator and the transmission function are unitary: the wave's
    /// norm stays 1 through many slices.
    func testMultisliceConservesTheNorm() {
        let ms = Multislice(n: 128, sampling: 0.3)
        var rng = SeededRandom(seed: 1)
        var wave = ms.planeWave
        // The plane wave and the slices are band-limited, so the norm is kept to round-off.
        for _ in 0..<20 {
            let atoms = (0..<60).map { _ in (Element.Au, SIMD2(rng.nextDouble() * 38.4, rng.nextDouble() * 38.4)) }
            ms.transmitAndPropagate(&wave, potential: ms.projectedPotential(atoms), thickness: 2)
        }
        var norm = 0.0
        for i in 0..<(128 * 128) { norm += Double(wave[2 * i] * wave[2 * i] + wave[2 * i + 1] * wave[2 * i + 1]) }
        XCTAssertEqual(norm / Double(128 * 128), 1, accuracy: 0.02)
    }

    /// The coherent phase-contrast transfer sin χ is zero where χ(q) = π λ C1 q² + π/2 Cs λ³ q⁴ = kπ.
    func testCTFZerosAtTheAnalyticPositions() {
        var p = SimulationParameters()
        p.size = 256; p.pixelSizeNm = 0.02; p.defocusNm = 20; p.csUm = 0; p.focalSpreadNm = 0; p.semiangleMrad = 0
        let ms = Multislice(n: 256, sampling: 0.2)
        // A weak phase object with a flat spectrum: a tiny phase at one pixel.
        var wave = ms.planeWave
        wave[1] = 0.001
        let intensity = Simulator.lens(ms, wave: wave, p)
        var contrast = ms.realSpectrum(intensity.map { $0 - 1 })
        let lambda = Beam.wavelength(volts: 300_000)
        // First zero of sin χ for C1 = −200 Å: q = sqrt(1 / (λ · 200)).
        let q0 = (1 / (lambda * 200)).squareRoot()
        func amplitude(_ k: Int) -> Double {
            Double((contrast[2 * k] * contrast[2 * k] + contrast[2 * k + 1] * contrast[2 * k + 1]).squareRoot())
        }
        // The measured transfer follows 2φ|sin χ| bin by bin, and its minimum sits at the zero.
        let bins = Array(8...44)
        let measured = bins.map(amplitude)
        let expected = bins.map { k -> Double in
            let q = Double(k) / (256 * 0.2)
            return 0.002 * abs(sin(Double.pi * lambda * -200 * q * q))
        }
        let mm = measured.reduce(0, +) / Double(bins.count), me = expected.reduce(0, +) / Double(bins.count)
        let cov = zip(measured, expected).reduce(0) { $0 + ($1.0 - mm) * ($1.1 - me) }
        let correlation = cov / (measured.reduce(0) { $0 + ($1 - mm) * ($1 - mm) } * expected.reduce(0) { $0 + ($1 - me) * ($1 - me) }).squareRoot()
        XCTAssertGreaterThan(correlation, 0.95, "transfer vs 2φ|sin χ|")
        let zeroBin = q0 * 256 * 0.2
        let window = Array(Int(zeroBin) - 4...Int(zeroBin) + 4)
        let minimum = window.min { amplitude($0) < amplitude($1) }!
        XCTAssertEqual(Double(minimum), zeroBin, accuracy: 2, "first zero at bin \(minimum), analytic \(zeroBin)")
        XCTAssertLessThan(amplitude(minimum), 0.25 * measured.max()!)
        contrast = []
    }

    func testSameSeedSameMicrograph() {
        var p = SimulationParameters()
        p.size = 96; p.pixelSizeNm = 0.05; p.particles = 1...2; p.diameterNm = 2...3; p.carbonThicknessNm = 1; p.seed = 5
        let a = Simulator.simulate(p), b = Simulator.simulate(p)
        XCTAssertEqual(a.counts, b.counts)
        XCTAssertEqual(a.mask, b.mask)
        p.seed = 6
        XCTAssertNotEqual(Simulator.simulate(p).counts, a.counts)
        XCTAssertFalse(a.particles.isEmpty)
        XCTAssertEqual(a.mask.filter { $0 != 0 }.count, a.particles.reduce(0) { $0 + $1.areaPx })
    }

    /// Each shape's faces where they should be, and nothing of it outside its bounding sphere.
    func testParticleShapes() {
        let r = 10.0
        func inside(_ s: ParticleShape, _ p: SIMD3<Double>) -> Bool { s.contains(p * r, halfSize: r) }
        // The hexagonal prism's {10-10} faces are normal to a₂* (along y with a₁ along x), the
        // others' to x.
        for s in ParticleShape.allCases {
            let face: SIMD3<Double> = s == .hexagonalPrism ? [0, 1, 0] : [1, 0, 0]
            XCTAssertTrue(inside(s, 0.99 * face), "\(s) reaches its face along \(face)")
            XCTAssertFalse(inside(s, 1.01 * face), "\(s) ends at its face along \(face)")
        }
        XCTAssertFalse(inside(.truncatedOctahedron, [0.9, 0.9, 0.9]))  // cut by a {111} face
        XCTAssertTrue(inside(.cuboctahedron, [0.99, 0.99, 0]))         // out to the square faces' corners
        XCTAssertFalse(inside(.cuboctahedron, [0.9, 0.9, 0.9]))
        XCTAssertTrue(inside(.hexagonalPrism, [1.1, 0, 0]))             // towards a corner of the hexagon (circumradius 1.155), along a₁
        XCTAssertFalse(inside(.hexagonalPrism, [0, 0, 0.85]))           // basal faces at 0.8
        XCTAssertFalse(inside(.ellipsoid, [0, 0, 0.75]))                // polar semi-axis 0.7
        var rng = SeededRandom(seed: 3)
        for s in ParticleShape.allCases {
            for _ in 0..<20_000 {
                let p = SIMD3(rng.nextDouble(), rng.nextDouble(), rng.nextDouble()) * 4 * r - SIMD3(repeating: 2 * r)
                if s.contains(p, halfSize: r) { XCTAssertLessThanOrEqual((p * p).sum().squareRoot(), s.boundingRadius * r, "\(s)") }
            }
            let atoms = Material.Au.crystal.atoms(within: r, rotation: [[1, 0, 0], [0, 1, 0], [0, 0, 1]], shape: s)
            XCTAssertGreaterThan(atoms.count, 100, "\(s)")
        }
    }

    /// Decahedra and icosahedra: every segment present with its share of the atoms, every atom
    /// inside the outline (to within half a layer), and no two atoms closer than the bond
    /// (Au: 2.88 Å): the twin planes' atoms are shared by the tetrahedra that meet there, not doubled.
    func testTwinnedParticles() {
        let identity: [SIMD3<Double>] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
        for (shape, segments) in [(ParticleShape.decahedron, 5), (.icosahedron, 20)] {
            let r = 25.0
            let atoms = TwinnedParticles.atoms(.Au, shape: shape, halfSize: r, rotation: identity)
            let directions = TwinnedParticles.segmentDirections(of: shape)
            XCTAssertEqual(directions.count, segments)
            // Atoms inside one segment (not on a twin plane shared with another): the same number
            // in every segment, by symmetry.
            var counts = [Int](repeating: 0, count: segments)
            for (_, q) in atoms {
                XCTAssertTrue(shape.contains(q, halfSize: r + 1.2), "\(shape): atom at \(q) outside its outline")
                let dots = directions.map { ($0 * q).sum() }.sorted(by: >)
                if dots[0] - dots[1] > 1e-6 { counts[TwinnedParticles.segmentIndex(of: q, directions)] += 1 }
            }
            XCTAssertEqual(Set(counts).count, 1, "\(shape) segments \(counts)")
            XCTAssertGreaterThan(counts[0] * segments, atoms.count / 2)
            var nearest = Double.infinity
            for i in atoms.indices { for j in (i + 1)..<atoms.count {
                let d = atoms[i].1 - atoms[j].1
                nearest = min(nearest, (d * d).sum())
            } }
            XCTAssertEqual(nearest.squareRoot(), 4.078 / 2.0.squareRoot(), accuracy: 0.01, "\(shape): nearest neighbours")
            // Its size: the decahedron's {100} facet at r along x, the icosahedron's (111) facet near r along x.
            let reach = atoms.map(\.1.x).max() ?? 0
            XCTAssertEqual(reach, r, accuracy: 1.5, "\(shape)")
        }
    }

    /// With every particle placed touching, a pair comes out both marked `touches_particle`, their
    /// outlines meeting within a couple of pixels and each keeping its own label.
    func testTouchingParticles() {
        var p = SimulationParameters()
        p.size = 256; p.particles = 2...2; p.diameterNm = 2.5...7; p.touchingFraction = 1; p.seed = 12
        let sim = Simulator.simulate(p)
        XCTAssertEqual(sim.particles.count, 2)
        XCTAssertEqual(sim.particles.map(\.touchesParticle), [true, true])
        XCTAssertEqual(sim.mask.filter { $0 != 0 }.count, sim.particles.reduce(0) { $0 + $1.areaPx })
        let n = p.size
        var first: [(Int, Int)] = [], second: [(Int, Int)] = []
        for y in 0..<n { for x in 0..<n {
            if sim.labels[y * n + x] == 1 { first.append((x, y)) }
            if sim.labels[y * n + x] == 2 { second.append((x, y)) }
        } }
        XCTAssertFalse(first.isEmpty || second.isEmpty)
        var closest = Int.max
        for a in first where a.0 % 2 == 0 { for b in second { closest = min(closest, (a.0 - b.0) * (a.0 - b.0) + (a.1 - b.1) * (a.1 - b.1)) } }
        XCTAssertLessThanOrEqual(closest, 9, "the outlines of touching particles are within 3 px")
    }

    /// Two particles of very different sizes resting on the film (centres at different heights)
    /// are placed so that their nearest atoms are a bond apart in projection, so their outlines
    /// meet without overlapping in the image.
    func testTouchingPlacementIsMeasuredInProjection() {
        let identity: [SIMD3<Double>] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
        func resting(_ r: Double) -> [(Element, SIMD3<Double>)] {
            let cut = Material.Au.crystal.atoms(within: r, rotation: identity)
            let lowest = cut.map(\.1.z).min()!
            return cut.map { ($0.0, $0.1 - SIMD3(0, 0, lowest)) }
        }
        let big = resting(35).map { ($0.0, $0.1 + SIMD3(200, 200, 0)) }, small = resting(12.5)
        var rng = SeededRandom(seed: 4)
        guard let t = Simulator.touchingPlace(small, reach: 12.5, placed: [(200, 200, 35)], reaches: [35], atoms: [big],
                                              field: 400, &rng) else { return XCTFail("no place found") }
        XCTAssertEqual(t.partner, 0)
        let a = small.map { SIMD2($0.1.x + t.x, $0.1.y + t.y) }, b = big.map { SIMD2($0.1.x, $0.1.y) }
        var nearest = Double.infinity
        for p in a { for q in b { nearest = min(nearest, ((p - q) * (p - q)).sum()) } }
        XCTAssertGreaterThan(nearest.squareRoot(), 2.1)
        XCTAssertLessThan(nearest.squareRoot(), 3.3)
    }

    /// The vector sin/cos of the transmission against libm (Double), over small phases, the
    /// quadrant boundaries and large arguments.
    func testFastSinCosMatchesLibm() {
        var rng = SeededRandom(seed: 11)
        var xs: [Float] = [0, .pi / 4, .pi / 2, .pi, -.pi / 2, 3 * .pi / 2, 2 * .pi, -1e-8, 1e-30]
        for _ in 0..<4000 { xs.append(Float(rng.nextDouble() * 20 - 10)) }
        for _ in 0..<1000 { xs.append(Float(rng.nextDouble() * 2e4 - 1e4)) }
        while xs.count % 8 != 0 { xs.append(0.5) }
        var worst = 0.0
        for k in stride(from: 0, to: xs.count, by: 8) {
            var v = SIMD8<Float>()
            for l in 0..<8 { v[l] = xs[k + l] }
            let (s, c) = sinCos(v)
            for l in 0..<8 {
                worst = worse(worst, worse(abs(Double(s[l]) - sin(Double(v[l]))), abs(Double(c[l]) - cos(Double(v[l])))))
            }
        }
        XCTAssertLessThan(worst, 5e-7)
    }

    /// Simulated fields are sized for FFTW: smooth (2, 3, 5, 7), multiples of 8, never smaller.
    func testFieldSizesAreFFTFriendly() {
        XCTAssertEqual(Simulator.fftFriendlySize(atLeast: 644), 648)
        XCTAssertEqual(Simulator.fftFriendlySize(atLeast: 512), 512)
        for m in stride(from: 1, to: 3000, by: 37) {
            let s = Simulator.fftFriendlySize(atLeast: m)
            var r = s
            for p in [2, 3, 5, 7] { while r % p == 0 { r /= p } }
            XCTAssert(s >= m && s % 8 == 0 && r == 1 && s < max(2 * m, 16), "\(m) -> \(s)")
        }
    }

    /// The real transform's round trip, and its half spectrum equal to the complex transform's.
    func testRealFFTMatchesTheComplexTransform() {
        let w = 24, h = 18
        var rng = SeededRandom(seed: 5)
        let x = (0..<(w * h)).map { _ in Float(rng.nextDouble() - 0.5) }
        let full = FFT2D(width: w, height: h).forward(real: x)
        let r = RealFFT2D(width: w, height: h)
        for i in 0..<(w * h) { r.real[i] = x[i] }
        r.forward()
        var worst: Float = 0
        for y in 0..<h { for k in 0..<r.halfWidth {
            worst = worse(worst, worse(abs(r.spectrum[2 * (y * r.halfWidth + k)] - full[2 * (y * w + k)]),
                                       abs(r.spectrum[2 * (y * r.halfWidth + k) + 1] - full[2 * (y * w + k) + 1])))
        } }
        XCTAssertLessThan(worst, 1e-4)
        r.inverse()
        for i in 0..<(w * h) { XCTAssertEqual(r.real[i] / Float(w * h), x[i], accuracy: 1e-5) }
    }
}

/// The simulated image's lattice fringes sit at the crystal's spacings.
final class SimulatedFringeTests: XCTestCase {
    /// Radially averaged power spectrum of an image (bins of 1/(n·d) Å⁻¹).
    func radialPower(_ counts: [Int16], n: Int) -> [Double] {
        let fft = FFT2D(width: n, height: n)
        let values = counts.map { Float($0) }
        let mean = values.reduce(0, +) / Float(values.count)
        let spectrum = fft.forward(real: values.map { $0 - mean })
        var sum = [Double](repeating: 0, count: n / 2), count = [Double](repeating: 0, count: n / 2)
        for y in 0..<n { for x in 0..<n {
            let fx = x <= n / 2 ? x : x - n, fy = y <= n / 2 ? y : y - n
            let r = Int((Double(fx * fx + fy * fy)).squareRoot().rounded())
            guard r < n / 2 else { continue }
            sum[r] += Double(spectrum[2 * (y * n + x)] * spectrum[2 * (y * n + x)] + spectrum[2 * (y * n + x) + 1] * spectrum[2 * (y * n + x) + 1])
            count[r] += 1
        } }
        return zip(sum, count).map { $1 > 0 ? $0 / $1 : 0 }
    }

    func testGoldFringesAtTheTwoHundredAndOneElevenSpacings() {
        let n = 256, d = 0.5  // Å per pixel
        var found: [Double] = []
        for seed in 1...12 as ClosedRange<UInt64> {
            var p = SimulationParameters()
            p.material = .Au; p.size = n; p.pixelSizeNm = d / 10; p.particles = 1...1; p.diameterNm = 8...8
            p.carbonThicknessNm = 0; p.doseEPerA2 = 10_000; p.defocusNm = 2; p.csUm = 0; p.seed = seed
            let m = Simulator.simulate(p)
            guard let zone = m.particles.first?.zoneAxis, zone == "[001]" || zone == "[011]" else { continue }
            let power = radialPower(m.counts, n: n)
            // The strongest ring between 0.35 and 0.6 Å⁻¹ (spacings 1.7–2.9 Å).
            let lo = Int(0.35 * Double(n) * d), hi = Int(0.6 * Double(n) * d)
            let k = (lo...hi).max { power[$0] < power[$1] }!
            // Parabolic refinement of the peak position.
            let a = power[k - 1], b = power[k], c = power[k + 1]
            let offset = (a - c) / (2 * (a - 2 * b + c))
            let spacing = Double(n) * d / (Double(k) + offset)
            found.append(spacing)
            let d200 = 4.078 / 2, d111 = 4.078 / 3.0.squareRoot()
            let nearest = abs(spacing - d200) < abs(spacing - d111) ? d200 : d111
            XCTAssertEqual(spacing, nearest, accuracy: 0.02 * nearest, "zone \(zone): fringe at \(spacing) Å")
            if found.count == 3 { break }
        }
        XCTAssertFalse(found.isEmpty, "no [001] or [011] particle among the seeds")
        print("SimulatedFringeTests: fringe spacings \(found.map { String(format: "%.3f", $0) }) Å (Au d200 2.039, d111 2.354)")
    }
}

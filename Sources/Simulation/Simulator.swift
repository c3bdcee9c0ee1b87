import Foundation
import Preprocessing

/// Everything one simulated micrograph depends on.
public struct SimulationParameters: Codable, Sendable, Equatable {
    public var material: Material = .Au
    public var size = 512
    public var pixelSizeNm = 0.05
    /// Positive = underfocus (C1 = −defocus), as abTEM's sim-v1 manifest records it.
    public var defocusNm = 5.0
    public var csUm = 10.0
    public var astigmatismNm = 0.0
    public var focalSpreadNm = 3.0
    public var semiangleMrad = 0.3
    public var apertureMrad = 30.0
    public var voltageKV = 300.0
    public var doseEPerA2 = 1000.0
    public var carbonThicknessNm = 3.0
    public var particles: ClosedRange<Int> = 1...4
    public var diameterNm: ClosedRange<Double> = 3...6
    public var cameraGain = 7.0
    public var cameraOffset = 1800.0
    public var readNoise = 0.7
    public var seed: UInt64 = 0
    /// Grid points per output pixel along each axis (nil: 1). The multislice keeps frequencies up
    /// to 2/3 of its grid's Nyquist limit, so at the output pixel (0.4–0.7 Å) it drops what the
    /// heavy atoms' sharp potentials scatter beyond about 0.8 Å⁻¹; 2 keeps them up to the
    /// objective aperture, at 4× the time (see docs/simulation.md, sampling study).
    public var oversampling: Int?
    /// Particle shapes, one drawn per particle (nil: spheres).
    public var shapes: [ParticleShape]?
    /// The share of particles (after an image's first) placed against one already placed, their
    /// nearest atoms 2.4–3.0 Å apart in projection (touching in the image), instead of anywhere
    /// with 5 Å to spare. Pairs larger than about 8 nm are placed apart (`touchingPairsLimit`).
    public var touchingFraction = 0.0

    public init() {}

    /// The multislice grid the default oversampling keeps at or below: its 2/3 band limit then
    /// passes 1/(3 · 0.045 nm) = 7.4 nm⁻¹, the fcc metals' {220} fringes (1.36–1.44 Å: Pt, Au,
    /// Ag, Pd; Cu's 1.28 Å just beyond). At the output pixel alone, 0.15-nm images of Pt and
    /// CeO₂ lost every fringe and the particles with them (their mean contrast −8 to +19 counts
    /// against the noise's 300), and [111] Pt particles vanished at 0.05 nm/px, while their
    /// masks still marked them.
    public static let fringeGridNm = 0.045

    /// Grid points per output pixel along each axis for `pixelSizeNm` when none is asked for:
    /// the fewest that make the grid `fringeGridNm` or finer, at most 4 (1 to 0.045 nm/px, 2 to
    /// 0.09, 3 to 0.135, 4 beyond), and no more than keep the grid within 8192 points a side for
    /// an image `size` pixels wide (the largest image's own; a 8192-px image at 0.15 nm/px would
    /// have asked for 8.6 GB a complex array). Each costs its square in time.
    public static func automaticOversampling(pixelSizeNm: Double, size: Int = 512) -> Int {
        guard pixelSizeNm.isFinite, pixelSizeNm > 0 else { return 1 }
        let wanted = max(1, min(4, Int((pixelSizeNm / fringeGridNm - 1e-9).rounded(.up))))
        return max(1, min(wanted, 8192 / max(1, size)))
    }

    /// The most electrons a pixel may get: its brightest pixels (twice the mean plus 5 σ of shot
    /// noise, 2e + 5√(2e)) stay within int16's 32767 counts at the camera's gain and offset.
    static func maximumElectronsPerPixel(gain: Double, offset: Double) -> Double {
        // gain · (2e + 5√(2e)) + offset = 32767, a quadratic in √(2e).
        let c = (32767 - offset) / gain
        let root = (-5 + (25 + 4 * c).squareRoot()) / 2
        return root * root / 2
    }

    /// The highest dose (e/Å²) whose counts stay within int16 at `pixelSizeNm`.
    public static func maximumDose(pixelSizeNm: Double, gain: Double = SimulationParameters().cameraGain,
                                   offset: Double = SimulationParameters().cameraOffset) -> Double {
        maximumElectronsPerPixel(gain: gain, offset: offset) / pow(pixelSizeNm * 10, 2)
    }

    /// Why these parameters make no micrograph, or nil.
    public var problem: String? {
        if !(64...8192).contains(size) { return "--size must be between 64 and 8192 pixels" }
        if !(pixelSizeNm > 0.005 && pixelSizeNm <= 0.5) { return "--pixel-size must be between 0.005 and 0.5 nm" }
        if !(voltageKV >= 40 && voltageKV <= 1000) { return "--voltage must be between 40 and 1000 kV" }
        if !(carbonThicknessNm >= 0 && carbonThicknessNm <= 50) { return "--carbon-thickness must be between 0 and 50 nm" }
        if !(doseEPerA2 > 0 && doseEPerA2 <= 1e6) { return "--dose must be positive (electrons per Å²)" }
        if particles.lowerBound < 0 || particles.upperBound > 100 { return "--particles must be within 0...100" }
        if !(diameterNm.lowerBound > 0.5 && diameterNm.upperBound <= 50) { return "--diameter must be within 0.5...50 nm" }
        if diameterNm.lowerBound < 4 * pixelSizeNm { return "--diameter \(diameterNm.lowerBound) nm is under 4 pixels of \(pixelSizeNm) nm" }
        // (Negative Cs, with overfocus, is how aberration-corrected microscopes image light atoms.)
        if !(abs(csUm) < 1e5) || !(abs(defocusNm) < 1e4) { return "--cs and --defocus are out of range" }
        if let o = oversampling, !(1...4).contains(o) { return "--oversampling must be 1, 2, 3 or 4" }
        // int16 counts: the brightest pixels (twice the mean, plus 5 σ of shot noise, for most of
        // an image; heavy columns near focus reach about 3 ×, which `simulate` counts as
        // `saturated_px` and reports) must stay below 32767 at the camera's gain and offset.
        let electrons = doseEPerA2 * pow(pixelSizeNm * 10, 2)
        if electrons > SimulationParameters.maximumElectronsPerPixel(gain: cameraGain, offset: cameraOffset) {
            return String(format: "--dose %.0f e/Å² at %.3g nm/px is %.0f electrons a pixel: bright pixels would pass int16's 32767 at the camera's gain of %.3g ADU/e (at %.3g nm/px the dose can be at most %.0f e/Å²)",
                          doseEPerA2, pixelSizeNm, electrons, cameraGain, pixelSizeNm,
                          SimulationParameters.maximumDose(pixelSizeNm: pixelSizeNm, gain: cameraGain, offset: cameraOffset).rounded(.down))
        }
        if let twinned = shapes?.first(where: \.isTwinned), !material.isFCCMetal {
            return "--shape \(twinned.rawValue) needs an fcc metal (\(Material.allCases.filter(\.isFCCMetal).map(\.rawValue).joined(separator: ", "))), not \(material.rawValue)"
        }
        if !(touchingFraction >= 0 && touchingFraction <= 1) { return "--touching must be between 0 and 1" }
        return nil
    }
}

/// The truth about one particle of a simulated micrograph.
public struct ParticleTruth: Codable, Sendable {
    public var id: Int
    public var material: String
    public var diameterNm: Double
    public var centerPx: [Double]
    public var centerNm: [Double]
    public var areaPx: Int
    public var areaNm2: Double
    public var eqDiameterNm: Double
    public var zoneAxis: String
    public var touchesBorder: Bool
    /// The particle's outline (`ParticleShape`), when shapes were asked for (else a sphere).
    public var shape: String?
    /// Whether it was placed against another particle (when touching particles were asked for).
    public var touchesParticle: Bool?

    enum CodingKeys: String, CodingKey {
        case id, material, diameterNm = "diameter_nm", centerPx = "center_px", centerNm = "center_nm", areaPx = "area_px",
             areaNm2 = "area_nm2", eqDiameterNm = "eq_diameter_nm", zoneAxis = "zone_axis", touchesBorder = "touches_border", shape,
             touchesParticle = "touches_particle"
    }
}

/// A simulated micrograph: int16 counts, the particle mask and instance labels, the truth.
public struct SimulatedMicrograph: Sendable {
    public var parameters: SimulationParameters
    public var counts: [Int16]
    public var mask: [UInt8]
    public var labels: [UInt16]
    public var particles: [ParticleTruth]
    /// Seconds per stage: structure, potential, multislice, lens, noise.
    public var timings: [String: Double]

    /// Pixels at int16's ends (32767 or −32768): clipped counts. The dose check
    /// (`SimulationParameters.problem`) keeps most images clear, but heavy atom columns near focus
    /// reach about 3 × the mean where it allows for 2 ×, so `simulate` counts them per image
    /// (`saturated_px` in the manifest) and says so.
    public var saturatedPixels: Int { counts.reduce(0) { $0 + ($1 == .max || $1 == .min ? 1 : 0) } }
}

/// HRTEM micrographs of crystalline particles on amorphous carbon: atoms from the crystal
/// structure cut to spheres near a low-index zone axis, a carbon film of random atoms (2 g/cm³,
/// no two closer than about 1.3 Å), multislice (`Multislice`) at 2 Å slices, the objective lens
/// (defocus, Cs, astigmatism, aperture, temporal and spatial coherence envelopes), a camera MTF,
/// Poisson shot noise at the dose, gain and offset. The mask is each particle's projected outline:
/// the convex hull of its atoms' projections grown by 1 Å.
public enum Simulator {
    public static let sliceThickness = 2.0

    /// `p` must be valid (`p.problem` nil): the command line checks it first.
    public static func simulate(_ p: SimulationParameters) -> SimulatedMicrograph {
        if let problem = p.problem { preconditionFailure("Simulator.simulate: \(problem)") }
        var rng = SeededRandom(seed: p.seed)
        var timings: [String: Double] = [:]
        var clock = DispatchTime.now().uptimeNanoseconds
        func lap(_ key: String) {
            let now = DispatchTime.now().uptimeNanoseconds
            timings[key, default: 0] += Double(now - clock) / 1e9
            clock = now
        }
        let n = p.size, d = p.pixelSizeNm * 10, field = Double(n) * d  // Å
        let carbon = p.carbonThicknessNm * 10
        // Particles: sizes, orientations, atoms, places (apart in projection, or touching one
        // already placed).
        var placed: [(x: Double, y: Double, r: Double)] = []
        var reaches: [Double] = [], shapes: [ParticleShape] = []  // each particle's bounding radius (Å) and shape
        var particleAtoms: [[(Element, SIMD3<Double>)]] = []
        var zones: [String] = []
        let count = p.particles.lowerBound + rng.nextInt(below: p.particles.count)
        var partners: [Int?] = []  // the particle each one was placed against
        for _ in 0..<count {
            let r = rng.nextDouble(in: p.diameterNm) * 5  // radius in Å
            let shape = p.shapes.map { $0[rng.nextInt(below: $0.count)] } ?? .sphere
            var reach = r * shape.boundingRadius
            let touches = p.touchingFraction > 0 && !placed.isEmpty && rng.nextDouble() < p.touchingFraction
            var spot = touches ? nil : clearPlace(reach: reach, placed: placed, reaches: reaches, field: field, &rng)
            if !touches && spot == nil { continue }
            let (rotation, zone) = particleOrientation(shape, p.material, &rng)
            // Cut at the origin, then resting on the film: the lowest atom just above the carbon.
            let cut = shape.isTwinned ? TwinnedParticles.atoms(p.material, shape: shape, halfSize: r, rotation: rotation)
                                      : p.material.crystal.atoms(within: r, rotation: rotation, shape: shape)
            let lowest = cut.map(\.1.z).min() ?? 0
            let local = cut.map { ($0.0, $0.1 + SIMD3(0, 0, carbon - lowest)) }
            // The particle's reach in projection, from its atoms (at least the shape's estimate).
            reach = max(reach, local.map { ($0.1.x * $0.1.x + $0.1.y * $0.1.y).squareRoot() }.max() ?? 0)
            var partner: Int?
            if touches, let t = touchingPlace(local, reach: reach, placed: placed, reaches: reaches, atoms: particleAtoms,
                                              field: field, &rng) {
                spot = (t.x, t.y); partner = t.partner
            }
            if spot == nil { spot = clearPlace(reach: reach, placed: placed, reaches: reaches, field: field, &rng) }
            guard let (x, y) = spot else { continue }
            placed.append((x, y, r)); reaches.append(reach); shapes.append(shape)
            particleAtoms.append(local.map { ($0.0, $0.1 + SIMD3(x, y, 0)) })
            zones.append(zone); partners.append(partner)
        }
        // Both particles of a touching pair are marked.
        var touching = partners.map { $0 != nil }
        for case let j? in partners { touching[j] = true }
        // Carbon: random positions at 0.1 atoms/Å³ (2 g/cm³), none closer than 1.3 Å to another
        // (random sequential addition on a hash grid; periodic in x and y like the field).
        var atoms: [(Element, SIMD3<Double>)] = particleAtoms.flatMap { $0 }
        lap("structure")
        // The simulated field is the image plus a margin all round (a particle cut by the image's
        // border must not wrap round to the opposite side of the periodic field), its side one
        // that FFTW transforms fast; the image is cropped from its middle.
        let maxRadius = reaches.max() ?? 0
        let o = max(1, p.oversampling ?? 1), fine = d / Double(o)
        let ns = fftFriendlySize(atLeast: o * (n + 2 * (Int((maxRadius / d).rounded(.up)) + 16)))
        let offset = (ns - o * n) / 2
        let pad = Double(offset) * fine, padded = Double(ns) * fine
        if carbon > 0 {
            // Carbon in the margin too, so the film looks the same up to the image's edges.
            atoms = particleAtoms.flatMap { $0 } + amorphousCarbon(field: padded, thickness: carbon, rng: &rng).map { (.C, $0 - SIMD3(pad, pad, 0)) }
        }
        lap("structure")
        // Slices of 2 Å from the top (largest z: the particles sit on the film) down.
        let top = atoms.map(\.1.z).max() ?? 0
        let slices = max(1, Int((top / sliceThickness).rounded(.up)) + 1)
        var bySlice = [[(Element, SIMD2<Double>)]](repeating: [], count: slices)
        // Output pixel x averages the fine points from x·d (its o × o block), whose mean lies at
        // x·d + (o − 1)·fine/2; shifted by half a fine step, the image samples pixel centres
        // (x + ½)·d, where the ground truth rasterises its outlines.
        let shift = pad - fine / 2
        for (e, r) in atoms { bySlice[min(slices - 1, Int((top - r.z) / sliceThickness))].append((e, SIMD2(r.x + shift, r.y + shift))) }
        let ms = Multislice(n: ns, sampling: fine, volts: p.voltageKV * 1000)
        let wave = ms.exitWave(bySlice, thickness: sliceThickness, lap: lap)
        let full = lens(ms, wave: wave, p)
        // The image from the middle of the field, each output pixel the mean of its o × o points.
        var intensity = [Float](repeating: 0, count: n * n)
        for y in 0..<n { for x in 0..<n {
            var sum: Float = 0
            for j in 0..<o { for i in 0..<o { sum += full[(offset + o * y + j) * ns + offset + o * x + i] } }
            intensity[y * n + x] = sum / Float(o * o)
        } }
        lap("lens")
        let counts = noise(&intensity, p, &rng)
        lap("noise")
        let (mask, labels, truths) = truth(particleAtoms, placed: placed, zones: zones, shapes: shapes, touching: touching, p)
        lap("truth")
        return SimulatedMicrograph(parameters: p, counts: counts, mask: mask, labels: labels, particles: truths, timings: timings)
    }

    /// The smallest side ≥ `m`, a multiple of 8, with no prime factor above 7 (FFTW's fast
    /// radices): 648 rather than 704 (= 64 · 11) for a 512² image with 5 nm particles.
    package static func fftFriendlySize(atLeast m: Int) -> Int {
        var size = (max(m, 8) + 7) / 8 * 8
        while true {
            var r = size
            for p in [2, 3, 5, 7] { while r % p == 0 { r /= p } }
            if r == 1 { return size }
            size += 8
        }
    }

    /// Random carbon positions in a field × field × thickness box (Å), at least `minimum` Å apart
    /// (random sequential addition on a hash grid of cells `minimum` wide, periodic in x and y like
    /// the field; a cell holds at most 8 atoms, as many as a cube of side `minimum` can).
    /// Each cell keeps its atoms as a list threaded through the atoms themselves (`head`, `next`):
    /// 4 bytes a cell, so the grid stays in cache where a fixed 8 slots a cell (48 MB for a 3 nm
    /// film under a 512² image) made every check a miss to memory; the same atoms either way.
    static func amorphousCarbon(field: Double, thickness: Double, density: Double = 0.1, minimum: Double = 1.3,
                                rng: inout SeededRandom) -> [SIMD3<Double>] {
        let target = Int(density * field * field * thickness)
        let cells = max(3, Int(field / minimum)), cellSize = field / Double(cells)
        let layers = max(1, Int(thickness / cellSize) + 1), capacity = 8
        var head = [Int32](repeating: -1, count: cells * cells * layers)
        var next: [Int32] = []
        var out: [SIMD3<Double>] = []
        out.reserveCapacity(target); next.reserveCapacity(target)
        let m2 = minimum * minimum
        var attempts = 0
        head.withUnsafeMutableBufferPointer { head in
            while out.count < target && attempts < 20 * target {
                attempts += 1
                let p = SIMD3(rng.nextDouble() * field, rng.nextDouble() * field, rng.nextDouble() * thickness)
                let cx = min(cells - 1, Int(p.x / cellSize)), cy = min(cells - 1, Int(p.y / cellSize)), cz = min(layers - 1, Int(p.z / cellSize))
                var free = true
                search: for z in max(0, cz - 1)...min(layers - 1, cz + 1) {
                    for dy in -1...1 {
                        let gy = cy + dy < 0 ? cy + dy + cells : (cy + dy >= cells ? cy + dy - cells : cy + dy)
                        for dx in -1...1 {
                            let gx = cx + dx < 0 ? cx + dx + cells : (cx + dx >= cells ? cx + dx - cells : cx + dx)
                            var k = head[(z * cells + gy) * cells + gx]
                            while k >= 0 {
                                var d = out[Int(k)] - p
                                if d.x > field / 2 { d.x -= field } else if d.x < -field / 2 { d.x += field }
                                if d.y > field / 2 { d.y -= field } else if d.y < -field / 2 { d.y += field }
                                if (d * d).sum() < m2 { free = false; break search }
                                k = next[Int(k)]
                            }
                        }
                    }
                }
                guard free else { continue }
                let cell = (cz * cells + cy) * cells + cx
                var held = 0, k = head[cell]
                while k >= 0 { held += 1; k = next[Int(k)] }
                guard held < capacity else { continue }
                next.append(head[cell])
                head[cell] = Int32(out.count)
                out.append(p)
            }
        }
        return out
    }

    /// Rotation (rows) taking `zone` (lattice components) onto the beam (z), tilted by `tilt` and
    /// turned by `inPlane` about the beam.
    static func orientation(_ zone: SIMD3<Double>, crystal: Crystal, tilt: Double, tiltDirection: Double, inPlane: Double) -> [SIMD3<Double>] {
        orientation(direction: zone.x * crystal.lattice[0] + zone.y * crystal.lattice[1] + zone.z * crystal.lattice[2],
                    tilt: tilt, tiltDirection: tiltDirection, inPlane: inPlane)
    }

    /// The same for a direction in Cartesian coordinates (a twinned particle's symmetry axis).
    static func orientation(direction v: SIMD3<Double>, tilt: Double, tiltDirection: Double, inPlane: Double) -> [SIMD3<Double>] {
        let e3 = v / (v * v).sum().squareRoot()
        let helper: SIMD3<Double> = abs(e3.z) < 0.9 ? [0, 0, 1] : [1, 0, 0]
        var e1 = cross(helper, e3); e1 /= (e1 * e1).sum().squareRoot()
        let e2 = cross(e3, e1)
        // In-plane turn, then a small tilt of the beam direction.
        let c = cos(inPlane), s = sin(inPlane)
        let r1 = c * e1 + s * e2, r2 = -s * e1 + c * e2
        let t = tilt, ct = cos(t), st = sin(t), cd = cos(tiltDirection), sd = sin(tiltDirection)
        let axis = cd * r1 + sd * r2
        func rotate(_ u: SIMD3<Double>) -> SIMD3<Double> {  // Rodrigues about `axis` by t
            u * ct + cross(axis, u) * st + axis * ((axis * u).sum()) * (1 - ct)
        }
        return [rotate(r1), rotate(r2), rotate(e3)]
    }

    /// The objective lens and partial coherence on the exit wave, then the camera's MTF.
    public static func lens(_ ms: Multislice, wave: [Float], _ p: SimulationParameters) -> [Float] {
        let n = ms.n, lambda = ms.wavelength
        let c1 = -p.defocusNm * 10, cs = p.csUm * 1e4, a1 = p.astigmatismNm * 10
        let alpha = p.semiangleMrad * 1e-3, qAperture = p.apertureMrad * 1e-3 / lambda, spread = p.focalSpreadNm * 10
        var k = ms.spectrum(wave)
        for y in 0..<n { for x in 0..<n {
            let i = y * n + x
            let q2 = ms.frequencySquared(i), q = q2.squareRoot()
            guard q <= qAperture else { k[2 * i] = 0; k[2 * i + 1] = 0; continue }
            let fx = Double(x <= n / 2 ? x : x - n), fy = Double(y <= n / 2 ? y : y - n)
            let phi = atan2(fy, fx)
            let chi = Double.pi * lambda * q2 * (c1 + a1 * cos(2 * phi)) + Double.pi / 2 * cs * lambda * lambda * lambda * q2 * q2
            let temporal = exp(-0.5 * pow(Double.pi * lambda * spread, 2) * q2 * q2)
            let spatial = exp(-pow(Double.pi * alpha / lambda, 2) * pow(c1 * lambda * q + cs * pow(lambda, 3) * q * q2, 2))
            let e = Float(temporal * spatial), c = Float(cos(chi)) * e, s = Float(-sin(chi)) * e
            let re = k[2 * i], im = k[2 * i + 1]
            k[2 * i] = re * c - im * s; k[2 * i + 1] = re * s + im * c
        } }
        let intensity = ms.image(k)
        // Camera MTF: 0.6 at Nyquist.
        var spectrum = ms.realSpectrum(intensity)
        let dq = p.pixelSizeNm * 10
        for i in 0..<(n * n) {
            let m = Float(exp(-ms.frequencySquared(i) * dq * dq / 0.49))
            spectrum[2 * i] *= m; spectrum[2 * i + 1] *= m
        }
        return ms.realPart(spectrum)
    }

    /// Poisson counts at the dose, gain, offset and read noise, as int16.
    static func noise(_ intensity: inout [Float], _ p: SimulationParameters, _ rng: inout SeededRandom) -> [Int16] {
        let electrons = p.doseEPerA2 * pow(p.pixelSizeNm * 10, 2)
        return intensity.map { v in
            let e = Double(rng.nextPoisson(mean: max(0, Double(v)) * electrons))
            let adu = p.cameraGain * e + p.cameraOffset + p.readNoise * rng.nextGaussianDouble()
            return Int16(clamping: Int(adu.rounded()))
        }
    }
}

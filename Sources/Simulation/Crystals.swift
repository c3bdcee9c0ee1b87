import Foundation

/// A crystal: a lattice (three vectors in Å) and a basis of atoms in fractional coordinates.
public struct Crystal: Sendable {
    public var lattice: [SIMD3<Double>]
    public var basis: [(Element, SIMD3<Double>)]

    /// Face-centred cubic with lattice constant a (Å).
    public static func fcc(_ e: Element, a: Double) -> Crystal {
        cubic(a, [(e, [0, 0, 0]), (e, [0.5, 0.5, 0]), (e, [0.5, 0, 0.5]), (e, [0, 0.5, 0.5])])
    }
    /// Body-centred cubic with lattice constant a (Å).
    public static func bcc(_ e: Element, a: Double) -> Crystal {
        cubic(a, [(e, [0, 0, 0]), (e, [0.5, 0.5, 0.5])])
    }
    /// Hexagonal close-packed (a, c in Å): two atoms a cell, at (⅓, ⅔, ¼) and (⅔, ⅓, ¾).
    public static func hcp(_ e: Element, a: Double, c: Double) -> Crystal {
        Crystal(lattice: hexagonal(a, c), basis: [(e, [1.0 / 3, 2.0 / 3, 0.25]), (e, [2.0 / 3, 1.0 / 3, 0.75])])
    }
    /// Zinc blende AB: A on the fcc sites, B shifted by (¼, ¼, ¼).
    public static func zincBlende(_ cation: Element, _ anion: Element, a lattice: Double) -> Crystal {
        let f: [SIMD3<Double>] = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
        return cubic(lattice, f.map { (cation, $0) } + f.map { (anion, $0 + SIMD3(0.25, 0.25, 0.25)) })
    }
    /// Fluorite AB₂: A on the fcc sites, B at (¼, ¼, ¼) and (¾, ¾, ¾) from each.
    public static func fluorite(_ cation: Element, _ anion: Element, a lattice: Double) -> Crystal {
        let f: [SIMD3<Double>] = [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
        return cubic(lattice, f.map { (cation, $0) } + f.map { (anion, $0 + SIMD3(0.25, 0.25, 0.25)) }
                     + f.map { (anion, $0 + SIMD3(0.75, 0.75, 0.75)) })
    }
    /// Wurtzite AB (hexagonal a, c; internal parameter u).
    public static func wurtzite(_ cation: Element, _ anion: Element, a: Double, c: Double, u: Double = 0.375) -> Crystal {
        Crystal(lattice: hexagonal(a, c), basis: [(cation, [1.0 / 3, 2.0 / 3, 0]), (cation, [2.0 / 3, 1.0 / 3, 0.5]),
                                                  (anion, [1.0 / 3, 2.0 / 3, u]), (anion, [2.0 / 3, 1.0 / 3, 0.5 + u])])
    }
    /// Rutile AB₂ (tetragonal a, c; oxygen parameter u).
    public static func rutile(_ cation: Element, _ anion: Element, a: Double, c: Double, u: Double = 0.305) -> Crystal {
        Crystal(lattice: [[a, 0, 0], [0, a, 0], [0, 0, c]],
                basis: [(cation, [0, 0, 0]), (cation, [0.5, 0.5, 0.5]), (anion, [u, u, 0]), (anion, [1 - u, 1 - u, 0]),
                        (anion, [0.5 + u, 0.5 - u, 0.5]), (anion, [0.5 - u, 0.5 + u, 0.5])])
    }

    static func cubic(_ a: Double, _ basis: [(Element, SIMD3<Double>)]) -> Crystal {
        Crystal(lattice: [[a, 0, 0], [0, a, 0], [0, 0, a]], basis: basis)
    }

    /// Hexagonal lattice vectors: a₁ along x, a₂ at 120° from it, c along z.
    static func hexagonal(_ a: Double, _ c: Double) -> [SIMD3<Double>] {
        [[a, 0, 0], [-a / 2, a * 3.0.squareRoot() / 2, 0], [0, 0, c]]
    }

    /// Every atom of the crystal cut to `shape` of half-size `radius` Å about the origin, rotated
    /// by `rotation` (rows). Single-crystal shapes only; `TwinnedParticles` builds the others.
    public func atoms(within radius: Double, rotation: [SIMD3<Double>], offset: SIMD3<Double> = .zero,
                      shape: ParticleShape = .sphere) -> [(Element, SIMD3<Double>)] {
        atoms(within: radius * shape.boundingRadius, rotation: rotation, offset: offset) { shape.contains($0, halfSize: radius) }
    }

    /// Every atom within `reach` Å of the origin (less `offset`) for which `keep(p)` holds, p in
    /// the crystal's frame; returned rotated.
    func atoms(within reach: Double, rotation: [SIMD3<Double>], offset: SIMD3<Double> = .zero,
               where keep: (_ crystalFrame: SIMD3<Double>) -> Bool) -> [(Element, SIMD3<Double>)] {
        let lengths = lattice.map { ($0 * $0).sum().squareRoot() }
        // Lattice cells far enough along each vector to hold the shape even for oblique lattices.
        let n = lengths.map { Int((2 * reach / $0).rounded(.up)) + 1 }
        var out: [(Element, SIMD3<Double>)] = []
        for i in -n[0]...n[0] { for j in -n[1]...n[1] { for k in -n[2]...n[2] {
            for (e, f) in basis {
                let fr = SIMD3(Double(i), Double(j), Double(k)) + f
                let p = fr.x * lattice[0] + fr.y * lattice[1] + fr.z * lattice[2] - offset
                guard (p * p).sum() <= reach * reach, keep(p) else { continue }
                out.append((e, SIMD3((rotation[0] * p).sum(), (rotation[1] * p).sum(), (rotation[2] * p).sum())))
            }
        } } }
        return out
    }

    /// Interplanar spacing d(hkl) in Å.
    public func spacing(_ h: Int, _ k: Int, _ l: Int) -> Double {
        let a = lattice[0], b = lattice[1], c = lattice[2]
        let volume = (a * cross(b, c)).sum()
        let astar = cross(b, c) / volume, bstar = cross(c, a) / volume, cstar = cross(a, b) / volume
        let g = Double(h) * astar + Double(k) * bstar + Double(l) * cstar
        return 1 / (g * g).sum().squareRoot()
    }
}

func cross(_ a: SIMD3<Double>, _ b: SIMD3<Double>) -> SIMD3<Double> {
    SIMD3(a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x)
}

/// The materials `simulate` knows, with their structures and real lattice constants (Å).
public enum Material: String, CaseIterable, Sendable, Codable {
    case Au, Ag, Pt, Pd, Cu, Fe, W, Co, Ru, CdSe, CdS, ZnS, CeO2, TiO2

    public var crystal: Crystal {
        switch self {
        case .Au: return .fcc(.Au, a: 4.078)
        case .Ag: return .fcc(.Ag, a: 4.086)
        case .Pt: return .fcc(.Pt, a: 3.924)
        case .Pd: return .fcc(.Pd, a: 3.891)
        case .Cu: return .fcc(.Cu, a: 3.615)
        case .Fe: return .bcc(.Fe, a: 2.8665)  // α-Fe
        case .W: return .bcc(.W, a: 3.1652)
        case .Co: return .hcp(.Co, a: 2.5071, c: 4.0695)  // α-Co
        case .Ru: return .hcp(.Ru, a: 2.7059, c: 4.2815)
        case .CdSe: return .wurtzite(.Cd, .Se, a: 4.300, c: 7.011, u: 0.376)
        case .CdS: return .wurtzite(.Cd, .S, a: 4.136, c: 6.714, u: 0.377)
        case .ZnS: return .zincBlende(.Zn, .S, a: 5.409)
        case .CeO2: return .fluorite(.Ce, .O, a: 5.411)
        case .TiO2: return .rutile(.Ti, .O, a: 4.594, c: 2.959, u: 0.305)
        }
    }

    /// Face-centred cubic metals: the ones that form multiply twinned particles (`TwinnedParticles`).
    public var isFCCMetal: Bool { [.Au, .Ag, .Pt, .Pd, .Cu].contains(self) }

    /// A zone axis as written for this crystal: [UVW], or for the hexagonal ones the 4-index
    /// [uvtw] (u = (2U − V)/3, v = (2V − U)/3, t = −(u + v), w = W, in whole numbers).
    func zoneAxisName(_ z: SIMD3<Double>) -> String {
        var digits = [z.x, z.y, z.z].map { Int($0) }
        if [.CdSe, .CdS, .Co, .Ru].contains(self) {
            let (U, V, W) = (digits[0], digits[1], digits[2])
            var four = [2 * U - V, 2 * V - U, -(U + V), 3 * W]
            let g = four.reduce(0) { gcd($0, abs($1)) }
            if g > 1 { four = four.map { $0 / g } }
            digits = four
        }
        return "[" + digits.map(String.init).joined() + "]"
    }

    private func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }

    /// Low-index zone axes (in lattice-vector components) the particle is oriented near.
    var zoneAxes: [SIMD3<Double>] {
        switch self {
        // [2-1-10], [01-10] and [0001] in 3-index form ([UVW] = [u − t, v − t, w] with a₂ at 120°).
        case .CdSe, .CdS, .Co, .Ru: return [[1, 0, 0], [1, 2, 0], [0, 0, 1]]
        case .TiO2: return [[0, 0, 1], [1, 0, 0], [1, 1, 0]]
        default: return [[0, 0, 1], [0, 1, 1], [1, 1, 1], [1, 1, 2]]
        }
    }
}

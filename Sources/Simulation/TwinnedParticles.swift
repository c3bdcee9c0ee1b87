import Foundation

/// Multiply twinned particles of fcc metals, the commonest habit of small Au, Ag, Pd and Pt
/// particles, built as crystallographers build them: from fcc tetrahedra whose faces are {111}
/// planes, sharing those faces as twin planes.
///
/// Each tetrahedron is the fcc lattice spanned by three nearest-neighbour vectors along its edges
/// from one vertex (atoms at i·e₁ + j·e₂ + k·e₃, i, j, k ≥ 0, i + j + k ≤ N). Tetrahedra cannot
/// fill a decahedron or an icosahedron exactly, and real particles close the gap by strain; here
/// the edge vectors are those of the solid, so the strain is spread evenly and the atoms of a
/// shared twin plane are the same atoms in both tetrahedra:
/// - Decahedron (Ino): five tetrahedra around the common edge, the 5-fold axis (z), each spanning
///   72° instead of an ideal tetrahedron's 70.53° (1.8 % tangential strain), cut by {100} facets
///   at the drawn half-size along each segment's bisector (+x for the first).
/// - Icosahedron (Mackay): twenty tetrahedra sharing the centre, their outer (111) faces the
///   facets at the drawn half-size (the outer edges 5 % longer than the radial ones, as in real
///   icosahedra). One facet normal lies along +x.
package enum TwinnedParticles {
    /// The directions whose largest dot product with a point picks the point's segment: each
    /// decahedron segment's bisector, each icosahedron face's normal.
    package static func segmentDirections(of shape: ParticleShape) -> [SIMD3<Double>] {
        switch shape {
        case .decahedron: return (0..<5).map(decahedronBisector)
        case .icosahedron: return icosahedronFaces.map(\.normal)
        default: return []
        }
    }

    /// The decahedron's pentagonal bipyramid in units of R, the {100} facets' distance from the
    /// axis: its axis edge L = 1.785 R, so that it reaches 1.25 R along each segment's bisector
    /// before the {100} cut and its apexes lie at ±L/2 = ±0.8925 R.
    package static let decahedronAxisEdge = 1.785
    package static let decahedronBisectorReach = 1.25

    /// Every atom of the twinned particle of half-size `r` of an fcc metal, rotated by `rotation`
    /// (the particle's orientation, rows).
    package static func atoms(_ material: Material, shape: ParticleShape, halfSize r: Double,
                              rotation: [SIMD3<Double>]) -> [(Element, SIMD3<Double>)] {
        precondition(material.isFCCMetal, "twinned particles are made of fcc metals, not \(material.rawValue)")
        let crystal = material.crystal
        let element = crystal.basis[0].0
        let bond = (crystal.lattice[0] * crystal.lattice[0]).sum().squareRoot() / 2.0.squareRoot()  // a / √2
        var tetrahedra: [(origin: SIMD3<Double>, edges: [SIMD3<Double>], layers: Int)] = []
        switch shape {
        case .decahedron:
            let layers = max(1, Int((decahedronAxisEdge * r / bond).rounded()))
            let origin = SIMD3(0, 0, -Double(layers) * bond / 2)
            let rho = 3.0.squareRoot() / 2  // the equatorial vertices' distance from the axis, in edges
            for k in 0..<5 {
                // The equatorial vertices lie midway between this segment's bisector and the
                // neighbours' (the directions at k ∓ ½ of 72°).
                let b = decahedronBisector(k), side = SIMD3(-b.y, b.x, 0), c = cos(Double.pi / 5), s = sin(Double.pi / 5)
                let up = SIMD3<Double>(0, 0, bond)
                let left = bond * (rho * (c * b - s * side) + SIMD3(0, 0, 0.5))
                let right = bond * (rho * (c * b + s * side) + SIMD3(0, 0, 0.5))
                tetrahedra.append((origin, [up, left, right], layers))
            }
        case .icosahedron:
            // A facet's distance from the centre is 0.7947 of the radial edge (inradius / circumradius).
            let layers = max(1, Int((r / (0.7947 * bond)).rounded()))
            for face in icosahedronFaces { tetrahedra.append((.zero, face.vertices.map { $0 * bond }, layers)) }
        default:
            return []
        }
        let directions = segmentDirections(of: shape)
        var out: [(Element, SIMD3<Double>)] = []
        var seen = Set<SIMD3<Int>>()  // atoms of shared planes, counted once (positions to 0.01 Å)
        for (k, t) in tetrahedra.enumerated() {
            for i in 0...t.layers { for j in 0...(t.layers - i) { for l in 0...(t.layers - i - j) {
                let q = t.origin + Double(i) * t.edges[0] + Double(j) * t.edges[1] + Double(l) * t.edges[2]
                if shape == .decahedron && (q * directions[k]).sum() > r + 1e-9 { continue }  // the {100} facet
                let key = SIMD3(Int((q.x * 100).rounded()), Int((q.y * 100).rounded()), Int((q.z * 100).rounded()))
                guard seen.insert(key).inserted else { continue }
                out.append((element, SIMD3((rotation[0] * q).sum(), (rotation[1] * q).sum(), (rotation[2] * q).sum())))
            } } }
        }
        return out
    }

    /// The decahedron's segment k's bisector (k · 72° from +x about the 5-fold axis z); any
    /// integer k.
    static func decahedronBisector(_ k: Int) -> SIMD3<Double> {
        SIMD3(cos(Double(k) * 2 * .pi / 5), sin(Double(k) * 2 * .pi / 5), 0)
    }

    package static func segmentIndex(of q: SIMD3<Double>, _ directions: [SIMD3<Double>]) -> Int {
        var best = 0, bestDot = -Double.infinity
        for (k, d) in directions.enumerated() where (q * d).sum() > bestDot { bestDot = (q * d).sum(); best = k }
        return best
    }

    /// The icosahedron's 20 faces (unit normal, unit vertex directions), turned so that the first
    /// face's normal is +x.
    static let icosahedronFaces: [(normal: SIMD3<Double>, vertices: [SIMD3<Double>])] = {
        let g = (1 + 5.0.squareRoot()) / 2
        var v: [SIMD3<Double>] = []
        for a in [-1.0, 1] { for b in [-g, g] { v += [SIMD3(0, a, b), SIMD3(a, b, 0), SIMD3(b, 0, a)] } }
        v = v.map { $0 / ($0 * $0).sum().squareRoot() }
        var faces: [(SIMD3<Double>, [SIMD3<Double>])] = []
        let edge = 2 / (1 + g * g).squareRoot()  // on the unit sphere
        func close(_ p: SIMD3<Double>, _ q: SIMD3<Double>) -> Bool { abs(((p - q) * (p - q)).sum().squareRoot() - edge) < 1e-9 }
        for i in 0..<12 { for j in (i + 1)..<12 where close(v[i], v[j]) { for k in (j + 1)..<12 where close(v[i], v[k]) && close(v[j], v[k]) {
            let c = v[i] + v[j] + v[k]
            faces.append((c / (c * c).sum().squareRoot(), [v[i], v[j], v[k]]))
        } } }
        // Turn the first normal onto +x (Rodrigues about n × x).
        let n = faces[0].0, x = SIMD3<Double>(1, 0, 0)
        var axis = cross(n, x)
        let s = (axis * axis).sum().squareRoot(), c = (n * x).sum()
        axis /= s
        func turn(_ u: SIMD3<Double>) -> SIMD3<Double> { u * c + cross(axis, u) * s + axis * (axis * u).sum() * (1 - c) }
        return faces.map { (turn($0.0), $0.1.map(turn)) }
    }()
}

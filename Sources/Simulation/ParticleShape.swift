import Foundation

/// The outline a particle is cut to from its crystal, in the crystal's own frame (cube axes for
/// the cubic structures, c along z for the hexagonal ones), before it is oriented. `size` is the
/// drawn diameter: the sphere's, the distance between opposite {100} faces of the polyhedra, the
/// hexagonal prism's width across its side faces, the ellipsoid's equatorial diameter, the
/// decahedron's width across its {100} (Ino) facets, the icosahedron's between opposite facets.
/// The two multiply twinned shapes are built by `TwinnedParticles` from fcc segments in the
/// particle's own frame (the decahedron's 5-fold axis along z, one facet normal along x).
public enum ParticleShape: String, CaseIterable, Sendable, Codable {
    case sphere
    /// {100} and {111} facets, the {111} at 0.87 of the {100} distance (Au's Wulff ratio γ111/γ100).
    case truncatedOctahedron = "truncated-octahedron"
    /// The cube |x|, |y|, |z| ≤ R cut by the octahedron |x| + |y| + |z| ≤ 2R.
    case cuboctahedron
    /// Six side faces at R from the axis, basal faces at 0.8 R (wurtzite nanocrystals' habit).
    case hexagonalPrism = "hexagonal-prism"
    /// Equatorial radius R, polar semi-axis 0.7 R along the crystal's z.
    case ellipsoid
    /// Five twinned fcc tetrahedra around the 5-fold axis: the pentagonal bipyramid (apexes at
    /// ±0.89 R, reaching 1.25 R along each segment's bisector) cut by {100} facets at R.
    case decahedron
    /// Twenty twinned fcc tetrahedra: {111} facets at R from the centre.
    case icosahedron

    /// Multiply twinned (fcc metals only).
    public var isTwinned: Bool { self == .decahedron || self == .icosahedron }

    /// Whether the point `p` (Å, from the centre) lies inside the shape of half-size `r`.
    public func contains(_ p: SIMD3<Double>, halfSize r: Double) -> Bool {
        let a = SIMD3(Swift.abs(p.x), Swift.abs(p.y), Swift.abs(p.z))
        switch self {
        case .sphere: return (p * p).sum() <= r * r
        case .truncatedOctahedron: return a.max() <= r && a.sum() / 3.0.squareRoot() <= 0.87 * r
        case .cuboctahedron: return a.max() <= r && a.sum() <= 2 * r
        case .hexagonalPrism:
            guard a.z <= 0.8 * r else { return false }
            // The {10-10} side faces (wurtzite's habit): normals along a₁* and its turns, at 30°,
            // 90°, 150° in the basal plane with a₁ along x (± covers all six).
            for k in 0..<3 {
                let t = Double.pi / 6 + Double(k) * Double.pi / 3
                if abs(p.x * cos(t) + p.y * sin(t)) > r { return false }
            }
            return true
        case .ellipsoid: return (p.x * p.x + p.y * p.y) / (r * r) + p.z * p.z / (0.49 * r * r) <= 1
        case .decahedron:
            // The segment's radial distance along its bisector; a tetrahedron of the bipyramid
            // reaches 1.25 R radially (before the {100} cut) and 1.25 R / √2 along the axis.
            let k = Int((atan2(p.y, p.x) / (2 * Double.pi / 5)).rounded())
            let rho = (p * TwinnedParticles.decahedronBisector(k)).sum()
            return rho <= r && rho / (TwinnedParticles.decahedronBisectorReach * r) + a.z / (TwinnedParticles.decahedronAxisEdge / 2 * r) <= 1
        case .icosahedron:
            return TwinnedParticles.icosahedronFaces.allSatisfy { (p * $0.normal).sum() <= r }
        }
    }

    /// The radius of a sphere about the centre that holds the whole shape of half-size 1.
    public var boundingRadius: Double {
        switch self {
        case .sphere, .ellipsoid: return 1
        case .truncatedOctahedron: return 1.26   // the vertices (1, 0.507, 0) and the like; 1.26 covers them
        case .cuboctahedron: return 2.0.squareRoot()
        case .hexagonalPrism: return ((2 / 3.0.squareRoot()) * (2 / 3.0.squareRoot()) + 0.64).squareRoot()
        case .decahedron: return TwinnedParticles.decahedronBisectorReach  // the corners between facets, 1.236 out and ±0.18 up: 1.249
        case .icosahedron: return 1.259      // circumradius / inradius of the icosahedron
        }
    }
}

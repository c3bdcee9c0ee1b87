import Foundation
import Preprocessing

extension Simulator {
    /// A particle's orientation (rows: crystal or particle frame to the lab, the beam along z)
    /// and how it is viewed: near a low-index zone axis of its crystal, or for a twinned particle
    /// near one of its symmetry axes (a decahedron along its 5-fold axis or from the side, an
    /// icosahedron along a 5-, 3- or 2-fold axis), tilted up to 2° and turned at random in plane.
    static func particleOrientation(_ shape: ParticleShape, _ material: Material,
                                    _ rng: inout SeededRandom) -> (rotation: [SIMD3<Double>], zone: String) {
        // The axis is drawn first, then the tilt and the in-plane turn (the order single crystals
        // have always drawn them in, so a seed keeps giving the same micrograph).
        var zoneAxis: SIMD3<Double>?
        if !shape.isTwinned { zoneAxis = material.zoneAxes[rng.nextInt(below: material.zoneAxes.count)] }
        let tilt = rng.nextDouble() * 2 * .pi / 180, tiltDirection = rng.nextDouble() * 2 * .pi
        let inPlane = rng.nextDouble() * 2 * .pi
        switch shape {
        case .decahedron:
            let side = rng.nextDouble() < 0.5, psi = rng.nextDouble() * 2 * .pi
            let axis: SIMD3<Double> = side ? SIMD3(cos(psi), sin(psi), 0) : SIMD3(0, 0, 1)
            return (orientation(direction: axis, tilt: tilt, tiltDirection: tiltDirection, inPlane: inPlane), side ? "side" : "5-fold")
        case .icosahedron:
            let faces = TwinnedParticles.icosahedronFaces
            let f = faces[rng.nextInt(below: faces.count)]
            let kind = rng.nextInt(below: 3)
            var axis = f.normal, zone = "3-fold"
            if kind == 0 { axis = f.vertices[0]; zone = "5-fold" }
            if kind == 1 {  // an edge's midpoint: the sum of the normals of the two faces that share it
                let neighbour = faces.filter { ($0.normal * f.normal).sum() < 0.999 }.max { ($0.normal * f.normal).sum() < ($1.normal * f.normal).sum() }!
                axis = f.normal + neighbour.normal; zone = "2-fold"
            }
            return (orientation(direction: axis, tilt: tilt, tiltDirection: tiltDirection, inPlane: inPlane), zone)
        default:
            let z = zoneAxis!
            return (orientation(z, crystal: material.crystal, tilt: tilt, tiltDirection: tiltDirection, inPlane: inPlane),
                    "[" + [z.x, z.y, z.z].map { String(Int($0)) }.joined() + "]")
        }
    }

    /// Where a particle (atoms about (0, 0), already at their height) touches one already
    /// placed: in a random direction from a random neighbour, at the distance where their
    /// nearest atoms are 2.4–3.0 Å apart (about one bond: in contact, not merged), clear of the
    /// others by 5 Å and inside the field. Nil when no direction works.
    static func touchingPlace(_ atoms: [(Element, SIMD3<Double>)], reach: Double, placed: [(x: Double, y: Double, r: Double)],
                              reaches: [Double], atoms others: [[(Element, SIMD3<Double>)]], field: Double,
                              _ rng: inout SeededRandom) -> (x: Double, y: Double)? {
        let gap = 2.4 + 0.6 * rng.nextDouble()
        for _ in 0..<12 {
            let j = rng.nextInt(below: placed.count), angle = rng.nextDouble() * 2 * .pi
            let u = SIMD2(cos(angle), sin(angle)), q = SIMD2(placed[j].x, placed[j].y)
            // From the bounding spheres' contact inwards: each step closes the nearest atoms'
            // distance to the gap (the outlines are not spheres, so a few steps).
            var distance = reaches[j] + reach + gap
            for _ in 0..<8 {
                let c = q + distance * u
                let nearest = nearestDistance(atoms, offset: c, others[j])
                if abs(nearest - gap) < 0.2 { break }
                distance -= nearest - gap
            }
            let c = q + distance * u
            guard c.x >= 0, c.y >= 0, c.x < field, c.y < field,
                  abs(nearestDistance(atoms, offset: c, others[j]) - gap) < 0.3 else { continue }
            let clear = placed.indices.allSatisfy { k in
                k == j || ((SIMD2(placed[k].x, placed[k].y) - c) * (SIMD2(placed[k].x, placed[k].y) - c)).sum()
                    > (reaches[k] + reach + 5) * (reaches[k] + reach + 5)
            }
            if clear { return (c.x, c.y) }
        }
        return nil
    }

    /// The smallest distance between an atom of `a` shifted by (offset, 0) and one of `b`.
    static func nearestDistance(_ a: [(Element, SIMD3<Double>)], offset: SIMD2<Double>, _ b: [(Element, SIMD3<Double>)]) -> Double {
        // Only atoms that can be nearest: those of each within a slab facing the other's centre.
        let shift = SIMD3(offset.x, offset.y, 0)
        let ca = a.reduce(SIMD3<Double>.zero) { $0 + $1.1 } / Double(max(1, a.count)) + shift
        let cb = b.reduce(SIMD3<Double>.zero) { $0 + $1.1 } / Double(max(1, b.count))
        var u = cb - ca; u.z = 0
        u /= max(1e-9, (u * u).sum().squareRoot())
        let facingA = a.map { $0.1 + shift }.filter { (($0 - ca) * u).sum() > -2 }
        let facingB = b.map(\.1).filter { (($0 - cb) * u).sum() < 2 }
        var best = Double.infinity
        for p in facingA { for q in facingB { best = min(best, ((p - q) * (p - q)).sum()) } }
        return best.squareRoot()
    }
}

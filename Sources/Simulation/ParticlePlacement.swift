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
                    material.zoneAxisName(z))
        }
    }

    /// Whether a particle of projected reach `reach` at c keeps 5 Å between its reach and every
    /// placed particle's (`except` one it is meant to touch).
    static func isClear(_ c: SIMD2<Double>, reach: Double, placed: [(x: Double, y: Double, r: Double)], reaches: [Double],
                        except: Int? = nil) -> Bool {
        placed.indices.allSatisfy { k in
            let d = SIMD2(placed[k].x, placed[k].y) - c
            return k == except || (d * d).sum() > (reaches[k] + reach + 5) * (reaches[k] + reach + 5)
        }
    }

    /// A random place in the field clear of every placed particle (50 tries), or nil.
    static func clearPlace(reach: Double, placed: [(x: Double, y: Double, r: Double)], reaches: [Double], field: Double,
                           _ rng: inout SeededRandom) -> (x: Double, y: Double)? {
        for _ in 0..<50 {
            let x = rng.nextDouble() * field, y = rng.nextDouble() * field
            if isClear(SIMD2(x, y), reach: reach, placed: placed, reaches: reaches) { return (x, y) }
        }
        return nil
    }

    /// Where a particle (atoms about (0, 0), already at their height) touches one already
    /// placed: in a random direction from a random neighbour, at the distance where their
    /// nearest atoms are 2.4–3.0 Å apart in projection (about one bond: their outlines, each
    /// grown by 1 Å, meet without overlapping, whatever their heights on the film), clear of the
    /// others by 5 Å and inside the field. Nil when no direction works.
    package static func touchingPlace(_ atoms: [(Element, SIMD3<Double>)], reach: Double, placed: [(x: Double, y: Double, r: Double)],
                              reaches: [Double], atoms others: [[(Element, SIMD3<Double>)]], field: Double,
                              _ rng: inout SeededRandom) -> (x: Double, y: Double, partner: Int)? {
        let gap = 2.4 + 0.6 * rng.nextDouble()
        let mine = atoms.map { SIMD2($0.1.x, $0.1.y) }
        for _ in 0..<12 {
            let j = rng.nextInt(below: placed.count), angle = rng.nextDouble() * 2 * .pi
            // The nearest-atom search compares the facing halves atom by atom: beyond about
            // 8 nm particles (10⁸ pairs a step) it would take minutes, so those are not touched.
            guard Double(mine.count) * Double(others[j].count) / 4 <= Self.touchingPairsLimit else { continue }
            let u = SIMD2(cos(angle), sin(angle)), q = SIMD2(placed[j].x, placed[j].y)
            let theirs = others[j].map { SIMD2($0.1.x, $0.1.y) }
            // From the projected reaches' contact inwards: each step closes the nearest atoms'
            // distance to the gap (the outlines are not circles, so a few steps).
            var distance = reaches[j] + reach + gap
            for _ in 0..<8 {
                let nearest = nearestDistance(mine, offset: q + distance * u, theirs)
                if abs(nearest - gap) < 0.2 { break }
                distance -= nearest - gap
            }
            let c = q + distance * u
            guard c.x >= 0, c.y >= 0, c.x < field, c.y < field,
                  abs(nearestDistance(mine, offset: c, theirs) - gap) < 0.3,
                  isClear(c, reach: reach, placed: placed, reaches: reaches, except: j) else { continue }
            return (c.x, c.y, j)
        }
        return nil
    }

    /// The most atom pairs (facing halves) one step of `touchingPlace` may compare.
    static let touchingPairsLimit = 1e8

    /// The smallest distance in projection between a point of `a` shifted by `offset` and one of `b`.
    package static func nearestDistance(_ a: [SIMD2<Double>], offset: SIMD2<Double>, _ b: [SIMD2<Double>]) -> Double {
        // Only points that can be nearest: those of each within a band facing the other's centre.
        let ca = a.reduce(SIMD2<Double>.zero, +) / Double(max(1, a.count)) + offset
        let cb = b.reduce(SIMD2<Double>.zero, +) / Double(max(1, b.count))
        var u = cb - ca
        u /= max(1e-9, (u * u).sum().squareRoot())
        let facingA = a.map { $0 + offset }.filter { (($0 - ca) * u).sum() > -2 }
        let facingB = b.filter { (($0 - cb) * u).sum() < 2 }
        var best = Double.infinity
        for p in facingA { for q in facingB { best = min(best, ((p - q) * (p - q)).sum()) } }
        return best.squareRoot()
    }
}

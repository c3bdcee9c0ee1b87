/// sin and cos of eight values at once, for the multislice transmission exp(iσv) of every grid
/// point of every slice (libm's scalar sinf/cosf cost more than the slice's FFTs). Cody–Waite
/// reduction by π/2 to [−π/4, π/4], then Cephes' single-precision polynomials: within 2 ulp of
/// libm over |x| < 10⁴ (tested), far beyond the phases a slice gives.
@inline(__always)
package func sinCos(_ x: SIMD8<Float>) -> (sin: SIMD8<Float>, cos: SIMD8<Float>) {
    let j = (x * (2 / Float.pi)).rounded(.toNearestOrEven)
    // π/2 in three parts, so that j · part is exact for the first two.
    var r = x - j * 1.5703125
    r = r - j * 4.837512969970703125e-4
    r = r - j * 7.549789948768648e-8
    let r2 = r * r
    let s = r + r * r2 * (-1.6666654611e-1 + r2 * (8.3321608736e-3 + r2 * -1.9515295891e-4))
    let c = 1 - 0.5 * r2 + r2 * r2 * (4.166664568298827e-2 + r2 * (-1.388731625493765e-3 + r2 * 2.443315711809948e-5))
    // The quadrant j mod 4 as a float (0, 1, 2, 3): integer conversion of SIMD lanes is not
    // vectorised.
    let q = j - 4 * (j * 0.25).rounded(.down)
    let odd = (q .== 1) .| (q .== 3)
    var sine = s.replacing(with: c, where: odd), cosine = c.replacing(with: s, where: odd)
    sine.replace(with: -sine, where: q .>= 2)
    cosine.replace(with: -cosine, where: (q .== 1) .| (q .== 2))
    return (sine, cosine)
}

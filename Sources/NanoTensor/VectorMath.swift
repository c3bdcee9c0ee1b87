/// exp on a whole vector: range reduction to x = n ln2 + r, |r| ≤ ln2/2, a degree-6 polynomial
/// for exp(r) and the exponent bits for 2ⁿ. Relative error below 3e-7 on [-87, 88]; inputs
/// beyond are clamped (exp(−87) ≈ 1.6e-38 and exp(88) ≈ 1.7e38).
@inline(__always) public func vectorExp(_ x: FloatVector) -> FloatVector {
    let lo = vmax(x, FloatVector(repeating: -87)), hi = FloatVector(repeating: 88)
    let xc = lo.replacing(with: hi, where: hi .< lo)
    let n = (xc * 1.442_695_04).rounded(.toNearestOrEven)
    var r = xc - n * 0.693_145_751_953_125   // ln2 high part (exact in float)
    r = r - n * 1.428_606_765_330_187e-06    // ln2 low part
    var p = FloatVector(repeating: 1.0 / 720)
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    // n is a whole number in [-126, 127]: adding 1.5·2²³ puts it in the low mantissa bits, read
    // back as an integer without a (slow, per-lane) float-to-int conversion.
    let shifted = unsafeBitCast(n + 12_582_912, to: SIMD16OrSIMD8Int.self) &- 0x4B40_0000
    return p * unsafeBitCast((shifted &+ 127) &<< 23, to: FloatVector.self)
}

#if NF_SIMD16
typealias SIMD16OrSIMD8Int = SIMD16<Int32>
#else
typealias SIMD16OrSIMD8Int = SIMD8<Int32>
#endif

/// exp on a whole vector: range reduction to x = n ln2 + r, |r| ≤ ln2/2, a degree-6 polynomial
/// for exp(r) and the exponent bits for 2ⁿ. Relative error below 3e-7 on [-87, 88]; inputs
/// beyond are clamped (exp(−87) ≈ 1.6e-38 and exp(88) ≈ 1.7e38).
@_transparent public func vectorExp(_ x: FloatVector) -> FloatVector {
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

/// Natural logarithm on a whole vector of positive, normal floats (callers clamp away zeros):
/// x = 2ᵉ · m with m in [√½, √2), log m from the Cephes single-precision polynomial in m − 1.
/// Relative error about 1e-7. Transparent, like `vectorExp`: as `@inline(__always)` the 16-lane
/// build kept it a call in `ChannelKernels.crossEntropySum`.
@_transparent public func vectorLog(_ x: FloatVector) -> FloatVector {
    let bits = unsafeBitCast(x, to: SIMD16OrSIMD8Int.self)
    var m = unsafeBitCast((bits & 0x007F_FFFF) | 0x3F00_0000, to: FloatVector.self)  // in [0.5, 1)
    // The exponent e = biased − 126 as floats through the mantissa (exact for |e| < 2²²),
    // avoiding a per-lane conversion; x = 2ᵉ · m.
    var ef = unsafeBitCast(((bits &>> 23) & 0xFF) &+ 0x4B40_0000, to: FloatVector.self) - (12_582_912 + 126)
    // Below √½, use 2m and e − 1, so m − 1 stays in [−0.29, 0.41].
    let small = m .< FloatVector(repeating: 0.707_106_781_186_547_5)
    ef.replace(with: ef - 1, where: small)
    m.replace(with: m + m, where: small)
    let f = m - 1
    let z = f * f
    // Horner steps as explicit multiply-adds. Written as `y * f + c`, the 16-lane build left
    // this polynomial scalar (Swift lowers SIMD arithmetic lane by lane and LLVM re-vectorises
    // it only sometimes): 232 scalar operations per call, 2 % of a training run's profile.
    var y = FloatVector(repeating: 7.037_683_629_2e-2)
    y = FloatVector(repeating: -1.151_461_031_0e-1).addingProduct(y, f)
    y = FloatVector(repeating: 1.167_699_874_0e-1).addingProduct(y, f)
    y = FloatVector(repeating: -1.242_014_084_6e-1).addingProduct(y, f)
    y = FloatVector(repeating: 1.424_932_278_7e-1).addingProduct(y, f)
    y = FloatVector(repeating: -1.666_805_766_5e-1).addingProduct(y, f)
    y = FloatVector(repeating: 2.000_071_476_5e-1).addingProduct(y, f)
    y = FloatVector(repeating: -2.499_999_399_3e-1).addingProduct(y, f)
    y = FloatVector(repeating: 3.333_333_117_4e-1).addingProduct(y, f)
    y = y * f * z
    y = y.addingProduct(ef, FloatVector(repeating: -2.121_944_4e-4))
    y = y.addingProduct(z, FloatVector(repeating: -0.5))
    return (f + y).addingProduct(ef, FloatVector(repeating: 0.693_359_375))
}

#if NF_SIMD16
@usableFromInline typealias SIMD16OrSIMD8Int = SIMD16<Int32>
#elseif NF_SIMD4 || arch(arm64)
@usableFromInline typealias SIMD16OrSIMD8Int = SIMD4<Int32>
#else
@usableFromInline typealias SIMD16OrSIMD8Int = SIMD8<Int32>
#endif

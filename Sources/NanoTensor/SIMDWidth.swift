/// The vector type of the hot kernels. With AVX-512 (the Makefile passes -DNF_SIMD16) a
/// `SIMD16<Float>` is one zmm register; elsewhere 8 lanes (one AVX2 ymm, two NEON q registers).
#if NF_SIMD16
public typealias FloatVector = SIMD16<Float>
#else
public typealias FloatVector = SIMD8<Float>
#endif

/// Lanes per vector.
public let vectorWidth = FloatVector.scalarCount

@inline(__always) func loadVector(_ p: UnsafePointer<Float>) -> FloatVector {
    UnsafeRawPointer(p).loadUnaligned(as: FloatVector.self)
}

@inline(__always) func storeVector(_ v: FloatVector, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: FloatVector.self)
}

@inline(__always) func roundUp(_ x: Int, _ m: Int) -> Int { (x + m - 1) / m * m }

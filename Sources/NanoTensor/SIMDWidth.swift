import CNanoSupport

/// The vector type of the hot kernels. With AVX-512 (the Makefile passes -DNF_SIMD16) a
/// `SIMD16<Float>` is one zmm register; on arm64 (or with -DNF_SIMD4, which tests that path on
/// x86) 4 lanes, one NEON q register; elsewhere 8 lanes, one AVX2 ymm register.
/// `RegisterBlocking` sizes the kernels' register blocks for each.
#if NF_SIMD16
public typealias FloatVector = SIMD16<Float>
#elseif NF_SIMD4 || arch(arm64)
public typealias FloatVector = SIMD4<Float>
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

/// Outputs of at least this many bytes (the last-level cache of the machines NanoFind is tuned
/// on: 32 MB on Zen 4) are written with non-temporal stores: a plain store reads each line
/// before writing it, and an output this large evicts itself before its reader comes. Smaller
/// outputs stay in cache for the next kernel.
let streamingOutputBytes = 32 << 20

/// Whether an output of `floats` floats written through `p` with rows `rowStride` floats apart
/// should be streamed (`streamVector`): large enough, and every whole-vector store aligned.
@inline(__always) func streams(_ floats: Int, _ p: UnsafeMutablePointer<Float>, rowStride: Int) -> Bool {
    floats * 4 >= streamingOutputBytes && rowStride % vectorWidth == 0
        && Int(bitPattern: p) % (vectorWidth * 4) == 0
}

/// A non-temporal store of a whole vector at an address aligned to the vector's size. Call
/// `storeFence()` before other threads read what was streamed.
@inline(__always) func streamVector(_ v: FloatVector, _ p: UnsafeMutablePointer<Float>) {
#if NF_SIMD16
    nf_stream_store16(p, v)
#elseif NF_SIMD4 || arch(arm64)
    nf_stream_store4(p, v)
#else
    nf_stream_store8(p, v)
#endif
}

/// Orders the calling thread's streamed stores before whatever it does next (the end of a work item).
@inline(__always) func storeFence() { nf_store_fence() }

/// `streamVector` when `stream`, else a plain store.
@inline(__always) func storeVector(_ v: FloatVector, _ p: UnsafeMutablePointer<Float>, streaming stream: Bool) {
    if stream { streamVector(v, p) } else { storeVector(v, p) }
}

/// Lane-wise maximum as one compare and one blend. (The standard library's `pointwiseMax` on
/// floating-point vectors is lowered lane by lane, with NaN handling, and measured 8× slower
/// than the scalar loop it was meant to replace.) A NaN in `a` wins.
@inline(__always) @usableFromInline func vmax(_ a: FloatVector, _ b: FloatVector) -> FloatVector {
    a.replacing(with: b, where: a .< b)
}

#if NF_SIMD16
/// Half a vector: the gradient of a 2×2-pooled row covers twice as many input lanes.
public typealias HalfFloatVector = SIMD8<Float>
@inline(__always) func swapPairs(_ v: FloatVector) -> FloatVector {
    FloatVector(v[1], v[0], v[3], v[2], v[5], v[4], v[7], v[6], v[9], v[8], v[11], v[10], v[13], v[12], v[15], v[14])
}
/// Each lane of `h` twice: (h0, h0, h1, h1, …).
@inline(__always) func duplicateLanes(_ h: HalfFloatVector) -> FloatVector {
    FloatVector(h[0], h[0], h[1], h[1], h[2], h[2], h[3], h[3], h[4], h[4], h[5], h[5], h[6], h[6], h[7], h[7])
}
/// The even lanes of `a`, then the even lanes of `b`.
@inline(__always) func evenLanes(_ a: FloatVector, _ b: FloatVector) -> FloatVector {
    FloatVector(a[0], a[2], a[4], a[6], a[8], a[10], a[12], a[14], b[0], b[2], b[4], b[6], b[8], b[10], b[12], b[14])
}
/// The odd lanes of `a`, then the odd lanes of `b`.
@inline(__always) func oddLanes(_ a: FloatVector, _ b: FloatVector) -> FloatVector {
    FloatVector(a[1], a[3], a[5], a[7], a[9], a[11], a[13], a[15], b[1], b[3], b[5], b[7], b[9], b[11], b[13], b[15])
}
/// (a0, b0, a1, b1, …) from the low halves of a and b.
@inline(__always) func interleaveLow(_ a: FloatVector, _ b: FloatVector) -> FloatVector {
    FloatVector(a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3], a[4], b[4], a[5], b[5], a[6], b[6], a[7], b[7])
}
/// The same from the high halves.
@inline(__always) func interleaveHigh(_ a: FloatVector, _ b: FloatVector) -> FloatVector {
    FloatVector(a[8], b[8], a[9], b[9], a[10], b[10], a[11], b[11], a[12], b[12], a[13], b[13], a[14], b[14], a[15], b[15])
}
/// True on lanes 0, 2, 4, …
let evenLaneMask = SIMDMask<FloatVector.MaskStorage>(arrayLiteral: true, false, true, false, true, false, true, false,
                                                     true, false, true, false, true, false, true, false)
#elseif NF_SIMD4 || arch(arm64)
public typealias HalfFloatVector = SIMD2<Float>
@inline(__always) func swapPairs(_ v: FloatVector) -> FloatVector { FloatVector(v[1], v[0], v[3], v[2]) }
@inline(__always) func duplicateLanes(_ h: HalfFloatVector) -> FloatVector { FloatVector(h[0], h[0], h[1], h[1]) }
@inline(__always) func evenLanes(_ a: FloatVector, _ b: FloatVector) -> FloatVector { FloatVector(a[0], a[2], b[0], b[2]) }
let evenLaneMask = SIMDMask<FloatVector.MaskStorage>(arrayLiteral: true, false, true, false)
@inline(__always) func oddLanes(_ a: FloatVector, _ b: FloatVector) -> FloatVector { FloatVector(a[1], a[3], b[1], b[3]) }
@inline(__always) func interleaveLow(_ a: FloatVector, _ b: FloatVector) -> FloatVector { FloatVector(a[0], b[0], a[1], b[1]) }
@inline(__always) func interleaveHigh(_ a: FloatVector, _ b: FloatVector) -> FloatVector { FloatVector(a[2], b[2], a[3], b[3]) }
#else
public typealias HalfFloatVector = SIMD4<Float>
@inline(__always) func swapPairs(_ v: FloatVector) -> FloatVector {
    FloatVector(v[1], v[0], v[3], v[2], v[5], v[4], v[7], v[6])
}
@inline(__always) func duplicateLanes(_ h: HalfFloatVector) -> FloatVector {
    FloatVector(h[0], h[0], h[1], h[1], h[2], h[2], h[3], h[3])
}
@inline(__always) func evenLanes(_ a: FloatVector, _ b: FloatVector) -> FloatVector {
    FloatVector(a[0], a[2], a[4], a[6], b[0], b[2], b[4], b[6])
}
let evenLaneMask = SIMDMask<FloatVector.MaskStorage>(arrayLiteral: true, false, true, false, true, false, true, false)
@inline(__always) func oddLanes(_ a: FloatVector, _ b: FloatVector) -> FloatVector {
    FloatVector(a[1], a[3], a[5], a[7], b[1], b[3], b[5], b[7])
}
@inline(__always) func interleaveLow(_ a: FloatVector, _ b: FloatVector) -> FloatVector {
    FloatVector(a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3])
}
@inline(__always) func interleaveHigh(_ a: FloatVector, _ b: FloatVector) -> FloatVector {
    FloatVector(a[4], b[4], a[5], b[5], a[6], b[6], a[7], b[7])
}
#endif

@inline(__always) func loadHalfVector(_ p: UnsafePointer<Float>) -> HalfFloatVector {
    UnsafeRawPointer(p).loadUnaligned(as: HalfFloatVector.self)
}

/// 32-bit lanes matching `FloatVector` (hashes for dropout masks).
#if NF_SIMD16
public typealias IndexVector = SIMD16<UInt32>
@inline(__always) var laneIndices: IndexVector { IndexVector(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) }
#elseif NF_SIMD4 || arch(arm64)
public typealias IndexVector = SIMD4<UInt32>
@inline(__always) var laneIndices: IndexVector { IndexVector(0, 1, 2, 3) }
#else
public typealias IndexVector = SIMD8<UInt32>
@inline(__always) var laneIndices: IndexVector { IndexVector(0, 1, 2, 3, 4, 5, 6, 7) }
#endif

/// The sum of a vector's lanes, in lane order (the standard library's generic `sum()` is not
/// specialised here and costs a call).
@inline(__always) func laneSum(_ v: FloatVector) -> Float {
    var t: Float = 0
    for l in 0..<vectorWidth { t += v[l] }
    return t
}

/// out[k] += the lane sum of the k-th vector: the end of a 3×3 weight-gradient tile.
@inline(__always) func addLaneSums(_ a0: FloatVector, _ a1: FloatVector, _ a2: FloatVector, _ a3: FloatVector,
                                   _ a4: FloatVector, _ a5: FloatVector, _ a6: FloatVector, _ a7: FloatVector,
                                   _ a8: FloatVector, to out: UnsafeMutablePointer<Float>) {
    out[0] += laneSum(a0); out[1] += laneSum(a1); out[2] += laneSum(a2)
    out[3] += laneSum(a3); out[4] += laneSum(a4); out[5] += laneSum(a5)
    out[6] += laneSum(a6); out[7] += laneSum(a7); out[8] += laneSum(a8)
}

import Foundation
import MicrographIO
import NanoTensor

/// A reproducible int16 test micrograph of any size: noisy carbon-like background with discs of
/// lattice-like fringes (30–80 px radius, one per 40 000 px²). `nanofind bench` times the
/// pipeline on it, and the memory test segments a 16k² one; it needs no data from anywhere.
public enum SyntheticMicrograph {
    public static func discs(side: Int, pixelSizeNm: Double, seed: UInt64? = nil) -> Micrograph {
        var rng = SplitMix64(seed: seed ?? UInt64(side))
        var data = [UInt8](repeating: 0, count: 2 * side * side)
        data.withUnsafeMutableBytes { raw in
            let v = raw.bindMemory(to: Int16.self)
            for i in 0..<(side * side) { v[i] = Int16(clamping: Int(2000 + 100 * Double(rng.nextGaussian()))) }
            for _ in 0..<(side * side / 40_000) {
                let cx = Double(rng.next() % UInt64(side)), cy = Double(rng.next() % UInt64(side))
                let r = 30 + Double(rng.next() % 50)
                for y in max(0, Int(cy - r))..<min(side, Int(cy + r) + 1) {
                    for x in max(0, Int(cx - r))..<min(side, Int(cx + r) + 1)
                    where (Double(x) - cx) * (Double(x) - cx) + (Double(y) - cy) * (Double(y) - cy) < r * r {
                        v[y * side + x] = Int16(clamping: Int(2000 + 300 * cos(Double(x + y) * 1.3) + 100 * Double(rng.nextGaussian())))
                    }
                }
            }
            for i in 0..<(side * side) { v[i] = Int16(littleEndian: v[i]) }
        }
        return Micrograph(width: side, height: side, pixelType: .int16, data: data,
                          pixelSize: PixelSize(isotropic: pixelSizeNm), format: "mrc")
    }
}

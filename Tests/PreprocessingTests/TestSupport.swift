import Dispatch
import Preprocessing
import XCTest

/// A reproducible image of `width` × `height` values with fractional parts, in [0, scale).
func randomImage(_ width: Int, _ height: Int, seed: UInt64, scale: Float = 1000) -> FloatImage {
    var rng = SeededRandom(seed: seed)
    return FloatImage(width: width, height: height,
                      pixels: (0..<(width * height)).map { _ in rng.nextFloat() * scale })
}

/// A reproducible random 0/1 mask with about `density` particle pixels.
func randomMask(_ width: Int, _ height: Int, seed: UInt64, density: Double = 0.3) -> BinaryMask {
    var rng = SeededRandom(seed: seed)
    return BinaryMask(width: width, height: height,
                      values: (0..<(width * height)).map { _ in rng.nextBool(probability: density) ? 1 : 0 })
}

/// A filled disc of radius `r` centred at (cx, cy).
func discMask(_ width: Int, _ height: Int, cx: Double, cy: Double, r: Double) -> BinaryMask {
    var m = BinaryMask(width: width, height: height)
    for y in 0..<height {
        for x in 0..<width where (Double(x) - cx) * (Double(x) - cx) + (Double(y) - cy) * (Double(y) - cy) <= r * r {
            m[x: x, y: y] = 1
        }
    }
    return m
}

func assertClose(_ a: [Float], _ b: [Float], accuracy: Float, _ message: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "count differs \(message)", file: file, line: line)
    for (i, (x, y)) in zip(a, b).enumerated() where !(abs(x - y) <= accuracy) {
        XCTFail("index \(i): \(x) vs \(y) \(message)", file: file, line: line)
        return
    }
}

/// `ParallelFor` runners for the tests: every piece once, last first; and on Dispatch's threads.
func reversedPieces(_ count: Int, _ piece: (Int) -> Void) {
    for i in stride(from: count - 1, through: 0, by: -1) { piece(i) }
}

func sideBySide(_ count: Int, _ piece: (Int) -> Void) {
    withoutActuallyEscaping(piece) { body in
        let box = UncheckedBox(body)
        DispatchQueue.concurrentPerform(iterations: count) { box.value($0) }
    }
}

private final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

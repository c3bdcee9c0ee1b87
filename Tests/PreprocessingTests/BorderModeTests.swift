import Preprocessing
import XCTest

final class BorderModeTests: XCTestCase {
    /// Row a b c d (indices 0...3), extended 5 samples each side, written out by hand from the
    /// scipy.ndimage mode definitions.
    func testIndicesAroundAFourSampleRow() {
        let range = -5...8
        func indices(_ m: BorderMode) -> [Int] { range.map { m.index($0, count: 4) } }
        //                                    -5 -4 -3 -2 -1  0  1  2  3  4  5  6  7  8
        XCTAssertEqual(indices(.mirror),  [1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2])
        XCTAssertEqual(indices(.reflect), [3, 3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0, 0])
        XCTAssertEqual(indices(.nearest), [0, 0, 0, 0, 0, 0, 1, 2, 3, 3, 3, 3, 3, 3])
        XCTAssertEqual(indices(.wrap),    [3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0])
    }

    func testSingleSampleAxisAlwaysReadsIt() {
        for m in BorderMode.allCases {
            for i in -7...7 { XCTAssertEqual(m.index(i, count: 1), 0, "\(m) \(i)") }
        }
    }
}

import Foundation
import MicrographIO
import XCTest

final class EMDReaderTests: XCTestCase {
    func testCorpusConformance() throws {
        try DMSEREMDCorpus.assertConformance(formats: ["emd-velox", "emd-berkeley"], read: EMDReader.read)
    }
}

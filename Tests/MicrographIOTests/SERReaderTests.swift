import Foundation
import MicrographIO
import XCTest

final class SERReaderTests: XCTestCase {
    func testCorpusConformance() throws {
        try DMSEREMDCorpus.assertConformance(formats: ["ser"], read: SERReader.read)
    }
}

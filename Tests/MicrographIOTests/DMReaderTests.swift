import Foundation
import MicrographIO
import XCTest

final class DMReaderTests: XCTestCase {
    func testCorpusConformance() throws {
        try DMSEREMDCorpus.assertConformance(formats: ["dm3", "dm4"], read: DMReader.read)
    }
}

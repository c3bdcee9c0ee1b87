import XCTest
final class PreprocessingTestsPlaceholder: XCTestCase { func testBuilds() {} }

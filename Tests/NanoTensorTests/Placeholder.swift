import XCTest
final class NanoTensorTestsPlaceholder: XCTestCase { func testBuilds() {} }

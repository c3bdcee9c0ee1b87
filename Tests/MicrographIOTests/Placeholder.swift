import XCTest
final class MicrographIOTestsPlaceholder: XCTestCase { func testBuilds() {} }

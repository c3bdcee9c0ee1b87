import XCTest
final class NanoNetTestsPlaceholder: XCTestCase { func testBuilds() {} }

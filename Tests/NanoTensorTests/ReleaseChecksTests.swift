import Foundation
import NanoTensor
import XCTest

/// Kernel checks survive release builds (`-Ounchecked` removes `precondition`): a mis-shaped
/// call stops the process with the kernel's name and the shapes instead of writing out of
/// bounds. The call runs in a child process: this test binary, started again on this one test.
final class ReleaseChecksTests: XCTestCase {
    static let childVariable = "NANOFIND_RELEASE_CHECK_CHILD"

    func testMisshapedKernelCallStopsNamingTheKernelAndShapes() throws {
        if ProcessInfo.processInfo.environment[Self.childVariable] == "1" {
            // The child: an output one column too narrow for the convolution.
            let input = PaddedPlanes(n: 1, channels: 4, height: 8, width: 8)
            let oihw = Tensor(Shape(8, 4, 3, 3))
            let weights = Conv3x3.PackedWeights(oihw: oihw.data, bias: nil, cout: 8, cin: 4)
            Conv3x3.forward(input, weights, into: Tensor(Shape(1, 8, 8, 7)), pool: ThreadPool(threads: 1, pin: false))
            print("the mis-shaped call returned")
            return
        }
        #if os(Linux)
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let child = Process()
        child.executableURL = URL(fileURLWithPath: exe)
        child.arguments = ["NanoTensorTests.ReleaseChecksTests/testMisshapedKernelCallStopsNamingTheKernelAndShapes"]
        child.environment = ProcessInfo.processInfo.environment.merging([Self.childVariable: "1"]) { $1 }
        let errors = Pipe(), output = Pipe()
        child.standardError = errors
        child.standardOutput = output
        try child.run()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stdout = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        child.waitUntilExit()
        XCTAssertEqual(child.terminationReason, .uncaughtSignal, "the child was not stopped:\n\(stdout)\n\(stderr)")
        XCTAssertFalse(stdout.contains("the mis-shaped call returned"))
        XCTAssertTrue(stderr.contains("NanoFind check failed in Conv3x3.forward"), stderr)
        XCTAssertTrue(stderr.contains("output [1, 8, 8, 7]"), stderr)
        XCTAssertTrue(stderr.contains("for input 1x4x8x8 and 8 output channels"), stderr)
        #else
        throw XCTSkip("the child-process run uses /proc/self/exe (Linux)")
        #endif
    }
}

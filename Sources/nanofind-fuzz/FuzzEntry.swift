import FuzzTargets
import Foundation

// The libFuzzer entry point, built only by `make fuzz` (`-sanitize=fuzzer,address -DFUZZING`).
// SwiftPM links an executable's entry point under the name `<module>_main`; here that is
// libFuzzer's driver. NANOFIND_FUZZ_TARGET names the reader (see FuzzTarget).
#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@_cdecl("nanofind_fuzz_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc, arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments, fuzzOneInput)
}

let fuzzTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["NANOFIND_FUZZ_TARGET"] ?? ""
    guard let t = FuzzTarget(rawValue: name) else {
        let all = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
        FileHandle.standardError.write(Data("nanofind-fuzz: set NANOFIND_FUZZ_TARGET to one of \(all)\n".utf8))
        exit(2)
    }
    return t
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzTarget.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
#else
/// Built as part of the package without the fuzzer runtime: it only says how to build it.
@main
enum NotAFuzzingBuild {
    static func main() {
        FileHandle.standardError.write(Data("nanofind-fuzz: build and run it with `make fuzz TARGET=<reader> SECONDS=<n>`\n".utf8))
        exit(2)
    }
}
#endif

import Foundation

/// Where SwiftPM put the package's executables: the folder holding the test bundle.
///
/// On Linux the tests run as the bundle itself (`NanoFindPackageTests.xctest`, a plain
/// executable), so its path is `CommandLine.arguments[0]`. On macOS `swift test` runs the bundle
/// inside Xcode's `xctest` tool, so `arguments[0]` names that tool and the bundle is found among
/// the loaded bundles instead (the idiom swift-argument-parser's own tests use).
public enum BuiltProducts {
    public static var folder: URL {
        #if os(macOS)
        if let bundle = Bundle.allBundles.first(where: { $0.bundlePath.hasSuffix(".xctest") }) {
            return bundle.bundleURL.deletingLastPathComponent()
        }
        #endif
        return URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    }

    /// The `nanofind` executable built beside the tests.
    public static var nanofind: URL { folder.appendingPathComponent("nanofind") }
}

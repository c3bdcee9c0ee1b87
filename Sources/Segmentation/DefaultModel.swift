import Foundation
import NanoNet

/// The model `segment`, `evaluate` and `activations` use when no `--model` is given:
/// `Models/default.safetensors` of the repository NanoFind was built from (made by `make model`),
/// or the file `NANOFIND_DEFAULT_MODEL` names.
public enum DefaultModel {
    /// Where it is looked for, in order.
    public static var candidates: [URL] {
        var list: [URL] = []
        if let env = ProcessInfo.processInfo.environment["NANOFIND_DEFAULT_MODEL"], !env.isEmpty {
            list.append(URL(fileURLWithPath: env))
        }
        // Beside the sources this binary was built from …
        let source = URL(fileURLWithPath: #filePath)
        list.append(source.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Models/default.safetensors"))
        // … and relative to the binary in a checkout (.build/<triple>/release/nanofind; Linux
        // names it in /proc, macOS through the main bundle).
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? Bundle.main.executableURL?.resolvingSymlinksInPath().path
        if let exe {
            var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
            for _ in 0..<4 {
                list.append(dir.appendingPathComponent("Models/default.safetensors"))
                dir = dir.deletingLastPathComponent()
            }
        }
        return list
    }

    public static var url: URL? { candidates.first { FileManager.default.fileExists(atPath: $0.path) } }

    public static func load() throws -> Model {
        // A model named by the variable and not there is a mistake to say, not to fall back from.
        if let env = ProcessInfo.processInfo.environment["NANOFIND_DEFAULT_MODEL"], !env.isEmpty,
           !FileManager.default.fileExists(atPath: env) {
            throw ModelFileError(file: env, reason: "no such file (named by NANOFIND_DEFAULT_MODEL)")
        }
        guard let url else {
            throw ModelFileError(file: "Models/default.safetensors",
                                 reason: "no default model (make it with `make model`, or pass --model)")
        }
        return try Model.load(url)
    }
}

import ArgumentParser
import Foundation

@main
struct NanoFindCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nanofind",
        abstract: "Find and measure nanoparticles in HRTEM micrographs.",
        discussion: """
            A U-Net labels every pixel as crystalline particle or amorphous background; NanoFind turns \
            that into masks and probability maps. Run `nanofind help <subcommand>` for details.
            """,
        subcommands: [Segment.self, Train.self, Evaluate.self, Bragg.self, Activations.self, Measure.self, Merge.self, Inspect.self, ConvertModel.self, Bench.self, ReadIsolated.self]
    )

    /// Parses and runs a subcommand. A bad flag or value is bad input like a bad file: one line
    /// `error: <problem>` and exit status 2 (swift-argument-parser would print the usage too and
    /// exit 64); `--help` and errors that carry their own exit code are left as they are.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                let message = message(for: error).split(whereSeparator: \.isNewline).joined(separator: " ")
                FileHandle.standardError.write(Data(("error: " + message + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// Bad input: print one line naming the file and the problem on stderr, exit with status 2.
func exitWithInputError(_ error: Error) -> ExitCode {
    if let already = error as? ExitCode { return already }  // reported where it happened
    FileHandle.standardError.write(Data(("error: " + String(describing: error) + "\n").utf8))
    return ExitCode(2)
}

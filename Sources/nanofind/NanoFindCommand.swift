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
        subcommands: [Segment.self, Inspect.self, ConvertModel.self, Bench.self, ReadIsolated.self]
    )
}

/// Bad input: print one line naming the file and the problem on stderr, exit with status 2.
func exitWithInputError(_ error: Error) -> ExitCode {
    FileHandle.standardError.write(Data(("error: " + String(describing: error) + "\n").utf8))
    return ExitCode(2)
}

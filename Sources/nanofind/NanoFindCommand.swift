import ArgumentParser
import Foundation
import MicrographIO
import CNanoSupport

@main
struct NanoFindCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nanofind",
        abstract: "Find and measure nanoparticles in HRTEM micrographs.",
        discussion: """
            A U-Net labels every pixel as crystalline particle or amorphous background; NanoFind turns \
            that into particle outlines, sizes in nm and statistics for whole batches of micrographs, \
            trains and evaluates such networks, and simulates labelled HRTEM data to train them on. \
            Start with `nanofind demo`; run `nanofind help <subcommand>` for details.
            """,
        subcommands: [Demo.self, Segment.self, Train.self, Evaluate.self, Simulate.self, Bragg.self, Activations.self, Measure.self, Merge.self, Inspect.self, ConvertModel.self, Bench.self, ReadIsolated.self]
    )

    /// Parses and runs a subcommand. A bad flag or value is bad input like a bad file: one line
    /// `error: <problem>` and exit status 2 (swift-argument-parser would print the usage too and
    /// exit 64); `--help` and errors that carry their own exit code are left as they are.
    static func main() {
        nf_cleanup_install()  // temporary files removed if the run is interrupted (removedIfInterrupted)
        do {
            var command = try parseAsRoot()
            try command.run()
            // What a command printed must have been written (a table redirected to a full disk
            // is an output lost), as coreutils' close_stdout checks.
            if let problem = standardOutputProblem() {
                writeStandardError("error: standard output: \(problem)\n")
                Foundation.exit(2)
            }
        } catch {
            // A refused or failed run leaves no empty -o folder it made (one with outputs stays).
            if exitCode(for: error) != .success { CreatedFolders.removeEmpty() }
            // A table lost is said, and exit 2 after a batch's failures (said already).
            if let problem = standardOutputProblem() {
                writeStandardError("error: standard output: \(problem)\n")
                if error is ExitCode { Foundation.exit(2) }
            }
            if exitCode(for: error) == .validationFailure {
                let message = message(for: error).split(whereSeparator: \.isNewline).joined(separator: " ")
                writeStandardError("error: " + oneLine(message) + "\n")
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// Text on stderr (unbuffered), a failed write ignored: a full disk or a closed stream under a
/// job's log must not crash the run (FileHandle's `write` traps on an error).
func writeStandardError(_ text: String) { nf_write_stderr(text) }

/// Text on stdout, through the buffer `print` writes to (so the two keep their order); whether
/// it all got there is checked once the command ends (`standardOutputProblem`).
func writeStandardOutput(_ text: String) { nf_write_stdout(text) }

/// Why what was written to stdout did not all get there, or nil. A reader that stopped reading
/// (`| head`) is no problem.
func standardOutputProblem() -> String? {
    let code = nf_stdout_error()
    guard code != 0, code != EPIPE else { return nil }
    return code > 0 ? String(cString: strerror(code)).lowercased() : "a write failed"
}

/// Bad input: print one line naming the file and the problem on stderr, exit with status 2.
func exitWithInputError(_ error: Error) -> ExitCode {
    if let already = error as? ExitCode { return already }  // reported where it happened
    printError(error)
    return ExitCode(2)
}

/// One line `error: <file>: <reason>` on stderr, with control characters (a newline in a file
/// name, bytes a reader took for a tag name) escaped so that the line stays one line.
func printError(_ error: Error) {
    writeStandardError("error: " + oneLine(describe(error)) + "\n")
}

/// An error as `<file>: <reason>`: NanoFind's own errors as they describe themselves, and
/// Foundation's file errors (which print as an NSError dump) in plain words with their path.
func describe(_ error: Error) -> String {
    let ns = error as NSError
    guard ns.domain == NSCocoaErrorDomain || ns.domain == NSPOSIXErrorDomain else { return String(describing: error) }
    let path = (ns.userInfo[NSFilePathErrorKey] as? String) ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
    let reason: String
    if ns.domain == NSPOSIXErrorDomain {
        reason = String(cString: strerror(Int32(ns.code))).lowercased()
    } else if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        reason = String(cString: strerror(Int32(underlying.code))).lowercased()
    } else {
        switch CocoaError.Code(rawValue: ns.code) {
        case .fileNoSuchFile, .fileReadNoSuchFile: reason = MicrographError.missing(path ?? "", reason: "no such file or folder")
        case .fileReadNoPermission, .fileWriteNoPermission: reason = "permission denied"
        case .fileWriteFileExists: reason = "already exists"
        case .fileWriteOutOfSpace: reason = "no space left on the device"
        case .fileWriteVolumeReadOnly: reason = "is on a read-only file system"
        default: reason = ns.localizedDescription
        }
    }
    return path.map { "\($0): \(reason)" } ?? reason
}

/// `text` with control characters written as \n, \t, \r or \u{XX}.
func oneLine(_ text: String) -> String {
    var out = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        case _ where scalar.value < 0x20 || (0x7f..<0xa0).contains(scalar.value) || scalar == "\u{FFFD}":
            out += "\\u{\(String(scalar.value, radix: 16))}"
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out
}

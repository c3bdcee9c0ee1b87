import ArgumentParser
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure inference and training speed (JSON lines).")
    func run() throws { throw ExitCode(2) }
}

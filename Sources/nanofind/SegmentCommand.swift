import ArgumentParser
import Foundation

struct Segment: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Segment micrographs into particle and background.")
    func run() throws { throw ExitCode(2) }
}

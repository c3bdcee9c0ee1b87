import ArgumentParser
import Foundation
import MicrographIO

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print size, pixel type, calibration and statistics of micrograph files.")
    @Argument(help: "Micrograph files (MRC, TIFF, DM3/DM4, SER, EMD, PNG, NPY).") var files: [String]
    @Flag(help: "One JSON object per image.") var json = false
    func run() throws {
        throw exitWithInputError(MicrographError(file: files.first ?? "", reason: "inspect is not implemented yet"))
    }
}
